// y[r, o] = sum_c W[o, c] * x[r, c]; W rows are `rowBytes` apart, in the blocks of its type.

// Mat-vec (decode, and very small batches): local size (TPR, RPG). TPR work-items share one
// output row, striding over its units (blocks); RPG rows per work-group; dimension 2 is the
// token. `scratch` holds TPR*RPG floats. TPR is a power of two.
#define MATVEC(T)                                                                                   \
kernel void matvec_##T(global const uchar* w, int rowBytes, global const float* x, global float* y, \
                       int outputs, int columns, local float* scratch) {                            \
    int t = get_local_id(0), tpr = get_local_size(0);                                               \
    int o = get_global_id(1), r = get_global_id(2);                                                 \
    local float* red = scratch + get_local_id(1) * tpr;                                             \
    global const float* xr = x + (size_t)r * columns;                                               \
    float acc = 0.0f;                                                                               \
    if (o < outputs) {                                                                              \
        global const uchar* row = w + (size_t)o * rowBytes;                                         \
        int units = UNITS_##T(columns);                                                             \
        for (int u = t; u < units; u += tpr) acc += dot_##T(row, u, xr);                            \
    }                                                                                               \
    red[t] = acc;                                                                                   \
    barrier(CLK_LOCAL_MEM_FENCE);                                                                   \
    for (int s = tpr >> 1; s > 0; s >>= 1) {                                                        \
        if (t < s) red[t] += red[t + s];                                                            \
        barrier(CLK_LOCAL_MEM_FENCE);                                                               \
    }                                                                                               \
    if (t == 0 && o < outputs) y[(size_t)r * outputs + o] = red[0];                                 \
}

// Tiled matmul (prompt batches): local size (TILE, TILE); a work-group computes a TILE x TILE
// tile of outputs x tokens. Each step stages a TILE x 32 slice of W (dequantized once and
// reused by TILE tokens) and of x in local memory. Edges (outputs, tokens, columns that are
// not multiples of the tile or of 32) are padded with zeros.
#define MATMUL(T)                                                                                   \
kernel void matmul_##T(global const uchar* w, int rowBytes, global const float* x, global float* y, \
                       int outputs, int columns, int rows) {                                        \
    local float wt[TILE][QK + 1];                                                                   \
    local float xt[TILE][QK + 1];                                                                   \
    int lx = get_local_id(0), ly = get_local_id(1), lid = ly * TILE + lx;                          \
    int o0 = get_group_id(0) * TILE, r0 = get_group_id(1) * TILE;                                   \
    float acc = 0.0f;                                                                               \
    for (int k0 = 0; k0 < columns; k0 += QK) {                                                      \
        for (int i = lid; i < TILE * QK; i += TILE * TILE) {                                        \
            int a = i / QK, k = i % QK, c = k0 + k;                                                 \
            int o = o0 + a, r = r0 + a;                                                             \
            wt[a][k] = (o < outputs && c < columns) ? get_##T(w + (size_t)o * rowBytes, c) : 0.0f; \
            xt[a][k] = (r < rows && c < columns) ? x[(size_t)r * columns + c] : 0.0f;              \
        }                                                                                           \
        barrier(CLK_LOCAL_MEM_FENCE);                                                               \
        for (int k = 0; k < QK; k++) acc += wt[lx][k] * xt[ly][k];                                  \
        barrier(CLK_LOCAL_MEM_FENCE);                                                               \
    }                                                                                               \
    int o = o0 + lx, r = r0 + ly;                                                                   \
    if (o < outputs && r < rows) y[(size_t)r * outputs + o] = acc;                                  \
}

// Row matmul for CPU devices (PoCL), where a work-group runs as a loop and local-memory tiles
// cost more than they save: each work-item owns one output row and RB tokens, dequantizes each
// 32-value block once into registers and applies it to its RB tokens (like the CPU backend's
// tile of dequantized rows). Needs columns % 32 == 0. Global size (outputs, ceil(rows / RB)).
#define RB 8
#define MATMUL_ROWS(T)                                                                              \
kernel void matmul_rows_##T(global const uchar* w, int rowBytes, global const float* x,            \
                            global float* y, int outputs, int columns, int rows) {                 \
    int o = get_global_id(0), r0 = get_global_id(1) * RB;                                           \
    if (o >= outputs) return;                                                                       \
    int n = min(RB, rows - r0);                                                                     \
    global const uchar* row = w + (size_t)o * rowBytes;                                             \
    global const float* xr = x + (size_t)r0 * columns;                                              \
    float16 acc[RB];                                                                                \
    for (int j = 0; j < RB; j++) acc[j] = (float16)(0.0f);                                          \
    int blocks = columns / QK;                                                                      \
    for (int u = 0; u < blocks; u++) {                                                              \
        float16 lo, hi;                                                                             \
        deq_##T(row, u, &lo, &hi);                                                                  \
        for (int j = 0; j < n; j++) {                                                               \
            global const float* xs = xr + (size_t)j * columns + u * QK;                             \
            acc[j] += lo * vload16(0, xs) + hi * vload16(1, xs);                                    \
        }                                                                                           \
    }                                                                                               \
    for (int j = 0; j < n; j++) y[(size_t)(r0 + j) * outputs + o] = hsum16(acc[j]);                 \
}

// Embedding lookup: out[r, c] = table[tokens[r], c]; global size (columns, tokens).
#define EMBED(T)                                                                                    \
kernel void embed_##T(global const uchar* table, int rowBytes, global const int* tokens,           \
                      global float* out, int columns) {                                             \
    int c = get_global_id(0), r = get_global_id(1);                                                 \
    if (c >= columns) return;                                                                       \
    out[(size_t)r * columns + c] = get_##T(table + (size_t)tokens[r] * rowBytes, c);                \
}

#define WEIGHT_KERNELS(T) MATVEC(T) MATMUL(T) MATMUL_ROWS(T) EMBED(T)
WEIGHT_KERNELS(f32)
WEIGHT_KERNELS(f16)
WEIGHT_KERNELS(bf16)
WEIGHT_KERNELS(q8_0)
WEIGHT_KERNELS(q4_0)
WEIGHT_KERNELS(q4_1)
WEIGHT_KERNELS(q5_0)
WEIGHT_KERNELS(q5_1)
WEIGHT_KERNELS(q4_K)
WEIGHT_KERNELS(q5_K)
WEIGHT_KERNELS(q6_K)
