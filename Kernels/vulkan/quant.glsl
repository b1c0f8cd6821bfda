// Weight access shared by matmul.comp and embed.comp. A weight is bound as raw bytes in a
// uint storage buffer (binding WEIGHT_BINDING) in its GGUF block layout; exactly one of
// TYPE_F32 / TYPE_F16 / TYPE_BF16 / TYPE_Q8_0 / TYPE_Q4_0 / TYPE_Q4_1 / TYPE_Q5_0 / TYPE_Q5_1 /
// TYPE_Q4_K / TYPE_Q5_K / TYPE_Q6_K is defined by the build (glslc -D...). Block layouts are
// llama.cpp's (ggml-common.h), decoded as Sources/LLM/GGUF/Quantization.swift does; rows are not
// 4-byte aligned in general (a Q4_0 row of 32 columns is 18 bytes, Q5_0 blocks are 22 bytes and
// Q6_K blocks 210), so every read goes through byte offsets. Q5_1 (24), Q4_K (144) and Q5_K (176)
// blocks keep every row 4-byte aligned and read whole words.

layout(std430, set = 0, binding = WEIGHT_BINDING) readonly buffer Weights { uint wdata[]; };

uint load8(uint off) { return (wdata[off >> 2] >> ((off & 3u) * 8u)) & 0xFFu; }
// `off` must be even.
uint load16(uint off) { return (wdata[off >> 2] >> ((off & 2u) * 8u)) & 0xFFFFu; }
uint load32(uint off) {
    uint i = off >> 2;
    uint s = (off & 3u) * 8u;
    if (s == 0u) return wdata[i];
    return (wdata[i] >> s) | (wdata[i + 1u] << (32u - s));
}
// `off` must be even (Q8_0 and Q4_0 blocks are 2-byte aligned).
uint load32even(uint off) {
    uint i = off >> 2;
    if ((off & 2u) == 0u) return wdata[i];
    return (wdata[i] >> 16) | (wdata[i + 1u] << 16);
}
float halfAt(uint off) { return unpackHalf2x16(load16(off)).x; }
float bf16(uint bits) { return uintBitsToFloat(bits << 16); }
vec4 nibblesLo(uint q) { return vec4(float(q & 15u), float((q >> 8) & 15u), float((q >> 16) & 15u), float((q >> 24) & 15u)); }
vec4 nibblesHi(uint q) { return vec4(float((q >> 4) & 15u), float((q >> 12) & 15u), float((q >> 20) & 15u), float(q >> 28)); }
vec4 signedBytes(uint q) {
    return vec4(float(bitfieldExtract(int(q), 0, 8)), float(bitfieldExtract(int(q), 8, 8)),
                float(bitfieldExtract(int(q), 16, 8)), float(bitfieldExtract(int(q), 24, 8)));
}

#if defined(TYPE_F32) || defined(TYPE_F16) || defined(TYPE_BF16)
#define FLOAT_WEIGHTS 1
// A chunk is 8 consecutive columns; the last one of a row may be partial (masked).
uint chunkCount(uint columns) { return (columns + 7u) / 8u; }
#else
// A chunk is 8 values: a quarter of a 32-value block, or a 32nd of a 256-value K-quant block.
uint chunkCount(uint columns) { return columns / 8u; }
#endif

// 4 one-bit or two-bit fields of a word, one per byte, starting at bit `shift` of each byte.
vec4 byteBits1(uint w, uint shift) {
    return vec4(float((w >> shift) & 1u), float((w >> (shift + 8u)) & 1u), float((w >> (shift + 16u)) & 1u), float((w >> (shift + 24u)) & 1u));
}
vec4 byteBits2(uint w, uint shift) {
    return vec4(float((w >> shift) & 3u), float((w >> (shift + 8u)) & 3u), float((w >> (shift + 16u)) & 3u), float((w >> (shift + 24u)) & 3u));
}
// The 4 bits (elements j..j+3) of a Q5_0/Q5_1 qh word, as 16 or 0.
vec4 highBits4(uint qh, uint j) {
    return 16.0 * vec4(float((qh >> j) & 1u), float((qh >> (j + 1u)) & 1u), float((qh >> (j + 2u)) & 1u), float((qh >> (j + 3u)) & 1u));
}

