#version 450
// Causal attention with GQA and online softmax: one workgroup per (query head, query row).
// Row r (position start + r) sees keys 0 ... start + r. Positions go in tiles of 64: each lane
// scores one position, the tile max rescales the running sum and the per-lane output
// accumulators (lane t owns dims t, t + 64, t + 128, t + 192: headDim ≤ 256).
//
// PAGED (attention_paged): keys and values live in blocks of a shared pool. Binding 4 holds one
// record of 1 + tableStride uints per query row: its visible length, then its block ids; position
// pos of row r is pool row table[pos / blockSize] · blockSize + pos % blockSize. `start` carries
// the block size. Each lane resolves the pool row of its position once per tile (keys) and
// shares it through `poolRows` for the value pass.
//
// `window` > 0 (sliding-window layers): a query at position q sees only positions
// ≥ max(0, q − window + 1), i.e. the last `window` of its `visible` ones; tiles start there.
//
// `softcap` > 0 (Gemma 2's attn_logit_softcapping): a scaled score s becomes
// softcap · tanh(s / softcap) before the softmax. tanh is written as 1 − 2/(e^{2u} + 1) with
// the sign folded out, so a large |s| saturates to ±softcap instead of overflowing to NaN.
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer Q { float q[]; };
layout(std430, set = 0, binding = 1) readonly buffer K { float k[]; };
layout(std430, set = 0, binding = 2) readonly buffer V { float v[]; };
layout(std430, set = 0, binding = 3) writeonly buffer O { float o[]; };
#ifdef PAGED
layout(std430, set = 0, binding = 4) readonly buffer T { uint tables[]; };
#endif
layout(push_constant) uniform Push {
    uint start;         // PAGED: block size
    uint heads;
    uint kvHeads;
    uint headDim;
    float scale;
    uint tableStride;   // PAGED: block ids per row record
    uint window;        // 0: unlimited
    float softcap;      // 0: none
} p;

shared float qs[256];
shared float weights[64];
shared float red[64];
#ifdef PAGED
shared uint poolRows[64];
#endif

void main() {
    uint t = gl_LocalInvocationID.x;
    uint h = gl_WorkGroupID.x, r = gl_WorkGroupID.y;
    uint queryWidth = p.heads * p.headDim, kvWidth = p.kvHeads * p.headDim;
    uint kvOff = (h / (p.heads / p.kvHeads)) * p.headDim;
    uint qBase = r * queryWidth + h * p.headDim;
    for (uint d = t; d < p.headDim; d += 64u) qs[d] = q[qBase + d];
    barrier();

#ifdef PAGED
    uint record = r * (p.tableStride + 1u);
    uint visible = tables[record];
#else
    uint visible = p.start + r + 1u;
#endif
    uint first = (p.window > 0u && visible > p.window) ? visible - p.window : 0u;
    float m = -1e30, l = 0.0;
    float acc[4] = float[4](0.0, 0.0, 0.0, 0.0);
    for (uint base = first; base < visible; base += 64u) {
        uint pos = base + t;
        float s = -1e30;
#ifdef PAGED
        uint row = pos < visible ? tables[record + 1u + pos / p.start] * p.start + pos % p.start : 0u;
        poolRows[t] = row;
#else
        uint row = pos;
#endif
        if (pos < visible) {
            uint kb = row * kvWidth + kvOff;
            float dotv = 0.0;
            for (uint d = 0u; d < p.headDim; d++) dotv += qs[d] * k[kb + d];
            s = dotv * p.scale;
            if (p.softcap > 0.0) {
                float u = abs(s) / p.softcap;
                s = sign(s) * p.softcap * (1.0 - 2.0 / (exp(2.0 * u) + 1.0));
            }
        }
        red[t] = s;
        barrier();
        for (uint w = 32u; w > 0u; w >>= 1) {
            if (t < w) red[t] = max(red[t], red[t + w]);
            barrier();
        }
        float mNew = max(m, red[0]);
        float alpha = exp(m - mNew);
        weights[t] = pos < visible ? exp(s - mNew) : 0.0;
        barrier();
        uint n = min(64u, visible - base);
        float tileSum = 0.0;
        for (uint j = 0u; j < n; j++) tileSum += weights[j];
        l = l * alpha + tileSum;
        for (uint i = 0u; i < 4u; i++) {
            uint d = t + 64u * i;
            if (d < p.headDim) {
                float a = acc[i] * alpha;
#ifdef PAGED
                for (uint j = 0u; j < n; j++) a += weights[j] * v[poolRows[j] * kvWidth + kvOff + d];
#else
                uint vb = base * kvWidth + kvOff + d;
                for (uint j = 0u; j < n; j++) a += weights[j] * v[vb + j * kvWidth];
#endif
                acc[i] = a;
            }
        }
        m = mNew;
        barrier();
    }
    float inv = l > 0.0 ? 1.0 / l : 0.0;   // a row with nothing visible (PAGED length 0) writes zeros
    for (uint i = 0u; i < 4u; i++) {
        uint d = t + 64u * i;
        if (d < p.headDim) o[qBase + d] = acc[i] * inv;
    }
}
