// bf16 GEMM on AMX tiles, or on AVX512-BF16 registers where there are no tiles, for
// MUL_MAT and OUT_PROD (see amx-bf16.h for the layouts).
//
// Built twice: into ggml-cpu, where the tile operations below are the AMX instructions
// (compiled through function target attributes, so a build on a CPU without AMX still has
// them, and gated at run time by ggml_amx_bf16_usable), and with -DGGML_AMX_BF16_EMULATE
// into tests/cpp, where they are plain C on emulated tile registers. Everything else, the
// packing, the blocking and the edges, is the same code in both builds.

#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE // syscall()
#endif

#include "amx-bf16.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(GGML_AMX_BF16_EMULATE)
#define AMX_BF16_TILES 1
#elif defined(__x86_64__) && defined(__linux__) && \
      ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11))
#define AMX_BF16_TILES 1
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#define AMX_BF16_TILES 0
#endif

// Vector packing (rounding and interleaving 16 lanes at a time) in builds that target
// AVX-512F; the scalar loops below give the same bits everywhere else.
#if defined(__AVX512F__)
#define AMX_BF16_PACK_AVX512 1
#include <immintrin.h>
#else
#define AMX_BF16_PACK_AVX512 0
#endif

// The register engine: in builds that target AVX512-BF16 (e.g. -march=native on AMD Zen 4
// and 5, or Intel Cooper Lake and later), so the CPU that runs them has it.
#if defined(__AVX512BF16__) && defined(__AVX512F__)
#define AMX_BF16_AVX512 1
#include <immintrin.h>
#else
#define AMX_BF16_AVX512 0
#endif

// ---- the palette-1 tile configuration (64 bytes, the layout LDTILECFG reads) ----

struct amx_tile_config {
    uint8_t  palette_id;
    uint8_t  start_row;
    uint8_t  reserved[14];
    uint16_t colsb[16]; // bytes per row of each tile
    uint8_t  rows[16];  // rows of each tile
};

// Tile registers: 4 accumulators C (2 x 2 blocks of 16 x 16 f32), 2 A tiles (16 rows of A'
// x 32 bf16), 2 B tiles (16 k-pairs x 16 columns x 2 bf16 of B'). Every tile is 16 rows of
// 64 bytes, the most palette 1 allows, so one config serves every block. Macros, not an
// enum: the instructions' intrinsics paste the tile number into the register name.
#define TC00 0
#define TC01 1
#define TC10 2
#define TC11 3
#define TA0  4
#define TA1  5
#define TB0  6
#define TB1  7
#define AMX_ROWS  16
#define AMX_COLSB 64

static void amx_config_init(struct amx_tile_config * cfg) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->palette_id = 1;
    for (int t = 0; t < 8; t++) {
        cfg->rows[t]  = AMX_ROWS;
        cfg->colsb[t] = AMX_COLSB;
    }
}

// ---- the tile operations: emulated, or the instructions ----

#if defined(GGML_AMX_BF16_EMULATE)

// Eight 1 KiB tile registers and their shapes, per thread as on the hardware.
static _Thread_local struct {
    int     configured;
    uint8_t rows[8];
    int     colsb[8];
    uint8_t data[8][1024];
} amx_emu;

static void amx_emu_fail(const char * what) {
    fprintf(stderr, "AMX emulation: %s (the hardware would fault)\n", what);
    abort();
}

static void amx_emu_loadconfig(const struct amx_tile_config * cfg) {
    if (cfg->palette_id != 1) amx_emu_fail("palette is not 1");
    memset(&amx_emu, 0, sizeof(amx_emu)); // LDTILECFG zeroes every tile
    for (int t = 0; t < 8; t++) {
        if (cfg->rows[t] > 16 || cfg->colsb[t] > 64) amx_emu_fail("tile larger than 16 x 64 bytes");
        amx_emu.rows[t]  = cfg->rows[t];
        amx_emu.colsb[t] = cfg->colsb[t];
    }
    amx_emu.configured = 1;
}

