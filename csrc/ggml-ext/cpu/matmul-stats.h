#pragma once

// Counters behind ggml_cpu_matmul_stat: thread 0 of each product records the kernel it ran.

#include "ggml-cpu.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

extern int64_t ggml_cpu_matmul_counts[2][GGML_CPU_MATMUL_KERNEL_COUNT][GGML_TYPE_COUNT];
extern int64_t ggml_cpu_matmul_macs  [2][GGML_CPU_MATMUL_KERNEL_COUNT][GGML_TYPE_COUNT];

// op: 0 MUL_MAT, 1 OUT_PROD. Call from one thread per product (ith == 0).
static inline void ggml_cpu_matmul_record(int op, enum ggml_cpu_matmul_kernel kernel,
                                          enum ggml_type src0_type, int64_t macs) {
    __atomic_fetch_add(&ggml_cpu_matmul_counts[op][kernel][src0_type], 1,    __ATOMIC_RELAXED);
    __atomic_fetch_add(&ggml_cpu_matmul_macs  [op][kernel][src0_type], macs, __ATOMIC_RELAXED);
}

#ifdef __cplusplus
}
#endif
