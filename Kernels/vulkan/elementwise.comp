#version 450
// Element-wise ops over `count` values, one source: OP_ADD (out = a + b) or OP_SWIGLU
// (out = silu(a) · b). out may alias a. Grid-stride loop, so any count fits the dispatch limit.
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer A { float a[]; };
layout(std430, set = 0, binding = 1) readonly buffer B { float b[]; };
layout(std430, set = 0, binding = 2) writeonly buffer O { float o[]; };
layout(push_constant) uniform Push { uint count; } p;

void main() {
    uint stride = gl_NumWorkGroups.x * 256u;
    for (uint i = gl_GlobalInvocationID.x; i < p.count; i += stride) {
#if defined(OP_ADD)
        o[i] = a[i] + b[i];
#elif defined(OP_SWIGLU)
        float g = a[i];
        o[i] = g / (1.0 + exp(-g)) * b[i];
#else
#error "define OP_ADD or OP_SWIGLU"
#endif
    }
}