static void amx_emu_check(int t) {
    if (!amx_emu.configured) amx_emu_fail("tile used without a loaded config");
    if (t < 0 || t > 7 || amx_emu.rows[t] == 0) amx_emu_fail("tile not configured");
}

static void amx_emu_zero(int t) {
    amx_emu_check(t);
    memset(amx_emu.data[t], 0, sizeof(amx_emu.data[t]));
}

// TILELOADD: rows x colsb bytes from base + r*stride; the rest of the register is zeroed.
static void amx_emu_load(int t, const void * base, size_t stride) {
    amx_emu_check(t);
    memset(amx_emu.data[t], 0, sizeof(amx_emu.data[t]));
    for (int r = 0; r < amx_emu.rows[t]; r++) {
        memcpy(amx_emu.data[t] + r*64, (const uint8_t *) base + r*stride, amx_emu.colsb[t]);
    }
}

static void amx_emu_store(int t, void * base, size_t stride) {
    amx_emu_check(t);
    for (int r = 0; r < amx_emu.rows[t]; r++) {
        memcpy((uint8_t *) base + r*stride, amx_emu.data[t] + r*64, amx_emu.colsb[t]);
    }
}

// bf16 -> f32 as TDPBF16PS reads it: denormal inputs are zeros (DAZ).
static float amx_emu_bf16_daz(uint16_t h) {
    uint32_t u = (uint32_t) h << 16;
    if ((u & 0x7f800000u) == 0) u &= 0x80000000u;
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

// f32 accumulator after an FMA: denormal results are flushed to a zero of their sign (FTZ).
static float amx_emu_ftz(float x) {
    return fpclassify(x) == FP_SUBNORMAL ? copysignf(0.0f, x) : x;
}

// TDPBF16PS c, a, b as Intel's pseudo-code gives it: for each row m of c, each k-pair p of
// a's row, each column n of c, two multiply-adds into the f32 accumulator, in that order,
// each rounded to nearest even with FTZ; inputs DAZ; MXCSR ignored. The bf16 x bf16
// product is exact in f32 (8 + 8 significand bits), so whether the hardware fuses the
// multiply into the add or not, each step rounds once: here the product is formed exactly
// and added with one f32 rounding.
static void amx_emu_dpbf16ps(int c, int a, int b) {
    amx_emu_check(c); amx_emu_check(a); amx_emu_check(b);
    const int M = amx_emu.rows[c], N = amx_emu.colsb[c]/4, P = amx_emu.colsb[a]/4;
    // the shape rules TDPBF16PS enforces (#UD otherwise)
    if (amx_emu.rows[a] != M || amx_emu.rows[b] != P || amx_emu.colsb[b] != amx_emu.colsb[c]) {
        amx_emu_fail("TDPBF16PS tile shapes do not match");
    }
    for (int m = 0; m < M; m++) {
        float * acc = (float *) (amx_emu.data[c] + m*64);
        const uint16_t * arow = (const uint16_t *) (amx_emu.data[a] + m*64);
        for (int p = 0; p < P; p++) {
            const uint16_t * brow = (const uint16_t *) (amx_emu.data[b] + p*64);
            const float a0 = amx_emu_bf16_daz(arow[2*p]), a1 = amx_emu_bf16_daz(arow[2*p + 1]);
            for (int n = 0; n < N; n++) {
                float s = acc[n];
                s = amx_emu_ftz(s + (float) (a0 * amx_emu_bf16_daz(brow[2*n])));
                s = amx_emu_ftz(s + (float) (a1 * amx_emu_bf16_daz(brow[2*n + 1])));
                acc[n] = s;
            }
        }
    }
}

static void amx_emu_release(void) {
    memset(&amx_emu, 0, sizeof(amx_emu));
}

#define TILE_TARGET
#define TILE_LOADCONFIG(cfg)        amx_emu_loadconfig(cfg)
#define TILE_ZERO(t)                amx_emu_zero(t)
#define TILE_LOAD(t, base, stride)  amx_emu_load(t, base, stride)
#define TILE_STORE(t, base, stride) amx_emu_store(t, base, stride)
#define TILE_DPBF16PS(c, a, b)      amx_emu_dpbf16ps(c, a, b)
#define TILE_RELEASE()              amx_emu_release()

#elif AMX_BF16_TILES

// The instructions; tile numbers must be literals, hence macros.
#define TILE_TARGET __attribute__((target("amx-tile,amx-bf16")))
#define TILE_LOADCONFIG(cfg)        _tile_loadconfig(cfg)
#define TILE_ZERO(t)                _tile_zero(t)
#define TILE_LOAD(t, base, stride)  _tile_loadd(t, base, stride)
#define TILE_STORE(t, base, stride) _tile_stored(t, base, stride)
#define TILE_DPBF16PS(c, a, b)      _tile_dpbf16ps(c, a, b)
#define TILE_RELEASE()              _tile_release()

#endif

// ---- packing (plain C in both builds) ----

static size_t amx_align64(size_t x) {
    return (x + 63) & ~(size_t) 63;
}

size_t ggml_amx_bf16_work_size(int64_t M, int64_t N, int64_t K) {
    const size_t Kp = ggml_amx_bf16_pad(K);
    // A' (Mp, Kp) + B' (Np, Kp), each 64-aligned, plus slack to align the buffer's start
    return amx_align64(ggml_amx_bf16_pad(M)*Kp*sizeof(uint16_t)) + ggml_amx_bf16_pad(N)*Kp*sizeof(uint16_t) + 128;
}

void ggml_amx_bf16_work_split(void * work, int64_t M, int64_t N, int64_t K, uint16_t ** a, uint16_t ** b) {
    (void) N;
    uint8_t * p = (uint8_t *) amx_align64((size_t) work);
    *a = (uint16_t *) p;
    *b = (uint16_t *) (p + amx_align64(ggml_amx_bf16_pad(M)*ggml_amx_bf16_pad(K)*sizeof(uint16_t)));
}

// f32 -> bf16, round to nearest even; NaN stays NaN (quiet).
static uint16_t amx_fp32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (uint16_t) ((u >> 16) | 0x40);
    }
    return (uint16_t) ((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

#if AMX_BF16_PACK_AVX512
// 16 f32 -> 16 bf16, exactly as amx_fp32_to_bf16 rounds each.
static inline __m256i amx_bf16_x16(__m512 v) {
    const __m512i u   = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb)), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    return _mm512_cvtepi32_epi16(r);
}

