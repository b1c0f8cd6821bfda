#version 450
// Rotates pair i of every head of row r by θ = (start + r · step) · invFreq[i], in place
// (step 1: consecutive positions, step 0: every row at `start`, as beams are).
// POSITIONS (rope_positions): θ = positions[start + r] · invFreq[i], from binding 2.
// NEOX pairs (i, i + pairs); otherwise (2i, 2i + 1). invFreq folds base, position scale and
// frequency factors, computed once on the host in double precision.
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer F { float invFreq[]; };
#ifdef POSITIONS
layout(std430, set = 0, binding = 2) readonly buffer P { uint positions[]; };
#endif
layout(push_constant) uniform Push { uint rows; uint heads; uint headDim; uint start; uint pairs; uint neox; uint step; } p;

void main() {
    uint id = gl_GlobalInvocationID.x;
    if (id >= p.rows * p.heads * p.pairs) return;
    uint i = id % p.pairs;
    uint rh = id / p.pairs;           // r * heads + h
    uint r = rh / p.heads;
#ifdef POSITIONS
    float theta = float(positions[p.start + r]) * invFreq[i];
#else
    float theta = float(p.start + r * p.step) * invFreq[i];
#endif
    float c = cos(theta), s = sin(theta);
    uint head = rh * p.headDim;
    uint a = p.neox != 0u ? head + i : head + 2u * i;
    uint b = p.neox != 0u ? head + i + p.pairs : a + 1u;
    float x0 = x[a], x1 = x[b];
    x[a] = x0 * c - x1 * s;
    x[b] = x0 * s + x1 * c;
}
