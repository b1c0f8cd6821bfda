#version 450
// Element-wise ops over `count` values: OP_ADD (out = a + b), OP_SWIGLU (out = silu(a) · b),
// OP_GEGLU (out = gelu_tanh(a) · b), OP_GELU (out = gelu_tanh(a); b unused), OP_ADD_BIAS (out = a + b[i % width]: b is a [1, width]
// bias broadcast over rows), OP_SCALE (out = a · factor; b unused), OP_SOFTCAP
// (out = factor · tanh(a / factor); b unused). out may alias a.
// Grid-stride loop, so any count fits the dispatch limit.
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer A { float a[]; };
layout(std430, set = 0, binding = 1) readonly buffer B { float b[]; };
layout(std430, set = 0, binding = 2) writeonly buffer O { float o[]; };
layout(push_constant) uniform Push {
    uint count;
    uint width;     // OP_ADD_BIAS: bias length
    float factor;   // OP_SCALE: the factor; OP_SOFTCAP: the cap
} p;

void main() {
    uint stride = gl_NumWorkGroups.x * 256u;
    for (uint i = gl_GlobalInvocationID.x; i < p.count; i += stride) {
#if defined(OP_ADD)
        o[i] = a[i] + b[i];
#elif defined(OP_SWIGLU)
        float g = a[i];
        o[i] = g / (1.0 + exp(-g)) * b[i];
#elif defined(OP_GEGLU)
        // ggml's gelu: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). GLSL's tanh overflows to NaN
        // on some drivers for large |u| (exp(2u)/exp(2u)), so it is written as 1 − 2/(e^{2u} + 1).
        float x = a[i];
        float u = 0.7978845608 * (x + 0.044715 * x * x * x);
        float th = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
        o[i] = 0.5 * x * (1.0 + th) * b[i];
#elif defined(OP_GELU)
        // gelu(a) without a gate (gpt2's FFN); tanh written as in OP_GEGLU. b unused.
        float x = a[i];
        float u = 0.7978845608 * (x + 0.044715 * x * x * x);
        float th = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
        o[i] = 0.5 * x * (1.0 + th);
#elif defined(OP_ADD_BIAS)
        o[i] = a[i] + b[i % p.width];
#elif defined(OP_SCALE)
        o[i] = a[i] * p.factor;
#elif defined(OP_SOFTCAP)
        // tanh(u) = sign(u) · (1 − 2/(e^{2|u|} + 1)): e^{2|u|} overflows to +inf for large |u|,
        // which gives exactly ±1, never inf/inf = NaN.
        float x = a[i];
        float u = abs(x) / p.factor;
        o[i] = sign(x) * p.factor * (1.0 - 2.0 / (exp(2.0 * u) + 1.0));
#else
#error "define OP_ADD, OP_SWIGLU, OP_GEGLU, OP_GELU, OP_ADD_BIAS, OP_SCALE or OP_SOFTCAP"
#endif
    }
}
