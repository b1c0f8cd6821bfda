// Weight formats, read in place from their GGUF blocks (ggml-common.h layouts):
//   F32, F16, BF16: one element per unit.
//   Q8_0 { half d; char qs[32]; }            x = d*q                    (34 bytes)
//   Q4_0 { half d; uchar qs[16]; }           x[j] = d*(lo(qs[j]) - 8), x[j+16] = d*(hi(qs[j]) - 8)  (18 bytes)
//   Q4_1 { half d; half m; uchar qs[16]; }   x = d*q + m                (20 bytes)
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