// The bf16 pairs (even[i], odd[i]) of 16 lanes as 16 32-bit words, even in the low half:
// one k-pair of 16 rows or columns in the VNNI pair layout.
static inline __m512i amx_bf16_pairs_x16(__m512 even, __m512 odd) {
    return _mm512_or_si512(_mm512_cvtepu16_epi32(amx_bf16_x16(even)),
                           _mm512_slli_epi32(_mm512_cvtepu16_epi32(amx_bf16_x16(odd)), 16));
}

// How many of 16 lanes from here hold data when rest rows or columns remain.
static inline int amx_lanes(int64_t rest) {
    return (int) (rest < 0 ? 0 : rest < 16 ? rest : 16);
}

// Lanes [0, n) of 16 f32 at p, zeros elsewhere (and when row is false).
static inline __m512 amx_load_f32x16(const uint8_t * p, int n, bool row) {
    return row ? _mm512_maskz_loadu_ps((__mmask16) ((1u << n) - 1), p) : _mm512_setzero_ps();
}
#endif

void ggml_amx_bf16_pack_a_f32(const float * x, int64_t K, uint16_t * row) {
    const int64_t Kp = ggml_amx_bf16_pad(K);
    int64_t k = 0;
    if (x) {
#if AMX_BF16_PACK_AVX512
        for (; k + 16 <= K; k += 16) {
            _mm256_storeu_si256((__m256i *) (row + k), amx_bf16_x16(_mm512_loadu_ps(x + k)));
        }
#endif
        for (; k < K; k++) row[k] = amx_fp32_to_bf16(x[k]);
    }
    for (; k < Kp; k++) row[k] = 0;
}

