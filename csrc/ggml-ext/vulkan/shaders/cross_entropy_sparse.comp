#version 450
// CROSS_ENTROPY_LOSS_SPARSE: mean over rows with target >= 0 of
// max + log(sum(exp(x - max))) - x[target], the softmax over the first nc columns. A
// target >= nc makes the loss NaN (as on the CPU). One workgroup: the rows one after the
// other, each reduced by all invocations; the loss is a scalar, so no second pass.
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) readonly buffer T { int t[]; };
layout(binding = 2) writeonly buffer D { float d[]; };

#include "ce_head.glsl"

void main() {
    const uint tid = gl_LocalInvocationID.x;
    float loss = 0.0;  // kept by invocation 0
    uint count = 0;
    for (uint r = 0; r < p.nrows; ++r) {
        const int target = t[p.off_t + r];
        if (target < 0) continue;  // uniform: every invocation reads the same target
        count++;
        if (target >= int(p.nc)) {
            loss += uintBitsToFloat(0x7FC00000u);
            continue;
        }
        const uint base = row_base(r);
        const float mx = row_max(base);
        const float s = row_sum_exp(base, mx);
        loss += mx + log(s) - x[base + uint(target)];
    }
    if (tid == 0) {
        d[p.off_d] = count > 0 ? loss / float(count) : 0.0;
    }
}
