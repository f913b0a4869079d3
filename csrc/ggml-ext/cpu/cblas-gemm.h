#pragma once

// f32 matrix products of MUL_MAT and OUT_PROD through a CBLAS sgemm, called from inside the
// CPU backend's own threads: each thread runs a single-threaded sgemm on its share of the
// output, so the BLAS library's kernels are used without a second thread pool competing
// for the cores (which is what the separate BLAS backend does).
//
// Enabled with GGML_CPU_CBLAS. The library's own threading must be set to 1
// (ggml_cpu_cblas_init does this for OpenBLAS).

#ifdef GGML_CPU_CBLAS

#include <cblas.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

// Below this many multiply-adds per thread, ggml's own kernels are as fast (small
// matrices are dominated by the sgemm's packing).
#define GGML_CPU_CBLAS_MIN_WORK (32*32*32)

// Row bands of a split product start at multiples of this many rows, so that a row sits
// at the same place in the sgemm's register tiles whatever the thread count: each of its
// elements is then summed in the same order, and the result is bit-identical for any
// number of threads. It must be a multiple of the kernel's tile height (rows of a
// row-major C). OpenBLAS's Haswell kernels (which it also runs on AMD Zen 2/3) tile by 12:
// measured, bands at multiples of 12 leave every bit unchanged while multiples of 4, 8 or
// 16 change the last bits of the rows next to a band edge. Other kernels get 48, a
// multiple of every tile height from 1 to 16 and of 24.
extern int64_t ggml_cpu_cblas_row_grain;

static inline void ggml_cpu_cblas_init(void) {
    openblas_set_num_threads(1);
    const char * core = openblas_get_corename();
    ggml_cpu_cblas_row_grain = core != NULL && strcmp(core, "Haswell") == 0 ? 12 : 48;
}

// The nearest multiple of the row grain to rows*ith/nth (0 for ith = 0, rows for ith = nth).
static inline int64_t ggml_cpu_cblas_band_edge(int64_t rows, int ith, int nth) {
    if (ith >= nth) {
        return rows;
    }
    const int64_t g    = ggml_cpu_cblas_row_grain;
    const int64_t edge = (rows*ith/nth + g/2)/g*g;
    return edge < rows ? edge : rows;
}

// A logical rows x cols f32 matrix with element strides (sr between rows, sc between
// columns) as a row-major CBLAS operand: no transpose when columns are contiguous,
// transposed when rows are. Returns false if neither stride is 1.
static inline bool ggml_cpu_cblas_operand(int64_t rows, int64_t cols, int64_t sr, int64_t sc,
                                          enum CBLAS_TRANSPOSE * trans, int64_t * ld) {
    if (sc == 1 && (rows == 1 || sr >= cols)) {
        *trans = CblasNoTrans;
        *ld    = rows == 1 ? (cols > 0 ? cols : 1) : sr;
        return true;
    }
    if (sr == 1 && (cols == 1 || sc >= rows)) {
        *trans = CblasTrans;
        *ld    = cols == 1 ? (rows > 0 ? rows : 1) : sc;
        return true;
    }
    return false;
}

// Whether C (M x N) = A (M x K) * B (K x N) can be handed to the sgemm, with A and B given
// by their element strides: each needs a unit stride along its rows or its columns.
static inline bool ggml_cpu_cblas_fits(int64_t M, int64_t N, int64_t K,
                                       int64_t a_sr, int64_t a_sc, int64_t b_sr, int64_t b_sc) {
    enum CBLAS_TRANSPOSE t;
    int64_t ld;
    return ggml_cpu_cblas_operand(M, K, a_sr, a_sc, &t, &ld) &&
           ggml_cpu_cblas_operand(K, N, b_sr, b_sc, &t, &ld);
}

// C (M x N, row stride ldc) = A (M x K) * B (K x N) + beta C; the operands must fit (above).
static inline void ggml_cpu_cblas_gemm(int64_t M, int64_t N, int64_t K,
                                       const float * a, int64_t a_sr, int64_t a_sc,
                                       const float * b, int64_t b_sr, int64_t b_sc,
                                       float beta, float * c, int64_t ldc) {
    enum CBLAS_TRANSPOSE ta, tb;
    int64_t lda, ldb;
    ggml_cpu_cblas_operand(M, K, a_sr, a_sc, &ta, &lda);
    ggml_cpu_cblas_operand(K, N, b_sr, b_sc, &tb, &ldb);
    if (M > 0 && N > 0) {
        cblas_sgemm(CblasRowMajor, ta, tb, (int) M, (int) N, (int) K,
                    1.0f, a, (int) lda, b, (int) ldb, beta, c, (int) ldc);
    }
}

// Whether a product of nbatch (M x K) * (K x N) matrices is worth the sgemm on nth threads.
static inline bool ggml_cpu_cblas_worth(int64_t nbatch, int64_t M, int64_t N, int64_t K, int nth) {
    if (M < 16 || N < 16 || K < 16) {
        return false;
    }
    return nbatch*M*N*K >= (int64_t) nth*GGML_CPU_CBLAS_MIN_WORK;
}

// The share of thread ith: whole batches [*b0, *b1) when they divide evenly among the
// threads, otherwise rows [*r0, *r1) of every batch, with band edges on the row grain.
static inline void ggml_cpu_cblas_share(int ith, int nth, int64_t nbatch, int64_t M,
                                        int64_t * b0, int64_t * b1, int64_t * r0, int64_t * r1) {
    if (nbatch % nth == 0) {
        *b0 = nbatch*ith/nth;
        *b1 = nbatch*(ith + 1)/nth;
        *r0 = 0;
        *r1 = M;
    } else {
        *b0 = 0;
        *b1 = nbatch;
        *r0 = ggml_cpu_cblas_band_edge(M, ith, nth);
        *r1 = ggml_cpu_cblas_band_edge(M, ith + 1, nth);
    }
}

#ifdef __cplusplus
}
#endif

#endif // GGML_CPU_CBLAS
