#include "attn-causal.cuh"

// Causal softmax attention per query head, with K/V heads shared by groups of nh / nkv
// query heads, without anything of size T x T: one block per row, its threads split the
// keys (queries) of a tile of ATTN_TILE, then the head's dims (at most ATTN_DIMS each).
// The backward runs three kernels: row statistics (log-sum-exp and D = rowsum(P o dP)) into
// a pool buffer, then dk and dv per key row (summed over the group), then dq per query row.

#define ATTN_TILE 64
#define ATTN_DIMS 4  // supports_op: head size <= ATTN_TILE * ATTN_DIMS

// a head's rows: element strides of dims 1, 2, 3 (rows are contiguous)
struct attn_rows {
    const float * data;
    int64_t s1, s2, s3;
    __device__ const float * row(int64_t i, int64_t h, int64_t b) const { return data + i*s1 + h*s2 + b*s3; }
};

static attn_rows attn_rows_of(const ggml_tensor * t) {
    return { (const float *) t->data, (int64_t) (t->nb[1]/sizeof(float)), (int64_t) (t->nb[2]/sizeof(float)),
             (int64_t) (t->nb[3]/sizeof(float)) };
}

static __device__ float attn_dot(const float * a, const float * b, int hs) {
    float s = 0.0f;
    for (int c = 0; c < hs; ++c) {
        s += a[c]*b[c];
    }
    return s;
}

// block (i, h, b): o_i = sum_{j <= i} softmax_j(scale q_i . k_j) v_j, a running max and sum
// rescaled tile by tile
static __global__ void attn_causal_f32(attn_rows q, attn_rows k, attn_rows v, float * dst, int64_t d1, int64_t d2,
                                       int64_t d3, int hs, int group, float scale) {
    const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
    const int hk = h/group;
    __shared__ float tile[ATTN_TILE];
    const float * qi = q.row(i, h, b);
    float m = -INFINITY, l = 0.0f;
    float acc[ATTN_DIMS] = {0.0f};
    for (int j0 = 0; j0 <= i; j0 += ATTN_TILE) {
        const int j = j0 + tid;
        const float s = j <= i ? scale*attn_dot(qi, k.row(j, hk, b), hs) : -INFINITY;
        tile[tid] = s;
        __syncthreads();
        float mt = m;
        for (int t = 0; t < ATTN_TILE; ++t) {
            mt = fmaxf(mt, tile[t]);
        }
        __syncthreads();
        tile[tid] = j <= i ? expf(s - mt) : 0.0f;
        __syncthreads();
        const float corr = j0 == 0 ? 0.0f : expf(m - mt);
        const int n = min(ATTN_TILE, i + 1 - j0);
        float lt = 0.0f;
        for (int t = 0; t < n; ++t) {
            lt += tile[t];
        }
        l = l*corr + lt;
        for (int r = 0; r < ATTN_DIMS; ++r) {
            const int c = tid + r*ATTN_TILE;
            if (c < hs) {
                float a = acc[r]*corr;
                for (int t = 0; t < n; ++t) {
                    a += tile[t]*v.row(j0 + t, hk, b)[c];
                }
                acc[r] = a;
            }
        }
        m = mt;
        __syncthreads();
    }
    float * oi = dst + i*d1 + h*d2 + b*d3;
    for (int r = 0; r < ATTN_DIMS; ++r) {
        const int c = tid + r*ATTN_TILE;
        if (c < hs) {
            oi[c] = acc[r]/l;
        }
    }
}