void ggml_amx_bf16_pack_a_bf16(const uint16_t * x, int64_t K, uint16_t * row) {
    const int64_t Kp = ggml_amx_bf16_pad(K);
    int64_t k = 0;
    if (x) {
        memcpy(row, x, K*sizeof(uint16_t));
        k = K;
    }
    for (; k < Kp; k++) row[k] = 0;
}

void ggml_amx_bf16_pack_a_row(const void * x, bool x_f32, int64_t K, uint16_t * row) {
    if (x_f32) {
        ggml_amx_bf16_pack_a_f32((const float *) x, K, row);
    } else {
        ggml_amx_bf16_pack_a_bf16((const uint16_t *) x, K, row);
    }
}

// Element (m, k) of an f32 or bf16 matrix, as bf16.
static inline uint16_t amx_bf16_at(const uint8_t * p, bool f32) {
    if (f32) {
        float f;
        memcpy(&f, p, sizeof(f));
        return amx_fp32_to_bf16(f);
    }
    uint16_t h;
    memcpy(&h, p, sizeof(h));
    return h;
}

void ggml_amx_bf16_pack_a(const void * x, bool x_f32, size_t sm, size_t sk, int64_t M, int64_t K,
                          int64_t m0, int64_t m1, uint16_t * a) {
    const int64_t Kp = ggml_amx_bf16_pad(K);
    const uint8_t * base = (const uint8_t *) x;
    if (sk == (x_f32 ? sizeof(float) : sizeof(uint16_t))) {
        for (int64_t m = m0; m < m1; m++) {
            ggml_amx_bf16_pack_a_row(m < M ? base + m*sm : NULL, x_f32, K, a + m*Kp);
        }
        return;
    }
#if AMX_BF16_PACK_AVX512
    if (x_f32 && sm == sizeof(float)) {
        // rows contiguous along m (OUT_PROD's k-major gradient): per k-pair, the 16 rows'
        // pairs in one vector, written out as 16 32-bit words
        for (int64_t mb = m0; mb < m1; mb += 16) {
            const int rows = amx_lanes(M - mb);
            const int64_t me = mb + 16 < m1 ? mb + 16 : m1;
            uint32_t pairs[16];
            for (int64_t k = 0; k < Kp; k += 2) {
                const __m512 even = amx_load_f32x16(base + mb*sm + k*sk, rows, k < K);
                const __m512 odd  = amx_load_f32x16(base + mb*sm + (k + 1)*sk, rows, k + 1 < K);
                _mm512_storeu_si512(pairs, amx_bf16_pairs_x16(even, odd));
                for (int64_t m = mb; m < me; m++) {
                    memcpy(a + m*Kp + k, &pairs[m - mb], sizeof(uint32_t));
                }
            }
        }
        return;
    }
#endif
    // k strided: 16 rows side by side, so each k reads neighbouring elements of A
    for (int64_t mb = m0; mb < m1; mb += 16) {
        const int64_t me = mb + 16 < m1 ? mb + 16 : m1;
        for (int64_t k = 0; k < Kp; k++) {
            for (int64_t m = mb; m < me; m++) {
                a[m*Kp + k] = m < M && k < K ? amx_bf16_at(base + m*sm + k*sk, x_f32) : 0;
            }
        }
    }
}

