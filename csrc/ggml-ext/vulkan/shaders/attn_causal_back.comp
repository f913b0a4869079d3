#version 450
// ATTN_CAUSAL_BACK in three passes (dispatches with a barrier between them), with
// P_ij = exp(scale * q_i . k_j - lse_i), dP_ij = dO_i . v_j, D_i = sum_j P_ij dP_ij and
// dS_ij = scale * P_ij (dP_ij - D_i) (see docs/ops/attn_causal.md):
//   pass 0, workgroup (i, h, b): lse_i and D_i, parked in elements 0 and 1 of dq's row i;
//   pass 1, workgroup (j, hk, b): dk_j = sum dS_ij q_i and dv_j = sum P_ij dO_i over the
//           query heads h of K/V head hk's group and their rows i >= j;
//   pass 2, workgroup (i, h, b): reads its lse_i and D_i, then dq_i = sum_{j <= i} dS_ij k_j.
// dst heads along dim 2: dq (nh), dk (nkv), dv (nkv). Needs hs >= 2 (the parking place).
layout(binding = 0) readonly buffer G { float g[]; };
layout(binding = 1) readonly buffer Q { float q[]; };
layout(binding = 2) readonly buffer K { float k[]; };
layout(binding = 3) readonly buffer V { float v[]; };
layout(binding = 4) buffer D { float dst[]; };

#include "attn_head.glsl"

shared float ta[WG];  // per tile: running max (pass 0), P (pass 1), dS (pass 1, 2)
shared float tb[WG];
shared float tc[WG];

uint dq_row(uint i, uint h, uint b) { return p.off_d + i * p.d1 + h * p.d2 + b * p.d3; }

// P_ij and dS_ij of query row i of head h (rows qrow, grow) and key row j of K/V head
// (rows krow, vrow), given lse_i and D_i
vec2 prob_and_ds(uint qrow, uint grow, uint krow, uint vrow, float lse, float dd) {
    float s, dp;
    ROW_DOT(q, qrow, k, krow, s);
    ROW_DOT(g, grow, v, vrow, dp);
    const float pr = exp(p.scale * s - lse);
    return vec2(pr, p.scale * pr * (dp - dd));
}

void row_statistics(uint i, uint h, uint b, uint tid) {
    const uint hk = h / (p.nh / p.nkv);
    const uint qrow = p.off_q + i * p.q1 + h * p.q2 + b * p.q3;
    const uint grow = p.off_g + i * p.g1 + h * p.g2 + b * p.g3;
    // per invocation over its keys j = tid, tid + WG, ...: max m, sum of exp(s - m) and
    // of exp(s - m) dP
    float m = NEG_INF, l = 0.0, d = 0.0;
    for (uint j = tid; j <= i; j += WG) {
        float s, dp;
        ROW_DOT(q, qrow, k, p.off_k + j * p.k1 + hk * p.k2 + b * p.k3, s);
        ROW_DOT(g, grow, v, p.off_v + j * p.v1 + hk * p.v2 + b * p.v3, dp);
        s *= p.scale;
        const float mn = max(m, s);
        const float corr = l == 0.0 ? 0.0 : exp(m - mn);
        const float e = exp(s - mn);
        l = l * corr + e;
        d = d * corr + e * dp;
        m = mn;
    }
    ta[tid] = m;
    tb[tid] = l;
    tc[tid] = d;
    barrier();
    if (tid == 0) {
        float mx = NEG_INF;
        for (uint t = 0; t < WG; ++t) mx = max(mx, ta[t]);
        float sl = 0.0, sd = 0.0;
        for (uint t = 0; t < WG; ++t) {
            if (tb[t] > 0.0) {
                const float f = exp(ta[t] - mx);
                sl += tb[t] * f;
                sd += tc[t] * f;
            }
        }
        const uint row = dq_row(i, h, b);
        dst[row] = mx + log(sl);
        dst[row + 1] = sd / sl;
    }
}