// block (i, h, b): stats[row] = (lse_i, D_i), D_i = sum_j P_ij dP_ij, dP_ij = dO_i . v_j
static __global__ void attn_causal_back_stats_f32(attn_rows g, attn_rows q, attn_rows k, attn_rows v, float2 * stats,
                                                  int T, int nh, int hs, int group, float scale) {
    const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
    const int hk = h/group;
    __shared__ float sm[ATTN_TILE], sl[ATTN_TILE], sd[ATTN_TILE];
    const float * qi = q.row(i, h, b);
    const float * gi = g.row(i, h, b);
    float m = -INFINITY, l = 0.0f, d = 0.0f;
    for (int j = tid; j <= i; j += ATTN_TILE) {
        const float s  = scale*attn_dot(qi, k.row(j, hk, b), hs);
        const float dp = attn_dot(gi, v.row(j, hk, b), hs);
        const float mn = fmaxf(m, s);
        const float corr = l == 0.0f ? 0.0f : expf(m - mn);
        const float e = expf(s - mn);
        l = l*corr + e;
        d = d*corr + e*dp;
        m = mn;
    }
    sm[tid] = m;
    sl[tid] = l;
    sd[tid] = d;
    __syncthreads();
    if (tid == 0) {
        float mx = -INFINITY;
        for (int t = 0; t < ATTN_TILE; ++t) {
            mx = fmaxf(mx, sm[t]);
        }
        float ls = 0.0f, ds = 0.0f;
        for (int t = 0; t < ATTN_TILE; ++t) {
            if (sl[t] > 0.0f) {
                const float f = expf(sm[t] - mx);
                ls += sl[t]*f;
                ds += sd[t]*f;
            }
        }
        stats[((int64_t) b*nh + h)*T + i] = make_float2(mx + logf(ls), ds/ls);
    }
}

// P_ij and dS_ij = scale P_ij (dP_ij - D_i)
static __device__ float2 attn_prob_and_ds(const float * qi, const float * gi, const float * kj, const float * vj,
                                          float2 st, int hs, float scale) {
    const float p = expf(scale*attn_dot(qi, kj, hs) - st.x);
    return make_float2(p, scale*p*(attn_dot(gi, vj, hs) - st.y));
}

// block (j, hk, b): dk_j = sum dS_ij q_i, dv_j = sum P_ij dO_i over the group's query heads
// and their rows i >= j; dst heads along dim 2: dq (nh), dk (nkv), dv (nkv)
static __global__ void attn_causal_back_kv_f32(attn_rows g, attn_rows q, attn_rows k, attn_rows v, const float2 * stats,
                                               float * dst, int64_t d1, int64_t d2, int64_t d3,
                                               int T, int nh, int nkv, int hs, int group, float scale) {
    const int j = blockIdx.x, hk = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
    __shared__ float tp[ATTN_TILE], tds[ATTN_TILE];
    const float * kj = k.row(j, hk, b);
    const float * vj = v.row(j, hk, b);
    float dk[ATTN_DIMS] = {0.0f}, dv[ATTN_DIMS] = {0.0f};
    for (int h = hk*group; h < (hk + 1)*group; ++h) {
        for (int i0 = j; i0 < T; i0 += ATTN_TILE) {
            const int i = i0 + tid;
            float2 pd = make_float2(0.0f, 0.0f);
            if (i < T) {
                pd = attn_prob_and_ds(q.row(i, h, b), g.row(i, h, b), kj, vj, stats[((int64_t) b*nh + h)*T + i], hs, scale);
            }
            tp[tid] = pd.x;
            tds[tid] = pd.y;
            __syncthreads();
            const int n = min(ATTN_TILE, T - i0);
            for (int r = 0; r < ATTN_DIMS; ++r) {
                const int c = tid + r*ATTN_TILE;
                if (c < hs) {
                    for (int t = 0; t < n; ++t) {
                        dv[r] += tp[t]*g.row(i0 + t, h, b)[c];
                        dk[r] += tds[t]*q.row(i0 + t, h, b)[c];
                    }
                }
            }
            __syncthreads();
        }
    }
    float * dkj = dst + j*d1 + (nh + hk)*d2 + b*d3;
    float * dvj = dst + j*d1 + (nh + nkv + hk)*d2 + b*d3;
    for (int r = 0; r < ATTN_DIMS; ++r) {
        const int c = tid + r*ATTN_TILE;
        if (c < hs) {
            dkj[c] = dk[r];
            dvj[c] = dv[r];
        }
    }
}

