#pragma once

// A bf16 GEMM on AMX tiles (AMX-TILE + AMX-BF16, Intel Xeon since Sapphire Rapids), or on
// AVX512-BF16 registers on CPUs without tiles (AMD Zen 4 and 5), for MUL_MAT with a bf16
// src0, and for OUT_PROD whose graph allows bf16 operands (ggml_out_prod_allow_bf16: the
// backward products of a bf16 forward product):
//
//   C[m][n] = sum_k A[m][k] * W[n][k]      A (M, K) and W (N, K) rounded to bf16, C: f32 (M, N)
//
// accumulated in f32 by TDPBF16PS. The functions here know nothing of ggml tensors or
// threads (ggml-cpu.c drives them), so the same source also builds with
// -DGGML_AMX_BF16_EMULATE, where every tile instruction is plain C on eight emulated tile
// registers: tests/cpp checks that build on any CPU.
//
// Work layout (all bf16 as uint16_t bit patterns, zero-padded so every tile is full):
//   A' (Mp, Kp)               rows of A, row stride Kp
//   B' (Np/16, Kp/2, 16, 2)   W in the VNNI pair layout: block j, k-pair p holds
//                             W[16j + c][2p + e] at [j][p][c][e]
// with Mp, Np, Kp = M, N, K rounded up to GGML_AMX_BF16_BLOCK.

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Rows and columns of C are computed in 32 x 32 blocks (2 x 2 tiles of 16 x 16 f32), and
// K in steps of 32 bf16 (one 64-byte tile row).
#define GGML_AMX_BF16_BLOCK 32

static inline int64_t ggml_amx_bf16_pad(int64_t x) {
    return (x + GGML_AMX_BF16_BLOCK - 1) / GGML_AMX_BF16_BLOCK * GGML_AMX_BF16_BLOCK;
}

// Bytes of work buffer for A' and B' (each starting on a 64-byte boundary of a buffer that
// itself may start anywhere).
size_t ggml_amx_bf16_work_size(int64_t M, int64_t N, int64_t K);

// Splits the work buffer into A' and B'.
void ggml_amx_bf16_work_split(void * work, int64_t M, int64_t N, int64_t K, uint16_t ** a, uint16_t ** b);

// Row m of A' from an f32 row x (K): rounded to bf16 to nearest even (as ggml's
// fp32->bf16), zero-padded to Kp. x == NULL gives a row of zeros (the rows M..Mp-1).
void ggml_amx_bf16_pack_a_f32(const float * x, int64_t K, uint16_t * row);
// The same from a row that already is bf16.
void ggml_amx_bf16_pack_a_bf16(const uint16_t * x, int64_t K, uint16_t * row);
// One of the two by the row's type: f32 (x_f32) or bf16.
void ggml_amx_bf16_pack_a_row(const void * x, bool x_f32, int64_t K, uint16_t * row);

// Rows [m0, m1) of A' (rows M..Mp-1 zeros) from A (M, K) whose element (m, k) is at byte
// x + m*sm + k*sk: f32 (x_f32) rounded as above, or bf16. Rows with contiguous k are packed
// row by row; otherwise (a transposed operand, as OUT_PROD's) 16 rows at a time, reading
// along m.
void ggml_amx_bf16_pack_a(const void * x, bool x_f32, size_t sm, size_t sk, int64_t M, int64_t K,
                          int64_t m0, int64_t m1, uint16_t * a);

// Columns [n0, n1) of B' (multiples of 16, n1 <= Np) from W (N, K) whose element (n, k) is
// at byte w + n*sn + k*sk: f32 (w_f32) rounded to bf16 as above, or bf16. Any strides: the
// weight of a MUL_MAT (contiguous k) or OUT_PROD's first operand (contiguous n).
void ggml_amx_bf16_pack_b(const void * w, bool w_f32, size_t sn, size_t sk, int64_t N, int64_t K,
                          int64_t n0, int64_t n1, uint16_t * b);

// The columns [n0, n1) of N (block-aligned, as ggml_amx_bf16_share gives them) that thread
// ith of nth owns, both for packing B' and for computing C. Each output element's k-sum
// runs in ascending k whatever the split, so results do not depend on nth.
void ggml_amx_bf16_share(int ith, int nth, int64_t N, int64_t * n0, int64_t * n1);

// What runs the GEMM: the AMX tiles (or their C emulation), or, on CPUs without tiles,
// AVX512-BF16 registers (VDPBF16PS on the same packed A' and B'), where the build targets
// them.
enum ggml_amx_bf16_engine {
    GGML_AMX_BF16_NONE,   // neither: the products keep ggml's other kernels
    GGML_AMX_BF16_TILES,
    GGML_AMX_BF16_AVX512,
};

// C[m][n] for all m < M and n in [n0, min(n1, N)) on engine (one this build has); C row
// stride ldc floats. A' and B' as packed above; the columns [n0, n1) of B' must be packed.
// acc: C's old values are the sums' starting values (C += A W^T, as OUT_PROD into a
// gradient accumulator), else C is overwritten. Each element's sum runs in ascending k on
// either engine.
void ggml_amx_bf16_gemm(enum ggml_amx_bf16_engine engine, const uint16_t * a, const uint16_t * b,
                        int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n1, float * c, size_t ldc, bool acc);

// Whether the tile path can run in this process: PYGGML_AMX is not "0", and it is compiled
// in, the CPU has AMX-TILE and AMX-BF16 (CPUID.(7,0):EDX bits 24 and 22) and Linux granted
// the tile state (arch_prctl ARCH_REQ_XCOMP_PERM); in the emulated build, PYGGML_AMX
// alone decides. Decided once per process.
bool ggml_amx_bf16_usable(void);

// Whether this build contains the tile path (x86-64 Linux, GCC >= 11 or Clang >= 12; or
// the emulation), and whether its tiles are the C emulation (GGML_AMX_BF16_EMULATE: slow,
// for checking the whole MUL_MAT path on a CPU without AMX).
bool ggml_amx_bf16_compiled(void);
bool ggml_amx_bf16_emulated(void);
// Whether this build contains the AVX512-BF16 engine (it targets AVX512-BF16).
bool ggml_amx_bf16_avx512_compiled(void);

// The engine this process runs the GEMM on: the tiles where ggml_amx_bf16_usable(), else
// AVX512-BF16 where compiled in, else none; PYGGML_BF16_GEMM=0 gives none (products on
// tinyBLAS and, for OUT_PROD, in f32). Decided once per process.
enum ggml_amx_bf16_engine ggml_amx_bf16_engine(void);

#ifdef __cplusplus
}
#endif