// One 16-column block j of B': (Kp/2, 16, 2) from W rows 16j..16j+15; rows past N and
// columns past K are zeros, so the padded products add exact zeros.
static void amx_pack_b_block(const uint8_t * w, bool w_f32, size_t sn, size_t sk, int64_t N, int64_t K,
                             int64_t j, uint16_t * bj) {
    const int64_t Kp = ggml_amx_bf16_pad(K);
    int64_t k = 0; // k below this is packed by a vector path
#if AMX_BF16_PACK_AVX512
    const int cols = amx_lanes(N - 16*j);
    const uint8_t * wj = w + 16*j*sn;
    if (w_f32 && sn == sizeof(float)) {
        // columns contiguous along n (OUT_PROD's first operand): a k-pair row of the block
        // is the pairs of two rows of W, one 64-byte store
        for (; k < Kp; k += 2) {
            const __m512 even = amx_load_f32x16(wj + k*sk, cols, k < K);
            const __m512 odd  = amx_load_f32x16(wj + (k + 1)*sk, cols, k + 1 < K);
            _mm512_storeu_si512(bj + k*16, amx_bf16_pairs_x16(even, odd));
        }
    } else if (!w_f32 && sk == sizeof(uint16_t) && sn*16 <= INT32_MAX) {
        // a bf16 weight with contiguous rows (MUL_MAT's src0): a k-pair of the 16 columns is
        // one 32-bit word of each row, gathered; the last pair of an odd K and the pairs past
        // K are left to the scalar loop (a gather would read past the row)
        const __m512i offsets = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                   _mm512_set1_epi32((int) sn));
        for (; k + 1 < K; k += 2) {
            const __m512i pairs = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), (__mmask16) ((1u << cols) - 1),
                                                              offsets, wj + k*sk, 1);
            _mm512_storeu_si512(bj + k*16, pairs);
        }
    }
#endif
    for (; k < Kp; k++) {
        for (int c = 0; c < 16; c++) {
            const int64_t n = 16*j + c;
            // (k/2, c, k%2) of the block: pairs of consecutive k side by side per column
            bj[(k/2)*32 + c*2 + (k & 1)] = n < N && k < K ? amx_bf16_at(w + n*sn + k*sk, w_f32) : 0;
        }
    }
}

void ggml_amx_bf16_pack_b(const void * w, bool w_f32, size_t sn, size_t sk, int64_t N, int64_t K,
                          int64_t n0, int64_t n1, uint16_t * b) {
    const int64_t Kp = ggml_amx_bf16_pad(K);
    for (int64_t j = n0/16; j < n1/16; j++) {
        amx_pack_b_block((const uint8_t *) w, w_f32, sn, sk, N, K, j, b + j*Kp*16);
    }
}

void ggml_amx_bf16_share(int ith, int nth, int64_t N, int64_t * n0, int64_t * n1) {
    const int64_t blocks = ggml_amx_bf16_pad(N)/GGML_AMX_BF16_BLOCK;
    *n0 = (ith*blocks/nth)*GGML_AMX_BF16_BLOCK;
    *n1 = ((ith + 1)*blocks/nth)*GGML_AMX_BF16_BLOCK;
}

// ---- C blocks (both engines) ----

// The 32 x 32 block of C at (mb, nb) as a kernel reads (acc) and writes it: C itself, row
// stride ldc, when the block lies inside (M, N); else the scratch tmp (32, 32), holding
// C's inside part (acc) and zeros, which amx_block_end copies back.
static inline float * amx_block_begin(float * c, size_t ldc, int64_t M, int64_t N, int64_t mb, int64_t nb, bool acc,
                               float * tmp, size_t * ldcb) {
    if (mb + 32 <= M && nb + 32 <= N) {
        *ldcb = ldc;
        return c + mb*ldc + nb;
    }
    const int64_t rows = M - mb < 32 ? M - mb : 32;
    const int64_t cols = N - nb < 32 ? N - nb : 32;
    memset(tmp, 0, 32*32*sizeof(float));
    if (acc) {
        for (int64_t r = 0; r < rows; r++) {
            memcpy(tmp + r*32, c + (mb + r)*ldc + nb, cols*sizeof(float));
        }
    }
    *ldcb = 32;
    return tmp;
}

static inline void amx_block_end(float * c, size_t ldc, int64_t M, int64_t N, int64_t mb, int64_t nb,
                          const float * cb, const float * tmp) {
    if (cb != tmp) {
        return;
    }
    const int64_t rows = M - mb < 32 ? M - mb : 32;
    const int64_t cols = N - nb < 32 ? N - nb : 32;
    for (int64_t r = 0; r < rows; r++) {
        memcpy(c + (mb + r)*ldc + nb, tmp + r*32, cols*sizeof(float));
    }
}