// block (i, h, b): dq_i = sum_{j <= i} dS_ij k_j
static __global__ void attn_causal_back_q_f32(attn_rows g, attn_rows q, attn_rows k, attn_rows v, const float2 * stats,
                                              float * dst, int64_t d1, int64_t d2, int64_t d3,
                                              int T, int nh, int hs, int group, float scale) {
    const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
    const int hk = h/group;
    __shared__ float tds[ATTN_TILE];
    const float * qi = q.row(i, h, b);
    const float * gi = g.row(i, h, b);
    const float2 st = stats[((int64_t) b*nh + h)*T + i];
    float acc[ATTN_DIMS] = {0.0f};
    for (int j0 = 0; j0 <= i; j0 += ATTN_TILE) {
        const int j = j0 + tid;
        tds[tid] = j <= i ? attn_prob_and_ds(qi, gi, k.row(j, hk, b), v.row(j, hk, b), st, hs, scale).y : 0.0f;
        __syncthreads();
        const int n = min(ATTN_TILE, i + 1 - j0);
        for (int r = 0; r < ATTN_DIMS; ++r) {
            const int c = tid + r*ATTN_TILE;
            if (c < hs) {
                for (int t = 0; t < n; ++t) {
                    acc[r] += tds[t]*k.row(j0 + t, hk, b)[c];
                }
            }
        }
        __syncthreads();
    }
    float * dqi = dst + i*d1 + h*d2 + b*d3;
    for (int r = 0; r < ATTN_DIMS; ++r) {
        const int c = tid + r*ATTN_TILE;
        if (c < hs) {
            dqi[c] = acc[r];
        }
    }
}

static void attn_causal_check(const ggml_tensor * q, const ggml_tensor * dst) {
    GGML_ASSERT(q->ne[0] <= ATTN_TILE*ATTN_DIMS && q->ne[1] <= INT_MAX && q->ne[2] <= 65535 && q->ne[3] <= 65535);
    GGML_ASSERT(dst->type == GGML_TYPE_F32 && dst->nb[0] == sizeof(float));
}

void ggml_cuda_op_attn_causal(ggml_backend_cuda_context & ctx, ggml_tensor * dst) {
    const ggml_tensor * q = dst->src[0];
    const ggml_tensor * k = dst->src[1];
    attn_causal_check(q, dst);
    const dim3 grid(q->ne[1], q->ne[2], q->ne[3]);
    attn_causal_f32<<<grid, ATTN_TILE, 0, ctx.stream()>>>(
        attn_rows_of(q), attn_rows_of(k), attn_rows_of(dst->src[2]), (float *) dst->data,
        dst->nb[1]/sizeof(float), dst->nb[2]/sizeof(float), dst->nb[3]/sizeof(float),
        q->ne[0], q->ne[2]/k->ne[2], ggml_get_op_params_f32(dst, 0));
}

void ggml_cuda_op_attn_causal_back(ggml_backend_cuda_context & ctx, ggml_tensor * dst) {
    const attn_rows g = attn_rows_of(dst->src[0]);
    const ggml_tensor * q = dst->src[1];
    const ggml_tensor * k = dst->src[2];
    attn_causal_check(q, dst);
    const attn_rows qr = attn_rows_of(q), kr = attn_rows_of(k), vr = attn_rows_of(dst->src[3]);
    const int hs = q->ne[0], T = q->ne[1], nh = q->ne[2], nkv = k->ne[2], B = q->ne[3];
    const float scale = ggml_get_op_params_f32(dst, 0);
    const int64_t d1 = dst->nb[1]/sizeof(float), d2 = dst->nb[2]/sizeof(float), d3 = dst->nb[3]/sizeof(float);
    float * d = (float *) dst->data;

    ggml_cuda_pool_alloc<float2> stats(ctx.pool(), (size_t) T*nh*B);
    cudaStream_t stream = ctx.stream();
    attn_causal_back_stats_f32<<<dim3(T, nh, B), ATTN_TILE, 0, stream>>>(g, qr, kr, vr, stats.get(), T, nh, hs, nh/nkv, scale);
    attn_causal_back_kv_f32<<<dim3(T, nkv, B), ATTN_TILE, 0, stream>>>(g, qr, kr, vr, stats.get(), d, d1, d2, d3,
                                                                        T, nh, nkv, hs, nh/nkv, scale);
    attn_causal_back_q_f32<<<dim3(T, nh, B), ATTN_TILE, 0, stream>>>(g, qr, kr, vr, stats.get(), d, d1, d2, d3,
                                                                      T, nh, hs, nh/nkv, scale);
}
