// Mixture-of-experts ops: routing (moe_gate), and the row gather / weighted scatter-add that
// move an expert's tokens into one batch and its outputs back into the residual stream.

#define MOE_MAX_EXPERTS 256

// One work-group per row of router logits; local size a power of two, at most MOE_MAX_EXPERTS.
// Scores are computed as the CPU oracle does (softmax: max, exp(x - max), a sum in expert order,
// then a division; sigmoid: 1 / (1 + exp(-x))), so the top-k picks the same experts. Each of the
// k passes is a work-group argmax over the experts not yet taken: the largest score, the lower
// index on ties. The weights are the chosen scores, over their sum (clamped below at min_sum)
// when `normalize`, times `scale`. ids hold the expert index as a float.
//
// Every barrier is reached on the same path by all work-items: none sits inside the branch on
// `sigmoid_gating`, although that branch is uniform and so legal OpenCL. PoCL (3.1 at least)
// miscompiles a barrier inside an if/else when a work-item-dependent loop guard (here
// `e = t; e < experts`, false for the work-items past the last expert when the local size
// exceeds the experts) joins the if/else's end: its barrier tail replication makes one copy of
// the rest of the kernel per incoming edge, so which copy runs depends on t < experts, and its
// work-item loops follow the first work-item's choice and assume it for all the others. The
// work-items with no expert then ran every "e = t" loop body once, with e = t: each pass of the
// top-k offered expert t with whatever scores[t] a previous kernel left in local memory, which
// wins once local memory is dirty (ids 6 and 7 for top-6 of 6 after a model had run). Upstream
// pocl/pocl#2269 (one replicated tail per parallel region) describes the same failure; the
// PoCL 3.1 here predates it.
//
// Selection (DeepSeek-V3): the top-k compares s = p + bias[e] when `has_bias` (p otherwise), and
// with groups > 1 only the experts of the `groups_used` groups with the largest sums of their two
// best s are eligible (work-item 0 marks the others taken, as ExpertGating.eligible does); the
// weights are still p.
kernel void moe_gate(global const float* logits, int experts, int k, int sigmoid_gating, int normalize,
                     float min_sum, float scale, global float* ids, global float* weights,
                     global const float* bias, int has_bias, int groups, int groups_used) {
    local float scores[MOE_MAX_EXPERTS];
    local float selection[MOE_MAX_EXPERTS];
    local uchar taken[MOE_MAX_EXPERTS];
    local float best_values[MOE_MAX_EXPERTS];
    local int best_indices[MOE_MAX_EXPERTS];
    local float red[MOE_MAX_EXPERTS];
    local float total;
    int r = get_group_id(0), t = get_local_id(0), n = get_local_size(0);
    global const float* row = logits + (size_t)r * experts;

    // The row maximum is reduced for both gatings (sigmoid does not use it) so that the
    // reduction's barriers are unconditional.
    float m = -INFINITY;
    for (int e = t; e < experts; e += n) m = fmax(m, row[e]);
    m = group_max(red, m);
    for (int e = t; e < experts; e += n) {
        scores[e] = sigmoid_gating ? 1.0f / (1.0f + exp(-row[e])) : exp(row[e] - m);
        taken[e] = 0;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (t == 0 && !sigmoid_gating) {
        float sum = 0.0f;
        for (int e = 0; e < experts; e++) sum += scores[e];
        total = sum;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (!sigmoid_gating) {
        float divisor = total;
        for (int e = t; e < experts; e += n) scores[e] /= divisor;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int e = t; e < experts; e += n) selection[e] = has_bias ? scores[e] + bias[e] : scores[e];
    barrier(CLK_LOCAL_MEM_FENCE);
    if (t == 0 && groups > 1 && groups_used < groups) {
        int size = experts / groups;
        float group_scores[MOE_MAX_EXPERTS / 2];
        uchar kept[MOE_MAX_EXPERTS / 2];
        for (int g = 0; g < groups; g++) {
            float first = -INFINITY, second = -INFINITY;
            for (int e = g * size; e < (g + 1) * size; e++) {
                float v = selection[e];
                if (v > first) { second = first; first = v; } else if (v > second) { second = v; }
            }
            group_scores[g] = first + second;
            kept[g] = 0;
        }
        for (int j = 0; j < groups_used; j++) {
            int best = -1;
            for (int g = 0; g < groups; g++) {
                if (!kept[g] && (best < 0 || group_scores[g] > group_scores[best])) best = g;
            }
            kept[best] = 1;
        }
        for (int e = 0; e < experts; e++) taken[e] = kept[e / size] ? 0 : 1;
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    global float* row_ids = ids + (size_t)r * k;
    global float* row_weights = weights + (size_t)r * k;
    for (int j = 0; j < k; j++) {
        float best = 0.0f;
        int index = -1;
        for (int e = t; e < experts; e += n) {
            if (!taken[e] && (index < 0 || selection[e] > best)) { best = selection[e]; index = e; }
        }
        best_values[t] = best;
        best_indices[t] = index;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int s = n >> 1; s > 0; s >>= 1) {
            if (t < s) {
                float ov = best_values[t + s];
                int oi = best_indices[t + s], mine = best_indices[t];
                if (oi >= 0 && (mine < 0 || ov > best_values[t] || (ov == best_values[t] && oi < mine))) {
                    best_values[t] = ov;
                    best_indices[t] = oi;
                }
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        if (t == 0) {
            int chosen = best_indices[0];
            taken[chosen] = 1;
            row_ids[j] = (float)chosen;
            row_weights[j] = scores[chosen];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    // Sum in selection order (as the oracle does); work-item 0 wrote the raw scores just above.
    if (t == 0) {
        float divisor = 1.0f;
        if (normalize) {
            float sum = 0.0f;
            for (int j = 0; j < k; j++) sum += row_weights[j];
            divisor = fmax(sum, min_sum);
        }
        for (int j = 0; j < k; j++) row_weights[j] = row_weights[j] / divisor * scale;
    }
}

// destination row i = source row indices[i]; global size (width rounded up, rows).
kernel void gather_rows(global const float* source, global const int* indices, global float* destination, int width) {
    int c = get_global_id(0), i = get_global_id(1);
    if (c >= width) return;
    destination[(size_t)i * width + c] = source[(size_t)indices[i] * width + c];
}

// destination row table[i] += factor_i * source row i. `table` holds `count` row indices, then
// the `count` factors' bit patterns. Work-item (c, g) handles rows g, g + stride, ... in order:
// stride = count when the indices are distinct (every row at once), 1 when some repeat (each
// column then adds its rows one after another, in order of i, as the oracle does).
kernel void scatter_add_rows(global const float* source, global const int* table, global float* destination,
                             int width, int count, int stride) {
    int c = get_global_id(0), g = get_global_id(1);
    if (c >= width) return;
    for (int i = g; i < count; i += stride) {
        float product = as_float(table[count + i]) * source[(size_t)i * width + c];
        destination[(size_t)table[i] * width + c] += product;
    }
}
