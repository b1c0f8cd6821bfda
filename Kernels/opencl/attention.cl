// Fused causal attention with online softmax (flash-attention style), for decode and
// prompt batches. One work-group per (query head, query row); local size L (a power of two).
// Keys are visited in tiles of L positions: each work-item scores one position, the group
// finds the tile maximum, rescales its running output by exp(m_old - m_new) and adds the
// tile's exp-weighted values. Scores never go to global memory.
// GQA: query head h reads KV head h / (heads / kvHeads).
// Local memory: qs[headDim], acc[headDim], p[L], red[L], rowsL[L].
// The body shared by contiguous and paged attention. The row sees positions first ... visible - 1
// (first > 0 with a sliding window). Position p of the row's sequence is at
// row p of k/v, or, with a block table, at row table[p / blockSize] * blockSize + p % blockSize.
// `rowsL` (L ints) publishes each tile's physical rows to the value pass.
inline void attend(global const float* q, global const float* k, global const float* v, global float* out,
                   int r, int h, int first, int visible, global const int* table, int blockSize,
                   int heads, int kvHeads, int headDim, float scale, float softcap,
                   local float* qs, local float* acc, local float* p, local float* red, local int* rowsL) {
    int t = get_local_id(0), n = get_local_size(0);
    int queryWidth = heads * headDim, kvWidth = kvHeads * headDim;
    int kvOffset = (h / (heads / kvHeads)) * headDim;
    global const float* qh = q + (size_t)r * queryWidth + h * headDim;
    for (int d = t; d < headDim; d += n) {
        qs[d] = qh[d];
        acc[d] = 0.0f;
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    float m = -INFINITY, l = 0.0f;
    for (int p0 = first; p0 < visible; p0 += n) {
        int pos = p0 + t;
        float s = -INFINITY;
        if (pos < visible) {
            int physical = table ? table[pos / blockSize] * blockSize + pos % blockSize : pos;
            rowsL[t] = physical;
            global const float* kp = k + (size_t)physical * kvWidth + kvOffset;
            float dot = 0.0f;
            for (int d = 0; d < headDim; d++) dot += qs[d] * kp[d];
            s = soft_cap(dot * scale, softcap);
        }
        float tileMax = group_max(red, s);
        float mNew = fmax(m, tileMax);
        float correction = exp(m - mNew);
        float e = pos < visible ? exp(s - mNew) : 0.0f;
        p[t] = e;
        l = l * correction + group_sum(red, e);   // group_sum's barriers also publish p[] and rowsL[]
        int count = min(n, visible - p0);
        for (int d = t; d < headDim; d += n) {
            global const float* vd = v + kvOffset + d;
            float a = acc[d] * correction;
            for (int j = 0; j < count; j++) a += p[j] * vd[(size_t)rowsL[j] * kvWidth];
            acc[d] = a;
        }
        m = mNew;
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float inverse = 1.0f / l;
    global float* oh = out + (size_t)r * queryWidth + h * headDim;
    for (int d = t; d < headDim; d += n) oh[d] = acc[d] * inverse;
}

// Soft-capping (Gemma 2): a scaled score s becomes softcap * tanh(s / softcap) when softcap > 0.
// A sliding window of `window` positions (0 = unlimited) starts at visible - window.
#define FIRST(visible, window) ((window) > 0 ? max(0, (visible) - (window)) : 0)

// Row r (position startPosition + r) over positions 0 ... startPosition + r of a contiguous cache.
kernel void attention(global const float* q, global const float* k, global const float* v, global float* out,
                      int startPosition, int heads, int kvHeads, int headDim, float scale, int window, float softcap,
                      local float* qs, local float* acc, local float* p, local float* red, local int* rowsL) {
    int h = get_group_id(0), r = get_group_id(1), visible = startPosition + r + 1;
    attend(q, k, v, out, r, h, FIRST(visible, window), visible, 0, 1, heads, kvHeads, headDim, scale, softcap, qs, acc, p, red, rowsL);
}

// Paged KV cache: row r sees lengths[r] positions through its block table
// (tables + r * tableStride, blocks of blockSize rows).
kernel void paged_attention(global const float* q, global const float* k, global const float* v, global float* out,
                            global const int* tables, int tableStride, global const int* lengths, int blockSize,
                            int heads, int kvHeads, int headDim, float scale, int window, float softcap,
                            local float* qs, local float* acc, local float* p, local float* red, local int* rowsL) {
    int h = get_group_id(0), r = get_group_id(1), visible = lengths[r];
    attend(q, k, v, out, r, h, FIRST(visible, window), visible, tables + (size_t)r * tableStride, blockSize,
           heads, kvHeads, headDim, scale, softcap, qs, acc, p, red, rowsL);
}

// CPU-device variant (PoCL runs a work-group as a loop, so the barriers of the tiled kernel
// dominate): one work-item per (head, row) walks its positions with the online softmax in
// registers: running max m, sum l and the output acc (headDim ≤ MAX_HEAD_DIM, a multiple of 4).
// Global size (heads, rows rounded up to the local size).
#define MAX_HEAD_DIM 256
inline void attend_private(global const float* q, global const float* k, global const float* v, global float* out,
                           int r, int h, int first, int visible, global const int* table, int blockSize,
                           int heads, int kvHeads, int headDim, float scale, float softcap) {
    int queryWidth = heads * headDim, kvWidth = kvHeads * headDim, d4 = headDim / 4;
    int kvOffset = (h / (heads / kvHeads)) * headDim;
    global const float* qh = q + (size_t)r * queryWidth + h * headDim;
    float4 acc[MAX_HEAD_DIM / 4];
    for (int i = 0; i < d4; i++) acc[i] = (float4)(0.0f);
    float m = -INFINITY, l = 0.0f;
    for (int pos = first; pos < visible; pos++) {
        int physical = table ? table[pos / blockSize] * blockSize + pos % blockSize : pos;
        global const float* kp = k + (size_t)physical * kvWidth + kvOffset;
        float4 dot4 = (float4)(0.0f);
        for (int i = 0; i < d4; i++) dot4 += vload4(i, qh) * vload4(i, kp);
        float s = soft_cap(((dot4.x + dot4.y) + (dot4.z + dot4.w)) * scale, softcap);
        if (s > m) {
            float correction = exp(m - s);
            l *= correction;
            for (int i = 0; i < d4; i++) acc[i] *= correction;
            m = s;
        }
        float e = exp(s - m);
        l += e;
        global const float* vp = v + (size_t)physical * kvWidth + kvOffset;
        for (int i = 0; i < d4; i++) acc[i] += e * vload4(i, vp);
    }
    float inverse = 1.0f / l;
    global float* oh = out + (size_t)r * queryWidth + h * headDim;
    for (int i = 0; i < d4; i++) vstore4(acc[i] * inverse, i, oh);
}

kernel void attention_private(global const float* q, global const float* k, global const float* v, global float* out,
                              int startPosition, int heads, int kvHeads, int headDim, float scale, int window, float softcap, int rows) {
    int h = get_global_id(0), r = get_global_id(1);
    if (r >= rows) return;
    int visible = startPosition + r + 1;
    attend_private(q, k, v, out, r, h, FIRST(visible, window), visible, 0, 1, heads, kvHeads, headDim, scale, softcap);
}

kernel void paged_attention_private(global const float* q, global const float* k, global const float* v, global float* out,
                                    global const int* tables, int tableStride, global const int* lengths, int blockSize,
                                    int heads, int kvHeads, int headDim, float scale, int window, float softcap, int rows) {
    int h = get_global_id(0), r = get_global_id(1);
    if (r >= rows) return;
    int visible = lengths[r];
    attend_private(q, k, v, out, r, h, FIRST(visible, window), visible, tables + (size_t)r * tableStride, blockSize,
                   heads, kvHeads, headDim, scale, softcap);
}