// ---- the loop nest (both engines) ----

// A kernel for the 32 x 32 block of C at (mb, nb) over k in [k0, k1) (multiples of 32),
// into cb (see amx_block_begin), starting from zero or, with acc, from cb.
typedef void (*amx_block_fn)(const uint16_t * a, const uint16_t * b, int64_t M, int64_t Kp, int64_t k0, int64_t k1,
                             int64_t mb, int64_t nb, float * cb, size_t ldcb, bool acc);

// K in chunks of AMX_KC and the rows in chunks of AMX_MC: a chunk of A' (AMX_MC x AMX_KC
// bf16, 256 KiB) stays in L2 while the thread's columns of B' pass, instead of all of A'
// streaming from memory once per 32 columns (103 MB of it for GPT-2's LM-head weight
// gradient). A K chunk after the first adds to what the one before stored, so every
// element's sum still runs in ascending k, rounded as without chunks: bit-identical.
#define AMX_KC 1024
#define AMX_MC 128

static inline void amx_gemm_blocked(amx_block_fn block, const uint16_t * a, const uint16_t * b,
                                    int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n1,
                                    float * c, size_t ldc, bool acc) {
    const int64_t Kp = ggml_amx_bf16_pad(K);
    float tmp[32*32];
    for (int64_t k0 = 0; k0 < Kp; k0 += AMX_KC) {
        const int64_t k1 = k0 + AMX_KC < Kp ? k0 + AMX_KC : Kp;
        const bool acc_k = acc || k0 > 0;
        for (int64_t mc = 0; mc < M; mc += AMX_MC) {
            const int64_t me = mc + AMX_MC < M ? mc + AMX_MC : M;
            for (int64_t nb = n0; nb < n1 && nb < N; nb += 32) {
                for (int64_t mb = mc; mb < me; mb += 32) {
                    size_t ldcb;
                    float * cb = amx_block_begin(c, ldc, M, N, mb, nb, acc_k, tmp, &ldcb);
                    block(a, b, M, Kp, k0, k1, mb, nb, cb, ldcb, acc_k);
                    amx_block_end(c, ldc, M, N, mb, nb, cb, tmp);
                }
            }
        }
    }
}

// ---- the tile kernel ----

#if AMX_BF16_TILES

// One 32 x 32 block of C at (mb, nb): 4 accumulators over Kp/32 steps, each step two A
// tiles (rows mb..mb+31 of A', 32 k) and two B tiles (k-pairs k/2..k/2+15 of the two
// 16-column blocks of B'), 4 TDPBF16PS, into cb (row stride ldcb floats; see
// amx_block_begin). The accumulators start from zero, or with acc from cb.
TILE_TARGET static void amx_tiles_block(const uint16_t * a, const uint16_t * b, int64_t M, int64_t Kp,
                                        int64_t k0, int64_t k1, int64_t mb, int64_t nb, float * cb, size_t ldcb,
                                        bool acc) {
    (void) M; // the padded rows of A' are zeros: a tile computes them harmlessly
    const uint16_t * a0 = a + mb*Kp;       // A' rows mb..mb+15
    const uint16_t * a1 = a0 + 16*Kp;      // A' rows mb+16..mb+31
    const uint16_t * b0 = b + nb*Kp;       // B' block nb/16: (Kp/2, 16, 2) = 16*Kp elements
    const uint16_t * b1 = b0 + 16*Kp;      // B' block nb/16 + 1
    const size_t lda = Kp*sizeof(uint16_t); // bytes between rows of A'
    const size_t ldb = ldcb*sizeof(float);  // bytes between rows of cb

    if (acc) {
        TILE_LOAD(TC00, cb, ldb);
        TILE_LOAD(TC01, cb + 16, ldb);
        TILE_LOAD(TC10, cb + 16*ldcb, ldb);
        TILE_LOAD(TC11, cb + 16*ldcb + 16, ldb);
    } else {
        TILE_ZERO(TC00); TILE_ZERO(TC01); TILE_ZERO(TC10); TILE_ZERO(TC11);
    }
    for (int64_t k = k0; k < k1; k += 32) {
        TILE_LOAD(TA0, a0 + k, lda);
        TILE_LOAD(TA1, a1 + k, lda);
        TILE_LOAD(TB0, b0 + k*16, AMX_COLSB); // k-pair k/2 starts at (k/2)*32 elements
        TILE_LOAD(TB1, b1 + k*16, AMX_COLSB);
        TILE_DPBF16PS(TC00, TA0, TB0);
        TILE_DPBF16PS(TC01, TA0, TB1);
        TILE_DPBF16PS(TC10, TA1, TB0);
        TILE_DPBF16PS(TC11, TA1, TB1);
    }
    TILE_STORE(TC00, cb, ldb);
    TILE_STORE(TC01, cb + 16, ldb);
    TILE_STORE(TC10, cb + 16*ldcb, ldb);
    TILE_STORE(TC11, cb + 16*ldcb + 16, ldb);
}

