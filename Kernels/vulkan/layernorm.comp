#version 450
// ggml_norm, then · g + b (gpt2's LayerNorm): y[r] = (x[r] − mean) / sqrt(var + eps) · g + b, the
// variance being the mean of the centred squares. One workgroup per row; y may alias x.
layout(local_size_x = 128) in;
layout(std430, set = 0, binding = 0) readonly buffer G { uint g[]; };   // f32 weight bytes
layout(std430, set = 0, binding = 1) readonly buffer Bias { uint b[]; }; // f32 bias bytes (g again when has_bias is 0)
layout(std430, set = 0, binding = 2) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 3) writeonly buffer Y { float y[]; };
layout(push_constant) uniform Push { uint width; float eps; uint has_bias; } p;

shared float sums[128];

float row_sum(float s) {
    uint t = gl_LocalInvocationID.x;
    sums[t] = s;
    barrier();
    for (uint k = 64u; k > 0u; k >>= 1) {
        if (t < k) sums[t] += sums[t + k];
        barrier();
    }
    float total = sums[0];
    barrier();
    return total;
}

void main() {
    uint t = gl_LocalInvocationID.x;
    uint base = gl_WorkGroupID.x * p.width;
    float s = 0.0;
    for (uint i = t; i < p.width; i += 128u) s += x[base + i];
    float mean = row_sum(s) / float(p.width);
    float q = 0.0;
    for (uint i = t; i < p.width; i += 128u) {
        float v = x[base + i] - mean;
        q += v * v;
    }
    float scale = 1.0 / sqrt(row_sum(q) / float(p.width) + p.eps);
    for (uint i = t; i < p.width; i += 128u) {
        float v = (x[base + i] - mean) * scale * uintBitsToFloat(g[i]);
        y[base + i] = p.has_bias != 0u ? v + uintBitsToFloat(b[i]) : v;
    }
}
