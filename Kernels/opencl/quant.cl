// Weight formats, read in place from their GGUF blocks (ggml-common.h layouts):
//   F32, F16, BF16: one element per unit.
//   Q8_0 { half d; char qs[32]; }            x = d*q                    (34 bytes)
//   Q4_0 { half d; uchar qs[16]; }           x[j] = d*(lo(qs[j]) - 8), x[j+16] = d*(hi(qs[j]) - 8)  (18 bytes)
//   Q4_1 { half d; half m; uchar qs[16]; }   x = d*q + m                (20 bytes)
//   Q5_0 { half d; uchar qh[4]; uchar qs[16]; }         like Q4_0, 5th bit of element j in bit j of qh,
//                                                       x = d*(q - 16)          (22 bytes)
//   Q5_1 { half d; half m; uchar qh[4]; uchar qs[16]; } x = d*q + m             (24 bytes)
//   Q4_K { half d; half dmin; uchar scales[12]; uchar qs[128]; }              (144 bytes / 256)
//        eight sub-blocks of 32 with a 6-bit scale and min each (kscale_min), x = d*sc*q - dmin*m;
//        sub-block j reads nibble (j & 1) of qs[32*(j/2) + l]
//   Q5_K { half d; half dmin; uchar scales[12]; uchar qh[32]; uchar qs[128]; } (176 bytes / 256)
//        as Q4_K, 5th bit of element l of sub-block j in bit j of qh[l]
//   Q6_K { uchar ql[128]; uchar qh[64]; char scales[16]; half d; }           (210 bytes / 256)
//        x = d*scale*(q - 32), 16 scales of 16 elements, q = 4 bits of ql | 2 bits of qh << 4
// Blocks of 22 and 210 bytes are not 4-byte aligned: everything but halves is read as bytes
// (vloadn of uchar needs no alignment). K-quant rows are processed in 32-element units too
// (a sub-block: unit u is sub-block u % 8 of block u / 8), so every kernel takes every type.
// For each type T:
//   get_T(row, c)       element c of a row, dequantized (embedding, tiled matmul)
//   deq_T(row, u, ...)  32 elements from element 32u on, as two float16 (row matmul on CPU devices)
//   dot_T(row, u, x)    the dot product of unit u of a row (a block, or one element) with x
//   UNITS_T(columns)    units in a row

// ---- F32
inline float get_f32(global const uchar* row, int c) { return ((global const float*)row)[c]; }
inline float dot_f32(global const uchar* row, int u, global const float* x) { return ((global const float*)row)[u] * x[u]; }
#define UNITS_f32(columns) (columns)
inline void deq_f32(global const uchar* row, int u, float16* lo, float16* hi) {
    global const float* p = (global const float*)row + u * QK;
    *lo = vload16(0, p); *hi = vload16(1, p);
}

// ---- F16
inline float get_f16(global const uchar* row, int c) { return vload_half(c, (global const half*)row); }
inline float dot_f16(global const uchar* row, int u, global const float* x) { return vload_half(u, (global const half*)row) * x[u]; }
#define UNITS_f16(columns) (columns)
inline void deq_f16(global const uchar* row, int u, float16* lo, float16* hi) {
    global const half* p = (global const half*)row + u * QK;
    *lo = vload_half16(0, p); *hi = vload_half16(1, p);
}

// ---- BF16
inline float get_bf16(global const uchar* row, int c) { return as_float(((uint)((global const ushort*)row)[c]) << 16); }
inline float dot_bf16(global const uchar* row, int u, global const float* x) { return get_bf16(row, u) * x[u]; }
#define UNITS_bf16(columns) (columns)
inline void deq_bf16(global const uchar* row, int u, float16* lo, float16* hi) {
    global const ushort* p = (global const ushort*)row + u * QK;
    *lo = as_float16(convert_uint16(vload16(0, p)) << 16);
    *hi = as_float16(convert_uint16(vload16(1, p)) << 16);
}

