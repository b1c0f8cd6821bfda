#version 450
// In-place softmax over each row of `width` values; one workgroup per row.
layout(local_size_x = 128) in;
layout(std430, set = 0, binding = 0) buffer X { float x[]; };
layout(push_constant) uniform Push { uint width; } p;

shared float red[128];

void main() {
    uint t = gl_LocalInvocationID.x;
    uint base = gl_WorkGroupID.x * p.width;
    float m = -3.402823466e38;
    for (uint i = t; i < p.width; i += 128u) m = max(m, x[base + i]);
    red[t] = m;
    barrier();
    for (uint k = 64u; k > 0u; k >>= 1) {
        if (t < k) red[t] = max(red[t], red[t + k]);
        barrier();
    }
    m = red[0];
    barrier();
    float s = 0.0;
    for (uint i = t; i < p.width; i += 128u) {
        float e = exp(x[base + i] - m);
        x[base + i] = e;
        s += e;
    }
    red[t] = s;
    barrier();
    for (uint k = 64u; k > 0u; k >>= 1) {
        if (t < k) red[t] += red[t + k];
        barrier();
    }
    float inv = 1.0 / red[0];
    for (uint i = t; i < p.width; i += 128u) x[base + i] *= inv;
}
