#version 450
// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * g. One workgroup per row; y may alias x.
layout(local_size_x = 128) in;
layout(std430, set = 0, binding = 0) readonly buffer G { uint g[]; };   // f32 weight bytes
layout(std430, set = 0, binding = 1) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 2) writeonly buffer Y { float y[]; };
layout(push_constant) uniform Push { uint width; float eps; } p;

shared float sums[128];

void main() {
    uint t = gl_LocalInvocationID.x;
    uint base = gl_WorkGroupID.x * p.width;
    float s = 0.0;
    for (uint i = t; i < p.width; i += 128u) s += x[base + i] * x[base + i];
    sums[t] = s;
    barrier();
    for (uint k = 64u; k > 0u; k >>= 1) {
        if (t < k) sums[t] += sums[t + k];
        barrier();
    }
    float scale = inversesqrt(sums[0] / float(p.width) + p.eps);
    for (uint i = t; i < p.width; i += 128u) y[base + i] = x[base + i] * scale * uintBitsToFloat(g[i]);
}
