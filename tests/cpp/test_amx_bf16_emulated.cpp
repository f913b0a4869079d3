// Checks the AMX bf16 GEMM (csrc/ggml-ext/cpu/amx-bf16.c, hooked in by patch 0021) on any CPU: the
// kernel source is compiled into this test with -DGGML_AMX_BF16_EMULATE, which turns its
// tile instructions (LDTILECFG, TILEZERO, TILELOADD, TDPBF16PS, TILESTORED, TILERELEASE)
// into C on eight emulated 1 KiB tile registers. The packing, blocking and edges are the
// code the real build runs.
//
//   C (M, N) = A (M, K) @ W (N, K)^T,  A rounded from f32 to bf16 (or given as bf16), W bf16
//
// For each shape (none, some or all of M, N, K multiples of the 16/32 tile sizes):
//   - every element equals a float64 reference of the same bf16 inputs within the f32
//     accumulation bound |err| <= K * 2^-24 * sum_k |a*w| (products of bf16 are exact in f32);
//   - every element equals, bit for bit, an f32 sum in ascending k (what TDPBF16PS's
//     pseudo-code does per element): so the tiles hold the right k and n;
//   - 1, 2, 3 and 7 "threads" (the shares of ggml_amx_bf16_share, run one after another,
//     each packing only its own columns of B' into a buffer of NaNs) give bit-identical C;
//   - no element outside (M, N) of C is written;
//   - adding into C (acc, as OUT_PROD into a gradient accumulator) equals, bit for bit, the
//     ascending-k f32 sum that starts from C's old value.
// The packers (patch 0021) take any strides: A read down its columns and W read from an
// f32 (K, N) matrix (OUT_PROD's operands) pack to the same A' and B' as their contiguous
// bf16 copies, whatever the rows each thread packs.
// Plus the emulator's own rules: bf16 rounding to nearest even, denormal inputs as zero.
// Where this build targets AVX512-BF16 (patch 0021's register engine: VDPBF16PS on the same
// packed A' and B'), every shape and acc case runs on it too: within the same f32 bound,
// bit-identical across splits, nothing written outside (M, N). Not bit for bit against the
// ascending-k sum: VDPBF16PS adds each pair's two products in an order of its own.
//
// Prints one line per case and PASS/FAIL at the end; exits non-zero on failure.

#include "amx-bf16.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

namespace {

int failures = 0;

void check(bool ok, const char * what) {
    if (!ok) {
        std::printf("  FAIL: %s\n", what);
        failures++;
    }
}

float bf16_to_f32(uint16_t h) {
    const uint32_t u = (uint32_t) h << 16;
    float f;
    std::memcpy(&f, &u, sizeof(f));
    return f;
}

uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof(u));
    return u;
}