// ---- Q8_0
inline float get_q8_0(global const uchar* row, int c) {
    global const uchar* block = row + (c / QK) * 34;
    return load_half(block) * (float)((global const char*)(block + 2))[c % QK];
}
inline float dot_q8_0(global const uchar* row, int u, global const float* x) {
    global const uchar* block = row + u * 34;
    global const char* q = (global const char*)(block + 2);
    global const float* xs = x + u * QK;
    float16 s = convert_float16(vload16(0, q)) * vload16(0, xs) + convert_float16(vload16(1, q)) * vload16(1, xs);
    return load_half(block) * hsum16(s);
}
#define UNITS_q8_0(columns) ((columns) / QK)
inline void deq_q8_0(global const uchar* row, int u, float16* lo, float16* hi) {
    global const uchar* block = row + u * 34;
    global const char* q = (global const char*)(block + 2);
    float d = load_half(block);
    *lo = d * convert_float16(vload16(0, q)); *hi = d * convert_float16(vload16(1, q));
}

// ---- Q4_0
inline float get_q4_0(global const uchar* row, int c) {
    global const uchar* block = row + (c / QK) * 18;
    int j = c % QK;
    uchar b = block[2 + (j & 15)];
    int q = j < 16 ? (b & 15) : (b >> 4);
    return load_half(block) * (float)(q - 8);
}
inline float dot_q4_0(global const uchar* row, int u, global const float* x) {
    global const uchar* block = row + u * 18;
    uchar16 q = vload16(0, block + 2);
    global const float* xs = x + u * QK;
    float16 lo = convert_float16(q & (uchar)15) - 8.0f;
    float16 hi = convert_float16(q >> (uchar)4) - 8.0f;
    return load_half(block) * hsum16(lo * vload16(0, xs) + hi * vload16(1, xs));
}
#define UNITS_q4_0(columns) ((columns) / QK)
inline void deq_q4_0(global const uchar* row, int u, float16* lo, float16* hi) {
    global const uchar* block = row + u * 18;
    uchar16 q = vload16(0, block + 2);
    float d = load_half(block);
    *lo = d * (convert_float16(q & (uchar)15) - 8.0f); *hi = d * (convert_float16(q >> (uchar)4) - 8.0f);
}

// ---- Q4_1
inline float get_q4_1(global const uchar* row, int c) {
    global const uchar* block = row + (c / QK) * 20;
    int j = c % QK;
    uchar b = block[4 + (j & 15)];
    int q = j < 16 ? (b & 15) : (b >> 4);
    return load_half(block) * (float)q + load_half(block + 2);
}
inline float dot_q4_1(global const uchar* row, int u, global const float* x) {
    global const uchar* block = row + u * 20;
    uchar16 q = vload16(0, block + 4);
    global const float* xs = x + u * QK;
    float16 x0 = vload16(0, xs), x1 = vload16(1, xs);
    float16 s = convert_float16(q & (uchar)15) * x0 + convert_float16(q >> (uchar)4) * x1;
    return load_half(block) * hsum16(s) + load_half(block + 2) * hsum16(x0 + x1);
}
#define UNITS_q4_1(columns) ((columns) / QK)
inline void deq_q4_1(global const uchar* row, int u, float16* lo, float16* hi) {
    global const uchar* block = row + u * 20;
    uchar16 q = vload16(0, block + 4);
    float d = load_half(block), m = load_half(block + 2);
    *lo = d * convert_float16(q & (uchar)15) + m; *hi = d * convert_float16(q >> (uchar)4) + m;
}

// Units of 32 elements for every block type: a dot product is its dequantized unit · x.
#define DOT_FROM_DEQ(T)                                                                             \
inline float dot_##T(global const uchar* row, int u, global const float* x) {                      \
    float16 lo, hi;                                                                                 \
    deq_##T(row, u, &lo, &hi);                                                                      \
    global const float* xs = x + u * QK;                                                            \
    return hsum16(lo * vload16(0, xs) + hi * vload16(1, xs));                                       \
}