TILE_TARGET static void amx_tiles_gemm(const uint16_t * a, const uint16_t * b, int64_t M, int64_t N, int64_t K,
                                       int64_t n0, int64_t n1, float * c, size_t ldc, bool acc) {
    struct amx_tile_config cfg;
    amx_config_init(&cfg);
    TILE_LOADCONFIG(&cfg);
    amx_gemm_blocked(amx_tiles_block, a, b, M, N, K, n0, n1, c, ldc, acc);
    TILE_RELEASE();
}

#endif

#if AMX_BF16_AVX512

// One 32 x 32 block of C at (mb, nb) on AVX512-BF16 registers: per 8 rows, 16 zmm f32
// accumulators (8 rows x the two 16-column blocks of B'); each k-pair loads the pair's row
// of both B' blocks (16 columns x 2 bf16 each, one zmm) and broadcasts each row's pair of
// A', VDPBF16PS adding both products. The same packed A' and B' as the tiles.
static void amx_avx512_block(const uint16_t * a, const uint16_t * b, int64_t M, int64_t Kp, int64_t k0, int64_t k1,
                             int64_t mb, int64_t nb, float * cb, size_t ldcb, bool acc) {
    const uint16_t * b0 = b + nb*Kp;
    const uint16_t * b1 = b0 + 16*Kp;
    for (int64_t r0 = 0; r0 < 32 && mb + r0 < M; r0 += 8) {
        __m512 c0[8], c1[8];
        for (int r = 0; r < 8; r++) {
            c0[r] = acc ? _mm512_loadu_ps(cb + (r0 + r)*ldcb)      : _mm512_setzero_ps();
            c1[r] = acc ? _mm512_loadu_ps(cb + (r0 + r)*ldcb + 16) : _mm512_setzero_ps();
        }
        const uint16_t * ar = a + (mb + r0)*Kp;
        for (int64_t p = k0/2; p < k1/2; p++) {
            const __m512bh w0 = (__m512bh) _mm512_loadu_si512(b0 + p*32);
            const __m512bh w1 = (__m512bh) _mm512_loadu_si512(b1 + p*32);
            for (int r = 0; r < 8; r++) {
                uint32_t pair; // A'[row][2p], A'[row][2p + 1]
                memcpy(&pair, ar + r*Kp + 2*p, sizeof(pair));
                const __m512bh x = (__m512bh) _mm512_set1_epi32((int) pair);
                c0[r] = _mm512_dpbf16_ps(c0[r], x, w0);
                c1[r] = _mm512_dpbf16_ps(c1[r], x, w1);
            }
        }
        for (int r = 0; r < 8; r++) {
            _mm512_storeu_ps(cb + (r0 + r)*ldcb,      c0[r]);
            _mm512_storeu_ps(cb + (r0 + r)*ldcb + 16, c1[r]);
        }
    }
}

#endif

