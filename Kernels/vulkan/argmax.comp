#version 450
// The index of the largest value of each row, the first one on ties. One workgroup per row.
layout(local_size_x = 128) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) writeonly buffer R { uint result[]; };
layout(push_constant) uniform Push { uint width; } p;

shared float bestValue[128];
shared uint bestIndex[128];

void main() {
    uint t = gl_LocalInvocationID.x;
    uint base = gl_WorkGroupID.x * p.width;
    float v = -3.402823466e38;
    uint idx = 0xFFFFFFFFu;
    for (uint i = t; i < p.width; i += 128u) {
        float e = x[base + i];
        if (idx == 0xFFFFFFFFu || e > v) { v = e; idx = i; }   // strided: indices rise, so ties keep the first
    }
    bestValue[t] = v;
    bestIndex[t] = idx;
    barrier();
    for (uint k = 64u; k > 0u; k >>= 1) {
        if (t < k) {
            float ov = bestValue[t + k];
            uint oi = bestIndex[t + k];
            if (oi != 0xFFFFFFFFu && (bestIndex[t] == 0xFFFFFFFFu || ov > bestValue[t] || (ov == bestValue[t] && oi < bestIndex[t]))) {
                bestValue[t] = ov;
                bestIndex[t] = oi;
            }
        }
        barrier();
    }
    if (t == 0u) result[gl_WorkGroupID.x] = bestIndex[0];
}