inline uint load_u32(global const uchar* p) {
    uchar4 b = vload4(0, p);
    return (uint)b.x | ((uint)b.y << 8) | ((uint)b.z << 16) | ((uint)b.w << 24);
}

// The 5th bits of elements 0..15 (shift 0) or 16..31 (shift 16) of a Q5_0/Q5_1 unit, at bit 4.
inline uint16 q5_high(uint qh, uint shift) {
    const uint16 lanes = (uint16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return (((uint16)(qh >> shift) >> lanes) & 1u) << 4;
}

// ---- Q5_0
inline float get_q5_0(global const uchar* row, int c) {
    global const uchar* block = row + (c / QK) * 22;
    int j = c % QK;
    uchar b = block[6 + (j & 15)];
    int q = (j < 16 ? (b & 15) : (b >> 4)) | (int)((load_u32(block + 2) >> j) & 1u) << 4;
    return load_half(block) * (float)(q - 16);
}
inline void deq_q5_0(global const uchar* row, int u, float16* lo, float16* hi) {
    global const uchar* block = row + u * 22;
    uint16 q = convert_uint16(vload16(0, block + 6));
    uint qh = load_u32(block + 2);
    float d = load_half(block);
    *lo = d * (convert_float16((q & 15u) | q5_high(qh, 0)) - 16.0f);
    *hi = d * (convert_float16((q >> 4) | q5_high(qh, 16)) - 16.0f);
}
DOT_FROM_DEQ(q5_0)
#define UNITS_q5_0(columns) ((columns) / QK)

// ---- Q5_1
inline float get_q5_1(global const uchar* row, int c) {
    global const uchar* block = row + (c / QK) * 24;
    int j = c % QK;
    uchar b = block[8 + (j & 15)];
    int q = (j < 16 ? (b & 15) : (b >> 4)) | (int)((load_u32(block + 4) >> j) & 1u) << 4;
    return load_half(block) * (float)q + load_half(block + 2);
}
inline void deq_q5_1(global const uchar* row, int u, float16* lo, float16* hi) {
    global const uchar* block = row + u * 24;
    uint16 q = convert_uint16(vload16(0, block + 8));
    uint qh = load_u32(block + 4);
    float d = load_half(block), m = load_half(block + 2);
    *lo = d * convert_float16((q & 15u) | q5_high(qh, 0)) + m;
    *hi = d * convert_float16((q >> 4) | q5_high(qh, 16)) + m;
}
DOT_FROM_DEQ(q5_1)
#define UNITS_q5_1(columns) ((columns) / QK)

// ---- Q4_K / Q5_K: 6-bit scale and min of sub-block j (ggml's get_scale_min_k4).
inline void kscale_min(int j, global const uchar* s, float* sc, float* m) {
    if (j < 4) {
        *sc = (float)(s[j] & 63);
        *m = (float)(s[j + 4] & 63);
    } else {
        *sc = (float)((s[j + 4] & 15) | ((s[j - 4] >> 6) << 4));
        *m = (float)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

// ---- Q4_K
inline float get_q4_K(global const uchar* row, int c) {
    global const uchar* block = row + (c / 256) * 144;
    int j = (c % 256) / QK, l = c % QK;
    float sc, m;
    kscale_min(j, block + 4, &sc, &m);
    uchar b = block[16 + 32 * (j >> 1) + l];
    int q = (j & 1) ? (b >> 4) : (b & 15);
    return load_half(block) * sc * (float)q - load_half(block + 2) * m;
}
inline void deq_q4_K(global const uchar* row, int u, float16* lo, float16* hi) {
    global const uchar* block = row + (u / 8) * 144;
    int j = u % 8;
    float sc, m;
    kscale_min(j, block + 4, &sc, &m);
    float ds = load_half(block) * sc, dm = load_half(block + 2) * m;
    global const uchar* qs = block + 16 + 32 * (j >> 1);
    uchar shift = (uchar)((j & 1) * 4);
    *lo = ds * convert_float16((vload16(0, qs) >> shift) & (uchar)15) - dm;
    *hi = ds * convert_float16((vload16(1, qs) >> shift) & (uchar)15) - dm;
}
DOT_FROM_DEQ(q4_K)
#define UNITS_q4_K(columns) ((columns) / QK)

// ---- Q5_K
inline float get_q5_K(global const uchar* row, int c) {
    global const uchar* block = row + (c / 256) * 176;
    int j = (c % 256) / QK, l = c % QK;
    float sc, m;
    kscale_min(j, block + 4, &sc, &m);
    uchar b = block[48 + 32 * (j >> 1) + l];
    int q = ((j & 1) ? (b >> 4) : (b & 15)) | ((block[16 + l] >> j) & 1) << 4;
    return load_half(block) * sc * (float)q - load_half(block + 2) * m;
}
inline void deq_q5_K(global const uchar* row, int u, float16* lo, float16* hi) {
    global const uchar* block = row + (u / 8) * 176;
    int j = u % 8;
    float sc, m;
    kscale_min(j, block + 4, &sc, &m);
    float ds = load_half(block) * sc, dm = load_half(block + 2) * m;
    global const uchar* qs = block + 48 + 32 * (j >> 1);
    global const uchar* qh = block + 16;
    uchar shift = (uchar)((j & 1) * 4), bit = (uchar)j;
    uchar16 q0 = ((vload16(0, qs) >> shift) & (uchar)15) | (((vload16(0, qh) >> bit) & (uchar)1) << (uchar)4);
    uchar16 q1 = ((vload16(1, qs) >> shift) & (uchar)15) | (((vload16(1, qh) >> bit) & (uchar)1) << (uchar)4);
    *lo = ds * convert_float16(q0) - dm;
    *hi = ds * convert_float16(q1) - dm;
}
DOT_FROM_DEQ(q5_K)
#define UNITS_q5_K(columns) ((columns) / QK)

// ---- Q6_K: unit j of a block is quarter k = j % 4 of half h = j / 4: its element l is
// (ql[64h + 32(k & 1) + l] >> 4(k >> 1)) & 15 | ((qh[32h + l] >> 2k) & 3) << 4, scale[8h + 2k + l / 16].
inline float get_q6_K(global const uchar* row, int c) {
    global const uchar* block = row + (c / 256) * 210;
    int j = (c % 256) / QK, l = c % QK, h = j >> 2, k = j & 3;
    int a = (block[64 * h + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 15;
    int q = a | ((block[128 + 32 * h + l] >> (2 * k)) & 3) << 4;
    float scale = (float)((global const char*)block)[192 + 8 * h + 2 * k + l / 16];
    return load_half(block + 208) * scale * (float)(q - 32);
}
inline void deq_q6_K(global const uchar* row, int u, float16* lo, float16* hi) {
    global const uchar* block = row + (u / 8) * 210;
    int j = u % 8, h = j >> 2, k = j & 3;
    global const uchar* ql = block + 64 * h + 32 * (k & 1);
    global const uchar* qh = block + 128 + 32 * h;
    global const char* sc = (global const char*)block + 192 + 8 * h + 2 * k;
    uchar ls = (uchar)(4 * (k >> 1)), hs = (uchar)(2 * k);
    uchar16 q0 = ((vload16(0, ql) >> ls) & (uchar)15) | (((vload16(0, qh) >> hs) & (uchar)3) << (uchar)4);
    uchar16 q1 = ((vload16(1, ql) >> ls) & (uchar)15) | (((vload16(1, qh) >> hs) & (uchar)3) << (uchar)4);
    float d = load_half(block + 208);
    *lo = (d * (float)sc[0]) * (convert_float16(q0) - 32.0f);
    *hi = (d * (float)sc[1]) * (convert_float16(q1) - 32.0f);
}
DOT_FROM_DEQ(q6_K)
#define UNITS_q6_K(columns) ((columns) / QK)
