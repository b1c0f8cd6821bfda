// Shared helpers. OpenCL C 1.2, no extensions: halves are read with vload_half (core),
// bfloat16 by shifting its bits into the top of a float.
// Compile-time defines from the host: TILE (tiled matmul edge), chosen from the device limits.

#ifndef TILE
#define TILE 16
#endif
#define QK 32

inline float hsum16(float16 v) {
    float8 a = v.lo + v.hi;
    float4 b = a.lo + a.hi;
    return (b.x + b.y) + (b.z + b.w);
}

inline float load_half(global const uchar* p) {
    return vload_half(0, (global const half*)p);
}

// Work-group reductions over a power-of-two local size (dimension 0). Every work-item
// receives the result. `red` holds get_local_size(0) floats.
inline float group_sum(local float* red, float v) {
    int t = get_local_id(0), n = get_local_size(0);
    red[t] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = n >> 1; s > 0; s >>= 1) {
        if (t < s) red[t] += red[t + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float result = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return result;
}

inline float group_max(local float* red, float v) {
    int t = get_local_id(0), n = get_local_size(0);
    red[t] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = n >> 1; s > 0; s >>= 1) {
        if (t < s) red[t] = fmax(red[t], red[t + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float result = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return result;
}

// tanh that cannot overflow: tanh(a) = expm1(2a) / (expm1(2a) + 2) for a = |x| clamped to 10
// (tanh(10) rounds to 1.0f), so no inf / inf, and expm1 keeps small |x| accurate.
inline float safe_tanh(float x) {
    float e = expm1(2.0f * fmin(fabs(x), 10.0f));
    return copysign(e / (e + 2.0f), x);
}

// Logit soft-capping (Gemma 2): cap * tanh(s / cap) when cap > 0, s unchanged otherwise.
inline float soft_cap(float s, float cap) {
    return cap > 0.0f ? cap * safe_tanh(s / cap) : s;
}