// round to nearest even (finite inputs)
uint16_t to_bf16(float f) {
    const uint32_t u = bits(f);
    return (uint16_t) ((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

struct Problem {
    int64_t M, N, K;
    std::vector<float> a_f32;     // (M, K)
    std::vector<uint16_t> w;      // (N, K) bf16, row stride ldw
    size_t ldw;
    std::vector<uint16_t> a_bf16; // A' (Mp, Kp) as the kernel packs it
};

Problem make_problem(int64_t M, int64_t N, int64_t K, std::mt19937 & rng) {
    Problem p{M, N, K, {}, {}, (size_t) K + 5, {}};
    std::normal_distribution<float> normal(0.0f, 1.0f);
    p.a_f32.resize(M*K);
    for (float & x : p.a_f32) x = normal(rng);
    p.w.assign(N*p.ldw, 0x7fc0); // NaN between rows: the packing must not read past K
    for (int64_t n = 0; n < N; n++) {
        for (int64_t k = 0; k < K; k++) p.w[n*p.ldw + k] = to_bf16(0.5f*normal(rng));
    }
    const int64_t Mp = ggml_amx_bf16_pad(M), Kp = ggml_amx_bf16_pad(K);
    p.a_bf16.resize(Mp*Kp);
    for (int64_t m = 0; m < Mp; m++) {
        ggml_amx_bf16_pack_a_f32(m < M ? &p.a_f32[m*K] : nullptr, K, &p.a_bf16[m*Kp]);
    }
    return p;
}

const float SENTINEL = -12345.0f;

// C (M, ldc) computed with nth shares, each packing its own B' columns then multiplying;
// with c0, C starts as c0 and the product is added to it.
std::vector<float> run(const Problem & p, int nth, size_t ldc, const std::vector<float> * c0 = nullptr,
                       enum ggml_amx_bf16_engine engine = GGML_AMX_BF16_TILES) {
    const size_t wsize = ggml_amx_bf16_work_size(p.M, p.N, p.K);
    std::vector<uint8_t> work(wsize + 7);
    uint16_t * a;
    uint16_t * b;
    ggml_amx_bf16_work_split(work.data() + 7, p.M, p.N, p.K, &a, &b); // a misaligned buffer
    const int64_t Mp = ggml_amx_bf16_pad(p.M), Np = ggml_amx_bf16_pad(p.N), Kp = ggml_amx_bf16_pad(p.K);
    check((uint8_t *) (b + Np*Kp) <= work.data() + work.size(), "work size holds A' and B'");
    std::memcpy(a, p.a_bf16.data(), Mp*Kp*sizeof(uint16_t));
    std::fill(b, b + Np*Kp, (uint16_t) 0x7fc0); // NaN: reading another share's columns shows

    std::vector<float> c = c0 ? *c0 : std::vector<float>(p.M*ldc + 16, SENTINEL);
    for (int ith = 0; ith < nth; ith++) {
        int64_t n0, n1;
        ggml_amx_bf16_share(ith, nth, p.N, &n0, &n1);
        ggml_amx_bf16_pack_b(p.w.data(), false, p.ldw*sizeof(uint16_t), sizeof(uint16_t), p.N, p.K, n0, n1, b);
        ggml_amx_bf16_gemm(engine, a, b, p.M, p.N, p.K, n0, n1, c.data(), ldc, c0 != nullptr);
    }
    return c;
}

const char * engine_name(enum ggml_amx_bf16_engine engine) {
    return engine == GGML_AMX_BF16_TILES ? "tiles " : "avx512";
}

void check_shape(int64_t M, int64_t N, int64_t K, std::mt19937 & rng, enum ggml_amx_bf16_engine engine) {
    const Problem p = make_problem(M, N, K, rng);
    const int64_t Kp = ggml_amx_bf16_pad(K);
    const size_t ldc = N + 3; // columns N..N+2 of each row must stay untouched
    const std::vector<float> c1 = run(p, 1, ldc, nullptr, engine);

    double worst = 0.0; // largest error as a fraction of its bound
    bool exact = true, outside_ok = true;
    for (int64_t m = 0; m < M; m++) {
        for (int64_t n = 0; n < N; n++) {
            double ref = 0.0, mag = 0.0;
            float seq = 0.0f;
            for (int64_t k = 0; k < K; k++) {
                const float x = bf16_to_f32(p.a_bf16[m*Kp + k]);
                const float y = bf16_to_f32(p.w[n*p.ldw + k]);
                ref += (double) x * y;
                mag += std::fabs((double) x * y);
                seq += x * y; // exact product, one rounding per step
            }
            const double bound = K * std::ldexp(1.0, -24) * mag + 1e-30;
            const float got = c1[m*ldc + n];
            worst = std::fmax(worst, std::fabs(got - ref) / bound);
            if (std::isnan(got)) worst = INFINITY;
            exact = exact && bits(got) == bits(seq);
        }
        for (size_t n = N; n < ldc; n++) outside_ok = outside_ok && c1[m*ldc + n] == SENTINEL;
    }
    for (size_t i = M*ldc; i < c1.size(); i++) outside_ok = outside_ok && c1[i] == SENTINEL;

    bool same_split = true;
    for (int nth : {2, 3, 7}) {
        const std::vector<float> cn = run(p, nth, ldc, nullptr, engine);
        same_split = same_split && std::memcmp(cn.data(), c1.data(), c1.size()*sizeof(float)) == 0;
    }
    const bool tiles = engine == GGML_AMX_BF16_TILES;
    std::printf("%s M %4lld N %4lld K %4lld: max |err|/bound %.3f, f32 k-order %s, threads 1/2/3/7 %s\n",
                engine_name(engine), (long long) M, (long long) N, (long long) K, worst,
                !tiles ? "(not checked)" : exact ? "exact" : "DIFFERS", same_split ? "bit-identical" : "DIFFER");
    check(worst <= 1.0, "within the f32 accumulation bound of the float64 reference");
    check(exact || !tiles, "equal to the ascending-k f32 sum");
    check(same_split, "bit-identical for 1, 2, 3, 7 threads");
    check(outside_ok, "nothing written outside (M, N)");
}

// C += A W^T from random old values: each element is the ascending-k f32 sum started at its
// old value, on any split; nothing outside (M, N) changes.
void check_acc(int64_t M, int64_t N, int64_t K, std::mt19937 & rng, enum ggml_amx_bf16_engine engine) {
    const Problem p = make_problem(M, N, K, rng);
    const int64_t Kp = ggml_amx_bf16_pad(K);
    const size_t ldc = N + 3;
    std::normal_distribution<float> normal(0.0f, 4.0f);
    std::vector<float> c0(M*ldc + 16, SENTINEL);
    for (int64_t m = 0; m < M; m++) {
        for (int64_t n = 0; n < N; n++) c0[m*ldc + n] = normal(rng);
    }
    bool exact = true, same_split = true, outside_ok = true, bounded = true;
    const std::vector<float> c1 = run(p, 1, ldc, &c0, engine);
    for (int64_t m = 0; m < M; m++) {
        for (int64_t n = 0; n < N; n++) {
            float seq = c0[m*ldc + n];
            double ref = c0[m*ldc + n], mag = std::fabs(ref);
            for (int64_t k = 0; k < K; k++) {
                const float x = bf16_to_f32(p.a_bf16[m*Kp + k]), y = bf16_to_f32(p.w[n*p.ldw + k]);
                seq += x * y;
                ref += (double) x * y;
                mag += std::fabs((double) x * y);
            }
            exact = exact && bits(c1[m*ldc + n]) == bits(seq);
            bounded = bounded && std::fabs(c1[m*ldc + n] - ref) <= (K + 1) * std::ldexp(1.0, -24) * mag;
        }
        for (size_t n = N; n < ldc; n++) outside_ok = outside_ok && c1[m*ldc + n] == SENTINEL;
    }
    for (int nth : {2, 3}) {
        const std::vector<float> cn = run(p, nth, ldc, &c0, engine);
        same_split = same_split && std::memcmp(cn.data(), c1.data(), c1.size()*sizeof(float)) == 0;
    }
    const bool tiles = engine == GGML_AMX_BF16_TILES;
    std::printf("%s acc M %4lld N %4lld K %4lld: within bound %s, f32 k-order from the old C %s, threads 1/2/3 %s\n",
                engine_name(engine), (long long) M, (long long) N, (long long) K, bounded ? "yes" : "NO",
                !tiles ? "(not checked)" : exact ? "exact" : "DIFFERS", same_split ? "bit-identical" : "DIFFER");
    check(bounded, "C += product within the f32 bound of the float64 reference");
    check(exact || !tiles, "C += product equals the ascending-k f32 sum from C's old value");
    check(same_split, "acc bit-identical for 1, 2, 3 threads");
    check(outside_ok, "acc writes nothing outside (M, N)");
}

// OUT_PROD's operands: A (M, K) stored as f32 (K, M) (element (m, k) at m + k*M) and W (N, K)
// stored as f32 (K, ldn) pack to the layouts of amx-bf16.h, as do their contiguous copies;
// A' packed in 16-row shares (as threads pack it) or all at once alike. Sides off the
// 16-lane grain cover the vector packers' masked edges.
void check_strided_packing(std::mt19937 & rng) {
    const int64_t M = 37, N = 40, K = 45, ldn = N + 2;
    const int64_t Mp = ggml_amx_bf16_pad(M), Np = ggml_amx_bf16_pad(N), Kp = ggml_amx_bf16_pad(K);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> at(K*M), wt(K*ldn, NAN); // NaN between rows: must not be read
    for (float & x : at) x = normal(rng);
    for (int64_t k = 0; k < K; k++) {
        for (int64_t n = 0; n < N; n++) wt[k*ldn + n] = normal(rng);
    }
    std::vector<uint16_t> a_rows(Mp*Kp), a_cols(Mp*Kp, 0xffff), a_shares(Mp*Kp, 0xffff);
    std::vector<float> row(K);
    for (int64_t m = 0; m < Mp; m++) {
        for (int64_t k = 0; k < K && m < M; k++) row[k] = at[k*M + m];
        ggml_amx_bf16_pack_a_f32(m < M ? row.data() : nullptr, K, &a_rows[m*Kp]);
    }
    ggml_amx_bf16_pack_a(at.data(), true, sizeof(float), M*sizeof(float), M, K, 0, Mp, a_cols.data());
    for (int64_t m0 = 0; m0 < Mp; m0 += 16) {
        ggml_amx_bf16_pack_a(at.data(), true, sizeof(float), M*sizeof(float), M, K, m0, m0 + 16, a_shares.data());
    }
    std::vector<uint16_t> w_bf16(N*K), b_rows(Np*Kp), b_cols(Np*Kp, 0xffff);
    for (int64_t n = 0; n < N; n++) {
        for (int64_t k = 0; k < K; k++) w_bf16[n*K + k] = to_bf16(wt[k*ldn + n]);
    }
    ggml_amx_bf16_pack_b(w_bf16.data(), false, K*sizeof(uint16_t), sizeof(uint16_t), N, K, 0, Np, b_rows.data());
    ggml_amx_bf16_pack_b(wt.data(), true, sizeof(float), ldn*sizeof(float), N, K, 0, Np, b_cols.data());
    // the layouts of amx-bf16.h, written out here
    std::vector<uint16_t> a_want(Mp*Kp, 0), b_want(Np*Kp, 0);
    for (int64_t m = 0; m < M; m++) {
        for (int64_t k = 0; k < K; k++) a_want[m*Kp + k] = to_bf16(at[k*M + m]);
    }
    for (int64_t n = 0; n < N; n++) {
        for (int64_t k = 0; k < K; k++) b_want[(n/16)*16*Kp + (k/2)*32 + (n%16)*2 + (k & 1)] = to_bf16(wt[k*ldn + n]);
    }
    const bool a_ok = a_rows == a_want && a_cols == a_want && a_shares == a_want;
    const bool b_ok = b_rows == b_want && b_cols == b_want;
    std::printf("strided f32 operands pack like contiguous bf16: A' %s, B' %s\n", a_ok ? "yes" : "NO",
                b_ok ? "yes" : "NO");
    check(a_ok, "A' from columns of an f32 matrix");
    check(b_ok, "B' from an f32 (K, N) matrix");
}

// A given as bf16 rows (src1 already bf16) packs to the same A'.
void check_bf16_rows(std::mt19937 & rng) {
    const int64_t M = 19, K = 45, Kp = ggml_amx_bf16_pad(K);
    const Problem p = make_problem(M, 8, K, rng);
    std::vector<uint16_t> row(Kp, 0xffff);
    bool same = true;
    for (int64_t m = 0; m < M; m++) {
        ggml_amx_bf16_pack_a_bf16(&p.a_bf16[m*Kp], K, row.data());
        same = same && std::memcmp(row.data(), &p.a_bf16[m*Kp], Kp*sizeof(uint16_t)) == 0;
    }
    std::printf("bf16 rows of A pack as their f32 rounding: %s\n", same ? "yes" : "NO");
    check(same, "bf16 rows pack like f32 rows");
}

// f32 -> bf16 rounds to nearest, ties to even; NaN stays NaN.
void check_rounding() {
    const float halfway = 1.0f + std::ldexp(1.0f, -8);       // between 1 and 1 + 2^-7: to even 1
    const float above = 1.0f + 3*std::ldexp(1.0f, -8);       // between 1+2^-7 and 1+2^-6: to even 1+2^-6
    const float just_over = 1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20);
    // at the start of a 40-element row and again at 20..23: the vector packers' lanes and
    // the scalar tail
    float in[40];
    for (int i = 0; i < 40; i++) in[i] = (float) i - 17.25f;
    const float special[4] = {halfway, above, just_over, NAN};
    for (int i = 0; i < 4; i++) in[i] = in[20 + i] = special[i];
    uint16_t row[64];
    ggml_amx_bf16_pack_a_f32(in, 40, row);
    bool ok = row[40] == 0 && row[63] == 0;
    for (int base : {0, 20}) {
        ok = ok && row[base] == 0x3f80 && row[base + 1] == 0x3f82 && row[base + 2] == 0x3f81 &&
             std::isnan(bf16_to_f32(row[base + 3]));
    }
    for (int i = 4; i < 40; i++) ok = ok && (i >= 20 && i < 24 ? true : row[i] == to_bf16(in[i]));
    std::printf("f32 -> bf16 rounding to nearest even, zero padding: %s\n", ok ? "yes" : "NO");
    check(ok, "bf16 rounding");
}

// TDPBF16PS treats denormal inputs as zero: a denormal bf16 of A times 2^100 adds nothing.
void check_daz() {
    const int64_t M = 32, N = 32, K = 32;
    std::vector<uint16_t> w(N*K, 0);
    for (int64_t n = 0; n < N; n++) w[n*K] = 0x7180; // 2^100
    std::vector<uint16_t> a(M*K, 0);
    for (int64_t m = 0; m < M; m++) a[m*K] = 0x0001; // the smallest bf16 denormal, 2^-133
    a[0] = 0x0080;                                   // the smallest normal, 2^-126
    std::vector<uint8_t> work(ggml_amx_bf16_work_size(M, N, K));
    uint16_t * pa;
    uint16_t * pb;
    ggml_amx_bf16_work_split(work.data(), M, N, K, &pa, &pb);
    std::memcpy(pa, a.data(), a.size()*sizeof(uint16_t));
    ggml_amx_bf16_pack_b(w.data(), false, K*sizeof(uint16_t), sizeof(uint16_t), N, K, 0, N, pb);
    std::vector<float> c(M*N);
    ggml_amx_bf16_gemm(GGML_AMX_BF16_TILES, pa, pb, M, N, K, 0, N, c.data(), N, false);
    const bool ok = c[0] == std::ldexp(1.0f, -26) && c[N] == 0.0f && c[(M - 1)*N + N - 1] == 0.0f;
    std::printf("denormal inputs count as zero (DAZ): %s\n", ok ? "yes" : "NO");
    check(ok, "DAZ");
}

}  // namespace

int main() {
    std::mt19937 rng(20261202);
    check_rounding();
    check_bf16_rows(rng);
    check_daz();
    check_strided_packing(rng);
    const int64_t shapes[][3] = {
        {1, 1, 1},     {5, 7, 3},     {16, 16, 32},  {32, 32, 32},  {33, 31, 33},
        {17, 50, 95},  {64, 48, 64},  {45, 16, 31},  {100, 70, 130}, {31, 97, 257},
        {96, 160, 96}, {32, 129, 64}, {128, 96, 768}, {64, 768, 768}, {40, 200, 3072},
    };
    const int64_t acc_shapes[][3] = {{32, 32, 32}, {33, 31, 33}, {100, 70, 130}, {64, 768, 96}};
    std::vector<enum ggml_amx_bf16_engine> engines = {GGML_AMX_BF16_TILES};
    if (ggml_amx_bf16_avx512_compiled()) {
        engines.push_back(GGML_AMX_BF16_AVX512);
    } else {
        std::printf("this build does not target AVX512-BF16: the register engine is not compiled in\n");
    }
    for (enum ggml_amx_bf16_engine engine : engines) {
        for (const auto & s : shapes) check_shape(s[0], s[1], s[2], rng, engine);
        for (const auto & s : acc_shapes) check_acc(s[0], s[1], s[2], rng, engine);
    }
    std::printf("%s\n", failures ? "FAIL" : "PASS");
    return failures ? 1 : 0;
}
