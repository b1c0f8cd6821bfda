#version 450
#extension GL_GOOGLE_include_directive : require
// out[r, j] = table[tokens[r], j], dequantized. The table may be split into row chunks (when it
// exceeds maxStorageBufferRange); a dispatch covers rows firstRow ..< firstRow + rowCount and
// writes only the tokens that fall inside.
layout(local_size_x = 64) in;

#define WEIGHT_BINDING 0
#include "quant.glsl"
layout(std430, set = 0, binding = 1) readonly buffer Tokens { uint tokens[]; };
layout(std430, set = 0, binding = 2) writeonly buffer Out { float outv[]; };

layout(push_constant) uniform Push {
    uint columns;
    uint rowBytes;
    uint firstRow;
    uint rowCount;
} p;

void main() {
    uint j = gl_GlobalInvocationID.x;
    uint r = gl_WorkGroupID.y;
    uint token = tokens[r];
    if (j >= p.columns || token < p.firstRow || token >= p.firstRow + p.rowCount) return;
    outv[r * p.columns + j] = dequantize((token - p.firstRow) * p.rowBytes, j);
}