void key_gradients(uint j, uint hk, uint b, uint tid) {
    const uint group = p.nh / p.nkv;
    const uint krow = p.off_k + j * p.k1 + hk * p.k2 + b * p.k3;
    const uint vrow = p.off_v + j * p.v1 + hk * p.v2 + b * p.v3;
    float dk[DIMS_PER_INVOCATION], dv[DIMS_PER_INVOCATION];
    for (uint r = 0; r < DIMS_PER_INVOCATION; ++r) {
        dk[r] = 0.0;
        dv[r] = 0.0;
    }
    for (uint h = hk * group; h < (hk + 1) * group; ++h) {
        for (uint i0 = j; i0 < p.T; i0 += WG) {
            const uint i = i0 + tid;
            vec2 pd = vec2(0.0);
            if (i < p.T) {
                const uint row = dq_row(i, h, b);
                pd = prob_and_ds(p.off_q + i * p.q1 + h * p.q2 + b * p.q3, p.off_g + i * p.g1 + h * p.g2 + b * p.g3,
                                 krow, vrow, dst[row], dst[row + 1]);
            }
            ta[tid] = pd.x;
            tb[tid] = pd.y;
            barrier();
            const uint n = min(WG, p.T - i0);
            for (uint r = 0; r < DIMS_PER_INVOCATION; ++r) {
                const uint c = tid + r * WG;
                if (c < p.hs) {
                    float a = dv[r], e = dk[r];
                    for (uint t = 0; t < n; ++t) {
                        const uint it = i0 + t;
                        a += ta[t] * g[p.off_g + it * p.g1 + h * p.g2 + b * p.g3 + c];
                        e += tb[t] * q[p.off_q + it * p.q1 + h * p.q2 + b * p.q3 + c];
                    }
                    dv[r] = a;
                    dk[r] = e;
                }
            }
            barrier();
        }
    }
    const uint dkrow = p.off_d + j * p.d1 + (p.nh + hk) * p.d2 + b * p.d3;
    const uint dvrow = p.off_d + j * p.d1 + (p.nh + p.nkv + hk) * p.d2 + b * p.d3;
    for (uint r = 0; r < DIMS_PER_INVOCATION; ++r) {
        const uint c = tid + r * WG;
        if (c < p.hs) {
            dst[dkrow + c] = dk[r];
            dst[dvrow + c] = dv[r];
        }
    }
}

void query_gradient(uint i, uint h, uint b, uint tid) {
    const uint hk = h / (p.nh / p.nkv);
    const uint qrow = p.off_q + i * p.q1 + h * p.q2 + b * p.q3;
    const uint grow = p.off_g + i * p.g1 + h * p.g2 + b * p.g3;
    const uint row = dq_row(i, h, b);
    const float lse = dst[row], dd = dst[row + 1];
    barrier();  // everyone has read the parked statistics before dq overwrites them
    float acc[DIMS_PER_INVOCATION];
    for (uint r = 0; r < DIMS_PER_INVOCATION; ++r) acc[r] = 0.0;
    for (uint j0 = 0; j0 <= i; j0 += WG) {
        const uint j = j0 + tid;
        float ds = 0.0;
        if (j <= i) {
            ds = prob_and_ds(qrow, grow, p.off_k + j * p.k1 + hk * p.k2 + b * p.k3,
                             p.off_v + j * p.v1 + hk * p.v2 + b * p.v3, lse, dd).y;
        }
        ta[tid] = ds;
        barrier();
        const uint n = min(WG, i + 1 - j0);
        for (uint r = 0; r < DIMS_PER_INVOCATION; ++r) {
            const uint c = tid + r * WG;
            if (c < p.hs) {
                float a = acc[r];
                for (uint t = 0; t < n; ++t) a += ta[t] * k[p.off_k + (j0 + t) * p.k1 + hk * p.k2 + b * p.k3 + c];
                acc[r] = a;
            }
        }
        barrier();
    }
    for (uint r = 0; r < DIMS_PER_INVOCATION; ++r) {
        const uint c = tid + r * WG;
        if (c < p.hs) dst[row + c] = acc[r];
    }
}

void main() {
    const uint tid = gl_LocalInvocationID.x;
    const uvec3 w = gl_WorkGroupID;
    if (p.pass == 0) {
        row_statistics(w.x, w.y, w.z, tid);
    } else if (p.pass == 1) {
        key_gradients(w.x, w.y, w.z, tid);
    } else {
        query_gradient(w.x, w.y, w.z, tid);
    }
}
