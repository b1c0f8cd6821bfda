#version 450
// Mixture-of-experts ops (issue #5), one source for three modules:
//   MOE_GATE    router logits [rows, experts] → the top-k expert ids (as floats) and weights;
//   GATHER      destination row i = source row indices[i];
//   SCATTER_ADD destination row indices[i] += factors[i] · source row i, in order of i.
// The index and factor tables are small device buffers the host writes in command order
// (vkCmdUpdateBuffer), so none of these needs the host to wait.

#if defined(MOE_GATE)
// One workgroup per row. Scores as the CPU oracle computes them (softmax: the max, exp(x − max),
// a sum in expert order, a division; sigmoid: 1 / (1 + exp(−x))). The top-k is a rank: each
// expert counts the experts that beat it (a larger score, or an equal one at a lower index, the
// oracle's tie rule), and the ones ranked below k are the chosen, in that order, in one pass and
// without k rounds of reductions. The weights are the chosen scores over their sum taken in
// selection order (clamped below at min_sum) when `normalize`, times `scale`.
#define MAX_EXPERTS 256
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer L { float logits[]; };
layout(std430, set = 0, binding = 1) writeonly buffer I { float ids[]; };
layout(std430, set = 0, binding = 2) writeonly buffer W { float weights[]; };
// DeepSeek-V3's selection bias (exp_probs_b; the logits again when has_bias is 0).
layout(std430, set = 0, binding = 3) readonly buffer B { float bias[]; };
layout(push_constant) uniform Push {
    uint experts;
    uint k;
    uint sigmoid_gating;
    uint normalize;
    float min_sum;
    float scale;
    uint has_bias;
    uint groups;        // > 1: group-limited selection (ExpertGating.eligible)
    uint groups_used;
} p;

shared float scores[MAX_EXPERTS];
shared float selection[MAX_EXPERTS];
shared uint eligible[MAX_EXPERTS];
shared uint chosen[MAX_EXPERTS];
shared float red[64];
shared float divisor;

void main() {
    uint t = gl_LocalInvocationID.x, r = gl_WorkGroupID.x, n = p.experts;
    uint base = r * n;
    if (p.sigmoid_gating != 0u) {
        for (uint e = t; e < n; e += 64u) scores[e] = 1.0 / (1.0 + exp(-logits[base + e]));
    } else {
        float m = -3.402823466e38;
        for (uint e = t; e < n; e += 64u) m = max(m, logits[base + e]);
        red[t] = m;
        barrier();
        for (uint s = 32u; s > 0u; s >>= 1) {
            if (t < s) red[t] = max(red[t], red[t + s]);
            barrier();
        }
        m = red[0];
        for (uint e = t; e < n; e += 64u) scores[e] = exp(logits[base + e] - m);
        barrier();
        if (t == 0u) {
            precise float total = 0.0;
            for (uint e = 0u; e < n; e++) total += scores[e];
            divisor = total;
        }
        barrier();
        float total = divisor;
        for (uint e = t; e < n; e += 64u) scores[e] = scores[e] / total;
    }
    barrier();
    // The top-k ranks s = p + bias among the eligible experts; the weights stay p.
    for (uint e = t; e < n; e += 64u) {
        selection[e] = p.has_bias != 0u ? scores[e] + bias[e] : scores[e];
        eligible[e] = 1u;
    }
    barrier();
    if (t == 0u && p.groups > 1u && p.groups_used < p.groups) {
        // Groups of n / groups consecutive experts, scored by their two best s; the best
        // groups_used stay (the lower group first on ties), the others' experts leave.
        uint size = n / p.groups;
        float group_scores[MAX_EXPERTS / 2];
        uint kept[MAX_EXPERTS / 2];
        for (uint g = 0u; g < p.groups; g++) {
            float first = -1.0 / 0.0, second = -1.0 / 0.0;
            for (uint e = g * size; e < (g + 1u) * size; e++) {
                float v = selection[e];
                if (v > first) { second = first; first = v; } else if (v > second) { second = v; }
            }
            group_scores[g] = first + second;
            kept[g] = 0u;
        }
        for (uint j = 0u; j < p.groups_used; j++) {
            int best = -1;
            for (uint g = 0u; g < p.groups; g++) {
                if (kept[g] == 0u && (best < 0 || group_scores[g] > group_scores[uint(best)])) best = int(g);
            }
            kept[uint(best)] = 1u;
        }
        for (uint e = 0u; e < n; e++) eligible[e] = kept[e / size];
    }
    barrier();
    for (uint e = t; e < n; e += 64u) {
        if (eligible[e] == 0u) continue;
        float v = selection[e];
        uint rank = 0u;
        for (uint o = 0u; o < n; o++) {
            float w = selection[o];
            if (eligible[o] != 0u && (w > v || (w == v && o < e))) rank++;
        }
        if (rank < p.k) chosen[rank] = e;
    }
    barrier();
    if (t == 0u) {
        float d = 1.0;
        if (p.normalize != 0u) {
            precise float sum = 0.0;
            for (uint j = 0u; j < p.k; j++) sum += scores[chosen[j]];
            d = max(sum, p.min_sum);
        }
        divisor = d;
    }
    barrier();
    for (uint j = t; j < p.k; j += 64u) {
        uint e = chosen[j];
        ids[r * p.k + j] = float(e);
        weights[r * p.k + j] = (scores[e] / divisor) * p.scale;
    }
}

#elif defined(GATHER) || defined(SCATTER_ADD)
// Workgroups (columns / 64, row groups). Gather: one value per invocation. Scatter-add: row
// group g adds rows g, g + stride, …; stride = count when the indices are distinct (every row
// at once, as the engine always passes an expert's tokens), 1 when some repeat (each column then
// adds its rows one after another in order of i, so the sums round as the oracle's do).
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer S { float source[]; };
layout(std430, set = 0, binding = 1) readonly buffer X { uint indices[]; };
#if defined(GATHER)
layout(std430, set = 0, binding = 2) writeonly buffer D { float destination[]; };
#else
layout(std430, set = 0, binding = 2) buffer D { float destination[]; };
layout(std430, set = 0, binding = 3) readonly buffer F { float factors[]; };
#endif
layout(push_constant) uniform Push {
    uint width;
    uint count;
    uint stride;
} p;

void main() {
    uint c = gl_GlobalInvocationID.x;
    if (c >= p.width) return;
#if defined(GATHER)
    uint i = gl_WorkGroupID.y;
    destination[i * p.width + c] = source[indices[i] * p.width + c];
#else
    for (uint i = gl_WorkGroupID.y; i < p.count; i += p.stride) {
        // `precise`: a product then a sum, as the CPU rounds them (no fused multiply-add).
        precise float product = factors[i] * source[i * p.width + c];
        uint at = indices[i] * p.width + c;
        precise float sum = destination[at] + product;
        destination[at] = sum;
    }
#endif
}

#else
#error "define MOE_GATE, GATHER or SCATTER_ADD"
#endif
