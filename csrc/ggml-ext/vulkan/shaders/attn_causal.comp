#version 450
// ATTN_CAUSAL forward: o_i = sum_{j <= i} softmax_j(scale * q_i . k_j) v_j for each query
// row i. Workgroup (i, h, b); the keys 0..i pass in tiles of WG, one key per invocation,
// with a running max and sum (the softmax rescaled tile by tile), so nothing of size T is
// stored.
layout(binding = 0) readonly buffer Q { float q[]; };
layout(binding = 1) readonly buffer K { float k[]; };
layout(binding = 2) readonly buffer V { float v[]; };
layout(binding = 3) writeonly buffer D { float dst[]; };

#include "attn_head.glsl"

shared float tile[WG];  // the tile's scores, then its unnormalized probabilities

void main() {
    const uint i = gl_WorkGroupID.x, h = gl_WorkGroupID.y, b = gl_WorkGroupID.z;
    const uint tid = gl_LocalInvocationID.x;
    const uint hk = h / (p.nh / p.nkv);
    const uint qrow = p.off_q + i * p.q1 + h * p.q2 + b * p.q3;
    const uint kbase = p.off_k + hk * p.k2 + b * p.k3;
    const uint vbase = p.off_v + hk * p.v2 + b * p.v3;

    float m = NEG_INF;  // max score so far
    float l = 0.0;      // sum of exp(score - m) so far
    float acc[DIMS_PER_INVOCATION];
    for (uint r = 0; r < DIMS_PER_INVOCATION; ++r) acc[r] = 0.0;

    for (uint j0 = 0; j0 <= i; j0 += WG) {
        const uint j = j0 + tid;
        float s = NEG_INF;
        if (j <= i) {
            ROW_DOT(q, qrow, k, kbase + j * p.k1, s);
            s *= p.scale;
        }
        tile[tid] = s;
        barrier();
        float mt = m;
        for (uint t = 0; t < WG; ++t) mt = max(mt, tile[t]);  // finite: key j0 <= i is in the tile
        barrier();
        tile[tid] = j <= i ? exp(s - mt) : 0.0;
        barrier();
        const float corr = j0 == 0 ? 0.0 : exp(m - mt);  // rescales what earlier tiles summed
        const uint n = min(WG, i + 1 - j0);
        float lt = 0.0;
        for (uint t = 0; t < n; ++t) lt += tile[t];
        l = l * corr + lt;
        for (uint r = 0; r < DIMS_PER_INVOCATION; ++r) {
            const uint c = tid + r * WG;
            if (c < p.hs) {
                float a = acc[r] * corr;
                for (uint t = 0; t < n; ++t) a += tile[t] * v[vbase + (j0 + t) * p.v1 + c];
                acc[r] = a;
            }
        }
        m = mt;
        barrier();  // the next tile overwrites tile[]
    }
    const uint orow = p.off_d + i * p.d1 + h * p.d2 + b * p.d3;
    for (uint r = 0; r < DIMS_PER_INVOCATION; ++r) {
        const uint c = tid + r * WG;
        if (c < p.hs) dst[orow + c] = acc[r] / l;
    }
}
