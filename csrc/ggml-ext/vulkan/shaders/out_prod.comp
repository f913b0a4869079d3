#version 450
// OUT_PROD: dst[i3,i2,i1,i0] (+)= sum_k a[i3/r3, i2/r2, k, i0] * b[i3, i2, k, i1]
// (ggml ne order; a: [ne0, K, ne2/r2, ne3/r3], b: [ne1, K, ne2, ne3]).
// With acc = 1 dst is the accumulator of ggml_out_prod_acc_inplace and the product is
// added to what it holds. 16 x 16 output tiles, K in steps of 16 through shared memory.

#extension GL_EXT_control_flow_attributes : enable

layout(local_size_x = 16, local_size_y = 16, local_size_z = 1) in;

layout(binding = 0) readonly buffer A { float a[]; };
layout(binding = 1) readonly buffer B { float b[]; };
layout(binding = 2) buffer D { float d[]; };

layout(push_constant) uniform PC {
    uint ne0, ne1, K, ne2;
    uint a_s0, a_s1, a_s2, a_s3;   // strides in elements
    uint b_s0, b_s1, b_s2, b_s3;
    uint d_s1, d_s2, d_s3;
    uint r2, r3;
    uint a_off, b_off, d_off;      // element offsets of misaligned views
    uint acc;
} p;

shared float ta[16][17];
shared float tb[16][17];

void main() {
    const uint tx = gl_LocalInvocationID.x;
    const uint ty = gl_LocalInvocationID.y;
    const uint i0 = gl_WorkGroupID.x * 16 + tx;
    const uint i1 = gl_WorkGroupID.y * 16 + ty;
    const uint i2 = gl_WorkGroupID.z % p.ne2;
    const uint i3 = gl_WorkGroupID.z / p.ne2;

    const uint a_base = p.a_off + (i2 / p.r2) * p.a_s2 + (i3 / p.r3) * p.a_s3;
    const uint b_base = p.b_off + i2 * p.b_s2 + i3 * p.b_s3;
    // the tile loads: thread (tx, ty) reads column tx of the a and b tiles at k = kt + ty
    const uint la0 = gl_WorkGroupID.x * 16 + tx;
    const uint lb1 = gl_WorkGroupID.y * 16 + tx;

    float sum = 0.0;
    for (uint kt = 0; kt < p.K; kt += 16) {
        const uint k = kt + ty;
        ta[ty][tx] = (k < p.K && la0 < p.ne0) ? a[a_base + la0 * p.a_s0 + k * p.a_s1] : 0.0;
        tb[ty][tx] = (k < p.K && lb1 < p.ne1) ? b[b_base + lb1 * p.b_s0 + k * p.b_s1] : 0.0;
        barrier();
        [[unroll]] for (uint kk = 0; kk < 16; ++kk) {
            sum += ta[kk][tx] * tb[kk][ty];
        }
        barrier();
    }
    if (i0 < p.ne0 && i1 < p.ne1) {
        const uint di = p.d_off + i0 + i1 * p.d_s1 + i2 * p.d_s2 + i3 * p.d_s3;
        d[di] = p.acc != 0 ? d[di] + sum : sum;
    }
}
