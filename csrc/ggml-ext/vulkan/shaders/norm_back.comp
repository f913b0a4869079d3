#version 450
// NORM_BACK: dx = rstd * (dy - mean(dy) - xc * mean(dy * xc) * rstd^2) per row, with
// xc = x - mean(x), rstd = 1/sqrt(mean(xc^2) + eps): the gradient of ggml_norm. One
// workgroup per row (rows strided over the workgroups); two passes over x (mean, then the
// centred sums) as the CPU kernel, in f32.
#include "rows_head.glsl"

layout(binding = 0) readonly buffer DY { float dy[]; };
layout(binding = 1) readonly buffer X { float x[]; };
layout(binding = 2) writeonly buffer DX { float dx[]; };

shared float red0[WG];
shared float red1[WG];
shared float red2[WG];

void reduce3() {
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (gl_LocalInvocationID.x < s) {
            red0[gl_LocalInvocationID.x] += red0[gl_LocalInvocationID.x + s];
            red1[gl_LocalInvocationID.x] += red1[gl_LocalInvocationID.x + s];
            red2[gl_LocalInvocationID.x] += red2[gl_LocalInvocationID.x + s];
        }
        barrier();
    }
}

void main() {
    const uint tid = gl_LocalInvocationID.x;
    const uint nrows = p.ne1 * p.ne2 * p.ne3;
    for (uint r = gl_WorkGroupID.x; r < nrows; r += gl_NumWorkGroups.x) {
        const uvec3 base = row_bases(r);
        float sx = 0.0;
        for (uint i = tid; i < p.ne0; i += WG) sx += x[base.y + i];
        red0[tid] = sx; red1[tid] = 0.0; red2[tid] = 0.0;
        barrier();
        reduce3();
        const float mean = red0[0] / float(p.ne0);
        barrier();
        float sxc2 = 0.0, sdy = 0.0, sdyxc = 0.0;
        for (uint i = tid; i < p.ne0; i += WG) {
            const float xc = x[base.y + i] - mean;
            const float g = dy[base.x + i];
            sxc2 += xc * xc;
            sdy += g;
            sdyxc += g * xc;
        }
        red0[tid] = sxc2; red1[tid] = sdy; red2[tid] = sdyxc;
        barrier();
        reduce3();
        const float rstd = inversesqrt(red0[0] / float(p.ne0) + p.f0);
        const float mean_dy = red1[0] / float(p.ne0);
        const float scale_xc = red2[0] / float(p.ne0) * rstd * rstd;
        barrier();
        for (uint i = tid; i < p.ne0; i += WG) {
            const float xc = x[base.y + i] - mean;
            dx[base.z + i] = rstd * (dy[base.x + i] - mean_dy - xc * scale_xc);
        }
    }
}
