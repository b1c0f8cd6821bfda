#version 450
// destination[to + r·to_row + g·to_group + c] = source[from + r·from_row + g·from_group + c]:
// a block of columns between strided rows (MLA's head splits and joins). Workgroups
// (width / 64, groups, rows).
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer S { float source[]; };
layout(std430, set = 0, binding = 1) writeonly buffer D { float destination[]; };
layout(push_constant) uniform Push {
    uint from; uint from_row; uint from_group;
    uint to; uint to_row; uint to_group;
    uint width;
} p;

void main() {
    uint c = gl_GlobalInvocationID.x, g = gl_WorkGroupID.y, r = gl_WorkGroupID.z;
    if (c >= p.width) return;
    destination[p.to + r * p.to_row + g * p.to_group + c] = source[p.from + r * p.from_row + g * p.from_group + c];
}
