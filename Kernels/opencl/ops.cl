// Row-wise and element-wise ops. Row kernels: one work-group per row, local size a power of two.

// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * g. In place is safe: each work-item rewrites only
// the elements it read.
kernel void rms_norm(global const float* x, global const float* g, global float* y, int width, float eps,
                     local float* red) {
    int r = get_group_id(0), t = get_local_id(0), n = get_local_size(0);
    global const float* xr = x + (size_t)r * width;
    float sum = 0.0f;
    for (int i = t; i < width; i += n) sum += xr[i] * xr[i];
    float total = group_sum(red, sum);
    float scale = 1.0f / sqrt(total / (float)width + eps);
    global float* yr = y + (size_t)r * width;
    for (int i = t; i < width; i += n) yr[i] = xr[i] * scale * g[i];
}

// In-place softmax over each row.
kernel void softmax_rows(global float* x, int width, local float* red) {
    int r = get_group_id(0), t = get_local_id(0), n = get_local_size(0);
    global float* xr = x + (size_t)r * width;
    float m = -INFINITY;
    for (int i = t; i < width; i += n) m = fmax(m, xr[i]);
    m = group_max(red, m);
    float sum = 0.0f;
    for (int i = t; i < width; i += n) {
        float e = exp(xr[i] - m);
        xr[i] = e;
        sum += e;
    }
    float inverse = 1.0f / group_sum(red, sum);
    for (int i = t; i < width; i += n) xr[i] *= inverse;
}

// The index of each row's largest value, the first on ties. Only these ids go back to the host.
kernel void argmax_rows(global const float* x, int width, global int* result, local float* values, local int* indices) {
    int r = get_group_id(0), t = get_local_id(0), n = get_local_size(0);
    global const float* xr = x + (size_t)r * width;
    float best = -INFINITY;
    int index = -1;
    for (int i = t; i < width; i += n) {
        if (index < 0 || xr[i] > best) { best = xr[i]; index = i; }
    }
    values[t] = best;
    indices[t] = index;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = n >> 1; s > 0; s >>= 1) {
        if (t < s) {
            float ov = values[t + s];
            int oi = indices[t + s];
            int mine = indices[t];
            if (oi >= 0 && (mine < 0 || ov > values[t] || (ov == values[t] && oi < mine))) {
                values[t] = ov;
                indices[t] = oi;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (t == 0) result[r] = indices[0];
}

// Rotates pairs of each head in place; global size (pairs, heads, rows). `freq[i]` is the
// angle per position of pair i (base^(-2i/dims) * positionScale / factor[i], from the host).
// style 0: adjacent pairs (2i, 2i+1); style 1 (neox): halves (i, i + pairs).
inline void rotate(global float* x, global const float* freq, int heads, int headDim, int pairs,
                   int position, int style, int i, int h, int r) {
    float theta = (float)position * freq[i];
    float c = cos(theta), s = sin(theta);
    global float* head = x + ((size_t)r * heads + h) * headDim;
    int a = style == 0 ? 2 * i : i;
    int b = style == 0 ? 2 * i + 1 : i + pairs;
    float x0 = head[a], x1 = head[b];
    head[a] = x0 * c - x1 * s;
    head[b] = x0 * s + x1 * c;
}

kernel void rope(global float* x, global const float* freq, int heads, int headDim, int pairs,
                 int startPosition, int style) {
    int i = get_global_id(0), h = get_global_id(1), r = get_global_id(2);
    if (i < pairs) rotate(x, freq, heads, headDim, pairs, startPosition + r, style, i, h, r);
}

// RoPE with an explicit position per row (beams: rows at unrelated positions).
kernel void rope_positions(global float* x, global const float* freq, int heads, int headDim, int pairs,
                           global const int* positions, int style) {
    int i = get_global_id(0), h = get_global_id(1), r = get_global_id(2);
    if (i < pairs) rotate(x, freq, heads, headDim, pairs, positions[r], style, i, h, r);
}

kernel void swiglu(global const float* gate, global const float* up, global float* y, int count) {
    int i = get_global_id(0);
    if (i >= count) return;
    float g = gate[i];
    y[i] = g / (1.0f + exp(-g)) * up[i];
}

kernel void add(global const float* a, global const float* b, global float* y, int count) {
    int i = get_global_id(0);
    if (i >= count) return;
    y[i] = a[i] + b[i];
}

// buffer[r, i] += bias[i]; global size rows * width.
kernel void add_bias(global float* x, global const float* bias, int width, int count) {
    int i = get_global_id(0);
    if (i >= count) return;
    x[i] += bias[i % width];
}

kernel void scale_values(global float* x, float factor, int count) {
    int i = get_global_id(0);
    if (i >= count) return;
    x[i] *= factor;
}

// x = cap * tanh(x / cap) in place (Gemma 2's final logit soft-capping), cap > 0.
kernel void softcap_values(global float* x, float cap, int count) {
    int i = get_global_id(0);
    if (i >= count) return;
    x[i] = cap * safe_tanh(x[i] / cap);
}

// gelu(gate) * up with GELU's tanh approximation (ggml's gelu): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
kernel void geglu(global const float* gate, global const float* up, global float* y, int count) {
    int i = get_global_id(0);
    if (i >= count) return;
    float x = gate[i];
    y[i] = 0.5f * x * (1.0f + tanh(0.79788456f * (x + 0.044715f * x * x * x))) * up[i];
}

// ggml_norm, then · g + b (gpt2's LayerNorm): the mean, then the variance of the centred values,
// each a work-group sum; one work-group per row. In place is safe (each work-item rewrites
// only what it read). has_bias 0: b is unused.
kernel void layer_norm(global const float* x, global const float* g, global const float* b, int has_bias,
                       global float* y, int width, float eps, local float* red) {
    int r = get_group_id(0), t = get_local_id(0), n = get_local_size(0);
    global const float* xr = x + (size_t)r * width;
    float sum = 0.0f;
    for (int i = t; i < width; i += n) sum += xr[i];
    float mean = group_sum(red, sum) / (float)width;
    float squares = 0.0f;
    for (int i = t; i < width; i += n) {
        float v = xr[i] - mean;
        squares += v * v;
    }
    float scale = 1.0f / sqrt(group_sum(red, squares) / (float)width + eps);
    global float* yr = y + (size_t)r * width;
    for (int i = t; i < width; i += n) {
        float v = (xr[i] - mean) * scale * g[i];
        yr[i] = has_bias ? v + b[i] : v;
    }
}

// gelu(x), tanh form (ggml's gelu), without a gate: gpt2's FFN.
kernel void gelu(global const float* x, global float* y, int count) {
    int i = get_global_id(0);
    if (i >= count) return;
    float v = x[i];
    y[i] = 0.5f * v * (1.0f + tanh(0.79788456f * (v + 0.044715f * v * v * v)));
}

// destination[to + r * to_row + g * to_group + c] = source[from + r * from_row + g * from_group + c];
// global size (width rounded up, groups, rows).
kernel void copy_columns(global const float* source, int from, int from_row, int from_group,
                         global float* destination, int to, int to_row, int to_group, int width) {
    int c = get_global_id(0), g = get_global_id(1), r = get_global_id(2);
    if (c >= width) return;
    destination[(size_t)to + (size_t)r * to_row + (size_t)g * to_group + c] =
        source[(size_t)from + (size_t)r * from_row + (size_t)g * from_group + c];
}
