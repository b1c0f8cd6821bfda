// Weight access shared by matmul.comp and embed.comp. A weight is bound as raw bytes in a
// uint storage buffer (binding WEIGHT_BINDING) in its GGUF block layout; exactly one of
// TYPE_F32 / TYPE_F16 / TYPE_BF16 / TYPE_Q8_0 / TYPE_Q4_0 / TYPE_Q4_1 is defined by the build
// (glslc -D...). Block layouts are llama.cpp's (ggml-common.h); rows are not 4-byte aligned in
// general (a Q4_0 row of 32 columns is 18 bytes), so every read goes through byte offsets.

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
// A chunk is a quarter of a 32-value block: 8 values.
uint chunkCount(uint columns) { return columns / 8u; }
#endif

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
#else
#error "define one of TYPE_F32 TYPE_F16 TYPE_BF16 TYPE_Q8_0 TYPE_Q4_0 TYPE_Q4_1"
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
#else
    uint off = rowOff + (j >> 5) * 20u, k = j & 31u;
    uint byte = load8(off + 4u + (k & 15u));
    uint nib = k < 16u ? (byte & 15u) : (byte >> 4);
    vec2 dm = unpackHalf2x16(load32(off));
    return dm.x * float(nib) + dm.y;
#endif
}
