#version 450
// CROSS_ENTROPY_LOSS_SPARSE_BACK: dx = grad/n * (softmax(x) - onehot(target)) over the
// first nc columns of rows with target >= 0 (n = their count); zero for ignored rows and
// for the padding columns past nc; NaN for a target >= nc. Every element is read and then
// written by the same invocation after the row's reductions, so dx may be x's memory
// (the in-place form). One workgroup per row, rows strided over the workgroups.
layout(binding = 0) readonly buffer G { float g[]; };
layout(binding = 1) readonly buffer X { float x[]; };
layout(binding = 2) readonly buffer T { int t[]; };
layout(binding = 3) writeonly buffer D { float dx[]; };

#include "ce_head.glsl"

shared uint cnt[WG];

void main() {
    const uint tid = gl_LocalInvocationID.x;
    uint c = 0;
    for (uint r = tid; r < p.nrows; r += WG) c += t[p.off_t + r] >= 0 ? 1u : 0u;
    cnt[tid] = c;
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (tid < s) cnt[tid] += cnt[tid + s];
        barrier();
    }
    const uint n = cnt[0];
    const float scale = n > 0 ? g[p.off_g] / float(n) : 0.0;

    for (uint r = gl_WorkGroupID.x; r < p.nrows; r += gl_NumWorkGroups.x) {
        const int target = t[p.off_t + r];
        const uint base = row_base(r);
        const uint dbase = p.off_d + r * p.ne0;
        if (target < 0 || target >= int(p.nc)) {
            const float v = target < 0 ? 0.0 : uintBitsToFloat(0x7FC00000u);
            for (uint i = tid; i < p.ne0; i += WG) dx[dbase + i] = i < p.nc ? v : 0.0;
            continue;
        }
        const float mx = row_max(base);
        const float s = row_sum_exp(base, mx);
        const float f = scale / s;
        for (uint i = tid; i < p.ne0; i += WG) {
            float v = 0.0;
            if (i < p.nc) {
                v = exp(x[base + i] - mx) * f - (i == uint(target) ? scale : 0.0);
            }
            dx[dbase + i] = v;
        }
        barrier();  // the next row's reductions reuse the shared memory
    }
}
