#version 450
#extension GL_GOOGLE_include_directive : require
// y[t, outOffset + o] = Σ_c W[o, c] · x[t, c], reading W's quantized blocks directly.
// A workgroup owns 4 output rows × TOKENS tokens; 16 lanes per row stride over 8-value chunks
// and their partial sums meet in shared memory. TOKENS = 1 is the decode mat-vec variant,
// TOKENS = 8 the prompt-batch variant (each dequantized chunk is reused for 8 tokens).
// SUBGROUP: one subgroup per output row instead, reduced with subgroupAdd: no shared memory and
// no barrier (barriers are costly on lavapipe, and free a GPU from a 4-step tree). The host
// uses it where subgroup arithmetic is supported in compute and dispatches
// ceil(rows / (64 / subgroupSize)) workgroups; rows past `outputs` are masked.
#ifndef TOKENS
#define TOKENS 8
#endif
#define LANES 16u
#define ROWS_PER_GROUP 4u
layout(local_size_x = 64) in;
#ifdef SUBGROUP
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

#define WEIGHT_BINDING 0
#include "quant.glsl"
#if defined(FLOAT_WEIGHTS)
layout(std430, set = 0, binding = 1) readonly buffer X { float x[]; };
#else
// Block types: columns are a multiple of 32, so every 4-column group of x is vec4-aligned.
layout(std430, set = 0, binding = 1) readonly buffer X { vec4 x4[]; };
#endif
layout(std430, set = 0, binding = 2) writeonly buffer Y { float y[]; };

layout(push_constant) uniform Push {
    uint columns;    // inputs per row
    uint outputs;    // weight rows in this bound chunk
    uint tokens;     // rows of x
    uint rowBytes;   // bytes per weight row
    uint outStride;  // y row width (all weight rows)
    uint outOffset;  // first weight row of this chunk
} p;

#ifndef SUBGROUP
shared float partial[TOKENS * 64];
#endif

vec4 xload(uint base, uint c) {
#if defined(FLOAT_WEIGHTS)
    // the weights past `columns` are zero; clamp the index so the read stays in bounds
    uint last = p.columns - 1u;
    return vec4(x[base + min(c, last)], x[base + min(c + 1u, last)], x[base + min(c + 2u, last)], x[base + min(c + 3u, last)]);
#else
    return x4[(base + c) >> 2];
#endif
}

void main() {
#ifdef SUBGROUP
    uint t = gl_LocalInvocationID.x;
    uint lane = gl_SubgroupInvocationID, lanes = gl_SubgroupSize;
    uint row = gl_WorkGroupID.x * gl_NumSubgroups + gl_SubgroupID;
#else
    uint t = gl_LocalInvocationID.x;
    uint lane = t % LANES, lanes = LANES;
    uint row = gl_WorkGroupID.x * ROWS_PER_GROUP + t / LANES;
#endif
    uint tok0 = gl_WorkGroupID.y * uint(TOKENS);
    uint ntok = min(uint(TOKENS), p.tokens - tok0);

    float acc[TOKENS];
    for (uint k = 0u; k < uint(TOKENS); k++) acc[k] = 0.0;
    if (row < p.outputs) {
        uint rowOff = row * p.rowBytes;
        uint chunks = chunkCount(p.columns);
        for (uint c = lane; c < chunks; c += lanes) {
            vec4 wa, wb;
            uint ca, cb;
            loadChunk(rowOff, c, p.columns, wa, wb, ca, cb);
            for (uint k = 0u; k < uint(TOKENS); k++) {
                if (k < ntok) {
                    uint base = (tok0 + k) * p.columns;
                    acc[k] += dot(wa, xload(base, ca)) + dot(wb, xload(base, cb));
                }
            }
        }
    }
#ifdef SUBGROUP
    for (uint k = 0u; k < uint(TOKENS); k++) {
        float sum = subgroupAdd(acc[k]);
        if (lane == 0u && row < p.outputs && k < ntok) y[(tok0 + k) * p.outStride + p.outOffset + row] = sum;
    }
#else
    for (uint k = 0u; k < uint(TOKENS); k++) partial[k * 64u + t] = acc[k];
    barrier();
    for (uint s = LANES / 2u; s > 0u; s >>= 1) {
        if (lane < s) {
            for (uint k = 0u; k < uint(TOKENS); k++) partial[k * 64u + t] += partial[k * 64u + t + s];
        }
        barrier();
    }
    if (lane == 0u && row < p.outputs) {
        for (uint k = 0u; k < ntok; k++) y[(tok0 + k) * p.outStride + p.outOffset + row] = partial[k * 64u + t];
    }
#endif
}