// The 6-bit scale and min of sub-block j of the Q4_K/Q5_K scales at byte `soff`
// (ggml's get_scale_min_k4, Quantization.kScaleMin).
vec2 kScaleMin(uint soff, uint j) {
    if (j < 4u) return vec2(float(load8(soff + j) & 63u), float(load8(soff + j + 4u) & 63u));
    uint b = load8(soff + j + 4u);
    return vec2(float((b & 15u) | ((load8(soff + j - 4u) >> 6) << 4)), float((b >> 4) | ((load8(soff + j) >> 6) << 4)));
}

#if defined(TYPE_F32)
float elementAt(uint rowOff, uint j) { return uintBitsToFloat(wdata[(rowOff >> 2) + j]); }
#elif defined(TYPE_F16)
float elementAt(uint rowOff, uint j) { return halfAt(rowOff + 2u * j); }
#elif defined(TYPE_BF16)
float elementAt(uint rowOff, uint j) { return bf16(load16(rowOff + 2u * j)); }
#endif

// The 8 weights of chunk `c` of the row at byte `rowOff`: wa covers columns ca..ca+3, wb cb..cb+3.
void loadChunk(uint rowOff, uint c, uint columns, out vec4 wa, out vec4 wb, out uint ca, out uint cb) {
#if defined(FLOAT_WEIGHTS)
    ca = c * 8u;
    cb = ca + 4u;
    if (cb + 4u <= columns) {
#if defined(TYPE_F32)
        uint i = (rowOff >> 2) + ca;
        wa = vec4(uintBitsToFloat(wdata[i]), uintBitsToFloat(wdata[i + 1u]), uintBitsToFloat(wdata[i + 2u]), uintBitsToFloat(wdata[i + 3u]));
        wb = vec4(uintBitsToFloat(wdata[i + 4u]), uintBitsToFloat(wdata[i + 5u]), uintBitsToFloat(wdata[i + 6u]), uintBitsToFloat(wdata[i + 7u]));
#elif defined(TYPE_F16)
        uint off = rowOff + 2u * ca;
        wa = vec4(unpackHalf2x16(load32(off)), unpackHalf2x16(load32(off + 4u)));
        wb = vec4(unpackHalf2x16(load32(off + 8u)), unpackHalf2x16(load32(off + 12u)));
#else
        uint off = rowOff + 2u * ca;
        uint p0 = load32(off), p1 = load32(off + 4u), p2 = load32(off + 8u), p3 = load32(off + 12u);
        wa = vec4(bf16(p0 & 0xFFFFu), bf16(p0 >> 16), bf16(p1 & 0xFFFFu), bf16(p1 >> 16));
        wb = vec4(bf16(p2 & 0xFFFFu), bf16(p2 >> 16), bf16(p3 & 0xFFFFu), bf16(p3 >> 16));
#endif
    } else {
        for (uint k = 0u; k < 4u; k++) {
            wa[k] = ca + k < columns ? elementAt(rowOff, ca + k) : 0.0;
            wb[k] = cb + k < columns ? elementAt(rowOff, cb + k) : 0.0;
        }
    }
#elif defined(TYPE_Q8_0)
    // block_q8_0 { half d; int8 qs[32]; }: x = d * q
    uint b = c >> 2, q = c & 3u;
    uint off = rowOff + b * 34u;
    float d = halfAt(off);
    ca = b * 32u + q * 8u;
    cb = ca + 4u;
    wa = d * signedBytes(load32even(off + 2u + q * 8u));
    wb = d * signedBytes(load32even(off + 6u + q * 8u));
#elif defined(TYPE_Q4_0)
    // block_q4_0 { half d; uint8 qs[16]; }: x[j] = d * (lo(qs[j]) - 8), x[j + 16] = d * (hi(qs[j]) - 8)
    uint b = c >> 2, q = c & 3u;
    uint off = rowOff + b * 18u;
    float d = halfAt(off);
    uint bits = load32even(off + 2u + q * 4u);
    ca = b * 32u + q * 4u;
    cb = ca + 16u;
    wa = d * (nibblesLo(bits) - 8.0);
    wb = d * (nibblesHi(bits) - 8.0);
#elif defined(TYPE_Q4_1)
    // block_q4_1 { half d; half m; uint8 qs[16]; }: x = d * q + m
    uint b = c >> 2, q = c & 3u;
    uint off = rowOff + b * 20u;
    // 20-byte blocks in rows of 20·n bytes: always 4-byte aligned
    vec2 dm = unpackHalf2x16(wdata[off >> 2]);
    uint bits = wdata[(off >> 2) + 1u + q];
    ca = b * 32u + q * 4u;
    cb = ca + 16u;
    wa = dm.x * nibblesLo(bits) + dm.y;
    wb = dm.x * nibblesHi(bits) + dm.y;
#elif defined(TYPE_Q5_0)
    // block_q5_0 { half d; u32 qh; uint8 qs[16]; } (22 bytes, 2-byte aligned): bit j of qh is the
    // 5th bit of element j, bit j+16 that of element j+16; x = d * (q - 16)
    uint b = c >> 2, q = c & 3u;
    uint off = rowOff + b * 22u;
    float d = halfAt(off);
    uint qh = load32even(off + 2u);
    uint bits = load32even(off + 6u + q * 4u);
    ca = b * 32u + q * 4u;
    cb = ca + 16u;
    wa = d * (nibblesLo(bits) + highBits4(qh, q * 4u) - 16.0);
    wb = d * (nibblesHi(bits) + highBits4(qh, 16u + q * 4u) - 16.0);
#elif defined(TYPE_Q5_1)
    // block_q5_1 { half d; half m; u32 qh; uint8 qs[16]; } (24 bytes: rows stay 4-byte aligned): x = d * q + m
    uint b = c >> 2, q = c & 3u;
    uint w0 = (rowOff + b * 24u) >> 2;
    vec2 dm = unpackHalf2x16(wdata[w0]);
    uint qh = wdata[w0 + 1u];
    uint bits = wdata[w0 + 2u + q];
    ca = b * 32u + q * 4u;
    cb = ca + 16u;
    wa = dm.x * (nibblesLo(bits) + highBits4(qh, q * 4u)) + dm.y;
    wb = dm.x * (nibblesHi(bits) + highBits4(qh, 16u + q * 4u)) + dm.y;
#elif defined(TYPE_Q4_K) || defined(TYPE_Q5_K)
    // block_q4_K { half d; half dmin; u8 scales[12]; u8 qs[128]; } (144 bytes), block_q5_K adds
    // u8 qh[32] before qs (176 bytes); both keep rows 4-byte aligned. Pair p of sub-blocks covers
    // 64 values: qs[32p + l] holds element 64p + l (low nibble, sub-block 2p) and 64p + 32 + l
    // (high nibble, sub-block 2p+1); Q5_K's 5th bits are bits 2p and 2p+1 of qh[l].
    // x = d·sc·q − dmin·m. Chunk c of a block: pair (c & 31) >> 3, l = 4 · (c & 7).
#if defined(TYPE_Q4_K)
    const uint blockBytes = 144u, qsOff = 16u;
#else
    const uint blockBytes = 176u, qsOff = 48u;
#endif
    uint b = c >> 5, i = c & 31u, pair = i >> 3, l = (i & 7u) * 4u;
    uint off = rowOff + b * blockBytes;
    vec2 dm = unpackHalf2x16(wdata[off >> 2]);
    vec2 s1 = kScaleMin(off + 4u, 2u * pair), s2 = kScaleMin(off + 4u, 2u * pair + 1u);
    uint bits = wdata[(off + qsOff + 32u * pair + l) >> 2];
    vec4 lo = nibblesLo(bits), hi = nibblesHi(bits);
#if defined(TYPE_Q5_K)
    uint hw = wdata[(off + 16u + l) >> 2];
    lo += 16.0 * byteBits1(hw, 2u * pair);
    hi += 16.0 * byteBits1(hw, 2u * pair + 1u);
#endif
    ca = b * 256u + 64u * pair + l;
    cb = ca + 32u;
    wa = (dm.x * s1.x) * lo - dm.y * s1.y;
    wb = (dm.x * s2.x) * hi - dm.y * s2.y;
#elif defined(TYPE_Q6_K)
    // block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; half d; } (210 bytes, 2-byte aligned).
    // Half h covers 128 values; for l < 32, ql[64h + l] holds elements l (low nibble) and l + 64
    // (high), ql[64h + 32 + l] elements l + 32 and l + 96; their top 2 bits are bits 0-1, 4-5,
    // 2-3, 6-7 of qh[32h + l]; element e's scale is scales[8h + e / 16]. x = d·scale·(q − 32).
    // Chunk c of a block: half (c & 31) >> 4, sel = (c >> 3) & 1 (which ql run), l = 4 · (c & 7).
    uint b = c >> 5, i = c & 31u, h = i >> 4, sel = (i >> 3) & 1u, l = (i & 7u) * 4u;
    uint off = rowOff + b * 210u;
    float d = halfAt(off + 208u);
    uint qlw = load32even(off + 64u * h + 32u * sel + l);
    uint qhw = load32even(off + 128u + 32u * h + l);
    uint si = off + 192u + 8u * h + l / 16u + 2u * sel;
    float sa = float(bitfieldExtract(int(load8(si)), 0, 8)), sb = float(bitfieldExtract(int(load8(si + 4u)), 0, 8));
    ca = b * 256u + 128u * h + 32u * sel + l;
    cb = ca + 64u;
    wa = (d * sa) * (nibblesLo(qlw) + 16.0 * byteBits2(qhw, 2u * sel) - 32.0);
    wb = (d * sb) * (nibblesHi(qlw) + 16.0 * byteBits2(qhw, 2u * sel + 4u) - 32.0);
#else
#error "define one of TYPE_F32 TYPE_F16 TYPE_BF16 TYPE_Q8_0 TYPE_Q4_0 TYPE_Q4_1 TYPE_Q5_0 TYPE_Q5_1 TYPE_Q4_K TYPE_Q5_K TYPE_Q6_K"
#endif
}