void ggml_amx_bf16_gemm(enum ggml_amx_bf16_engine engine, const uint16_t * a, const uint16_t * b,
                        int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n1, float * c, size_t ldc, bool acc) {
    if (n0 >= n1 || M <= 0) {
        return;
    }
    switch (engine) {
#if AMX_BF16_TILES
        case GGML_AMX_BF16_TILES:
            amx_tiles_gemm(a, b, M, N, K, n0, n1, c, ldc, acc);
            return;
#endif
#if AMX_BF16_AVX512
        case GGML_AMX_BF16_AVX512:
            amx_gemm_blocked(amx_avx512_block, a, b, M, N, K, n0, n1, c, ldc, acc);
            return;
#endif
        default:
            break;
    }
    fprintf(stderr, "ggml_amx_bf16_gemm: engine %d is not in this build\n", (int) engine);
    abort();
}


// ---- may the tile path run here ----

bool ggml_amx_bf16_compiled(void) {
    return AMX_BF16_TILES;
}

bool ggml_amx_bf16_emulated(void) {
#if defined(GGML_AMX_BF16_EMULATE)
    return true;
#else
    return false;
#endif
}

#if AMX_BF16_TILES && !defined(GGML_AMX_BF16_EMULATE)

#define AMX_ARCH_GET_XCOMP_PERM 0x1022
#define AMX_ARCH_REQ_XCOMP_PERM 0x1023
#define AMX_XFEATURE_XTILEDATA  18

// CPUID, then Linux's permission for the tile state.
static bool amx_hardware(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) {
        return false;
    }
    const bool amx_bf16 = (edx >> 22) & 1;
    const bool amx_tile = (edx >> 24) & 1;
    if (!amx_bf16 || !amx_tile) {
        return false;
    }
    // Linux keeps the 8 KiB tile state out of a process until it asks (since 5.16); the
    // permission holds for every thread of the process, so asking once is enough.
    if (syscall(SYS_arch_prctl, AMX_ARCH_REQ_XCOMP_PERM, AMX_XFEATURE_XTILEDATA) != 0) {
        return false;
    }
    unsigned long perm = 0;
    if (syscall(SYS_arch_prctl, AMX_ARCH_GET_XCOMP_PERM, &perm) != 0) {
        return false;
    }
    return (perm >> AMX_XFEATURE_XTILEDATA) & 1;
}

#else

// The emulated tiles run anywhere; without the tile path nothing runs.
static bool amx_hardware(void) {
    return AMX_BF16_TILES;
}

#endif

static bool amx_decide(void) {
    const char * env = getenv("PYGGML_AMX");
    if (env && strcmp(env, "0") == 0) {
        return false; // switched off, e.g. for an A/B measurement
    }
    return amx_hardware();
}

bool ggml_amx_bf16_usable(void) {
    // -1: not decided yet. Two threads racing both decide the same; the request is idempotent.
    static int state = -1;
    int s = __atomic_load_n(&state, __ATOMIC_ACQUIRE);
    if (s < 0) {
        s = amx_decide() ? 1 : 0;
        __atomic_store_n(&state, s, __ATOMIC_RELEASE);
    }
    return s == 1;
}

bool ggml_amx_bf16_avx512_compiled(void) {
    return AMX_BF16_AVX512;
}

static enum ggml_amx_bf16_engine amx_engine_decide(void) {
    const char * env = getenv("PYGGML_BF16_GEMM");
    if (env && strcmp(env, "0") == 0) {
        return GGML_AMX_BF16_NONE; // switched off, e.g. for an A/B measurement
    }
    if (ggml_amx_bf16_usable()) {
        return GGML_AMX_BF16_TILES;
    }
    return AMX_BF16_AVX512 ? GGML_AMX_BF16_AVX512 : GGML_AMX_BF16_NONE;
}

enum ggml_amx_bf16_engine ggml_amx_bf16_engine(void) {
    // -1: not decided yet; racing threads decide the same
    static int state = -1;
    int s = __atomic_load_n(&state, __ATOMIC_ACQUIRE);
    if (s < 0) {
        s = (int) amx_engine_decide();
        __atomic_store_n(&state, s, __ATOMIC_RELEASE);
    }
    return (enum ggml_amx_bf16_engine) s;
}
