// Shared by the ATTN_CAUSAL shaders: push constants, workgroup shape and head addressing.
// q, dst (and the backward's dO): [hs, T, nh, B]; k, v: [hs, T, nkv, B] with nh a multiple
// of nkv, query head h reading K/V head h / (nh / nkv). Rows contiguous; strides (x1, x2,
// x3) and the offsets of misaligned views in elements.
layout(push_constant) uniform PC {
    uint hs, T, nh, nkv;
    uint q1, q2, q3;
    uint k1, k2, k3;
    uint v1, v2, v3;
    uint g1, g2, g3;
    uint d1, d2, d3;
    uint off_q, off_k, off_v, off_g, off_d;
    float scale;
    uint pass;  // backward only: 0 row statistics, 1 dk and dv, 2 dq
} p;

// One workgroup per row (a query row, or a key row in the backward's pass 1); its WG
// invocations split the keys (queries) of a tile, then the head's dims, at most
// DIMS_PER_INVOCATION each (supports_op: hs <= WG * DIMS_PER_INVOCATION).
#define WG 64
#define DIMS_PER_INVOCATION 4
layout(local_size_x = WG, local_size_y = 1, local_size_z = 1) in;

#define NEG_INF uintBitsToFloat(0xFF800000u)

// dot product of two rows of hs floats
#define ROW_DOT(A, a0, B, b0, out) { out = 0.0; for (uint c_ = 0; c_ < p.hs; ++c_) out += A[a0 + c_] * B[b0 + c_]; }
