// Fused causal attention with online softmax (flash-attention style), for decode and
// prompt batches. One work-group per (query head, query row); local size L (a power of two).
// Keys are visited in tiles of L positions: each work-item scores one position, the group
// finds the tile maximum, rescales its running output by exp(m_old - m_new) and adds the
// tile's exp-weighted values. Scores never go to global memory.
// GQA: query head h reads KV head h / (heads / kvHeads).
// Local memory: qs[headDim], acc[headDim], p[L], red[L].
kernel void attention(global const float* q, global const float* k, global const float* v, global float* out,
                      int startPosition, int heads, int kvHeads, int headDim, float scale,
                      local float* qs, local float* acc, local float* p, local float* red) {
    int h = get_group_id(0), r = get_group_id(1);
    int t = get_local_id(0), n = get_local_size(0);
    int queryWidth = heads * headDim, kvWidth = kvHeads * headDim;
    int kvOffset = (h / (heads / kvHeads)) * headDim;
    int visible = startPosition + r + 1;
    global const float* qh = q + (size_t)r * queryWidth + h * headDim;
    for (int d = t; d < headDim; d += n) {
        qs[d] = qh[d];
        acc[d] = 0.0f;
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    float m = -INFINITY, l = 0.0f;
    for (int p0 = 0; p0 < visible; p0 += n) {
        int pos = p0 + t;
        float s = -INFINITY;
        if (pos < visible) {
            global const float* kp = k + (size_t)pos * kvWidth + kvOffset;
            float dot = 0.0f;
            for (int d = 0; d < headDim; d++) dot += qs[d] * kp[d];
            s = dot * scale;
        }
        float tileMax = group_max(red, s);
        float mNew = fmax(m, tileMax);
        float correction = exp(m - mNew);
        float e = pos < visible ? exp(s - mNew) : 0.0f;
        p[t] = e;
        l = l * correction + group_sum(red, e);   // group_sum's barriers also publish p[]
        int count = min(n, visible - p0);
        for (int d = t; d < headDim; d += n) {
            global const float* vp = v + (size_t)p0 * kvWidth + kvOffset + d;
            float a = acc[d] * correction;
            for (int j = 0; j < count; j++) a += p[j] * vp[(size_t)j * kvWidth];
            acc[d] = a;
        }
        m = mNew;
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float inverse = 1.0f / l;
    global float* oh = out + (size_t)r * queryWidth + h * headDim;
    for (int d = t; d < headDim; d += n) oh[d] = acc[d] * inverse;
}