// One element (column j) of the row at byte `rowOff`, for embedding lookups.
float dequantize(uint rowOff, uint j) {
#if defined(FLOAT_WEIGHTS)
    return elementAt(rowOff, j);
#elif defined(TYPE_Q8_0)
    uint off = rowOff + (j >> 5) * 34u;
    return halfAt(off) * float(bitfieldExtract(int(load8(off + 2u + (j & 31u))), 0, 8));
#elif defined(TYPE_Q4_0)
    uint off = rowOff + (j >> 5) * 18u, k = j & 31u;
    uint byte = load8(off + 2u + (k & 15u));
    uint nib = k < 16u ? (byte & 15u) : (byte >> 4);
    return halfAt(off) * (float(nib) - 8.0);
#elif defined(TYPE_Q4_1)
    uint off = rowOff + (j >> 5) * 20u, k = j & 31u;
    uint byte = load8(off + 4u + (k & 15u));
    uint nib = k < 16u ? (byte & 15u) : (byte >> 4);
    vec2 dm = unpackHalf2x16(load32(off));
    return dm.x * float(nib) + dm.y;
#elif defined(TYPE_Q5_0) || defined(TYPE_Q5_1)
#if defined(TYPE_Q5_0)
    uint off = rowOff + (j >> 5) * 22u, qhOff = 2u;
#else
    uint off = rowOff + (j >> 5) * 24u, qhOff = 4u;
#endif
    uint k = j & 31u;
    uint byte = load8(off + qhOff + 4u + (k & 15u));
    uint q = (k < 16u ? (byte & 15u) : (byte >> 4)) | (((load32even(off + qhOff) >> k) & 1u) << 4);
#if defined(TYPE_Q5_0)
    return halfAt(off) * (float(q) - 16.0);
#else
    return halfAt(off) * float(q) + halfAt(off + 2u);
#endif
#elif defined(TYPE_Q4_K) || defined(TYPE_Q5_K)
#if defined(TYPE_Q4_K)
    uint off = rowOff + (j >> 8) * 144u, qsOff = 16u;
#else
    uint off = rowOff + (j >> 8) * 176u, qsOff = 48u;
#endif
    uint k = j & 255u, pair = k >> 6, upper = (k >> 5) & 1u, l = k & 31u;
    uint byte = load8(off + qsOff + 32u * pair + l);
    uint q = upper == 1u ? (byte >> 4) : (byte & 15u);
#if defined(TYPE_Q5_K)
    q |= ((load8(off + 16u + l) >> (2u * pair + upper)) & 1u) << 4;
#endif
    vec2 sm = kScaleMin(off + 4u, 2u * pair + upper);
    return halfAt(off) * sm.x * float(q) - halfAt(off + 2u) * sm.y;
#elif defined(TYPE_Q6_K)
    uint off = rowOff + (j >> 8) * 210u;
    uint k = j & 255u, h = k >> 7, quad = (k >> 5) & 3u, l = k & 31u;
    uint byte = load8(off + 64u * h + 32u * (quad & 1u) + l);
    uint q = (quad >= 2u ? (byte >> 4) : (byte & 15u)) | (((load8(off + 128u + 32u * h + l) >> (2u * quad)) & 3u) << 4);
    float sc = float(bitfieldExtract(int(load8(off + 192u + 8u * h + l / 16u + 2u * quad)), 0, 8));
    return halfAt(off + 208u) * sc * (float(q) - 32.0);
#endif
}
