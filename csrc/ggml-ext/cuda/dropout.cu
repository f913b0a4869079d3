#include "dropout.cuh"

// The same hash as the CPU kernel (ggml_compute_forward_dropout in ggml-cpu/ops.cpp), so a
// mask is identical on every backend: element i of a tensor is kept when
// (uint32) (mix64(key + (i + 1) * 0x9E3779B97F4A7C15) >> 32) >= threshold, with
// key = mix64(mix64(seed << 32 | stream) ^ counter) and mix64 splitmix64's output function.
static __device__ __forceinline__ uint64_t dropout_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// state (seed, counter) is read on the device: the graph needs no update per step
static __global__ void dropout_f32(const float * x, const int32_t * state, float * dst, const int64_t k,
                                   const uint32_t threshold, const float scale, const int32_t stream) {
    const uint64_t seed    = (uint32_t) state[0];
    const uint64_t counter = (uint32_t) state[1];
    const uint64_t key     = dropout_mix64(dropout_mix64((seed << 32) | (uint32_t) stream) ^ counter);
    const uint64_t gamma   = 0x9E3779B97F4A7C15ull;
    for (int64_t i = int64_t(blockDim.x)*blockIdx.x + threadIdx.x; i < k; i += int64_t(blockDim.x)*gridDim.x) {
        const uint32_t r = (uint32_t) (dropout_mix64(key + (uint64_t) (i + 1)*gamma) >> 32);
        dst[i] = x[i] * (r >= threshold ? scale : 0.0f); // a NaN in a dropped element still shows
    }
}

void ggml_cuda_op_dropout(ggml_backend_cuda_context & ctx, ggml_tensor * dst) {
    const ggml_tensor * src0 = dst->src[0];
    const ggml_tensor * src1 = dst->src[1];

    GGML_ASSERT(src0->type == GGML_TYPE_F32 && dst->type == GGML_TYPE_F32);
    GGML_ASSERT(src1->type == GGML_TYPE_I32 && ggml_nelements(src1) == 2);
    // contiguous: the flat index is the logical element index the mask is defined on
    GGML_ASSERT(ggml_is_contiguous(src0) && ggml_is_contiguous(dst));

    uint32_t threshold;
    float    scale;
    memcpy(&threshold, (const int32_t *) dst->op_params + 0, sizeof(uint32_t));
    memcpy(&scale,     (const int32_t *) dst->op_params + 1, sizeof(float));
    const int32_t stream = ggml_get_op_params_i32(dst, 2);

    const int64_t k = ggml_nelements(dst);
    // grid-stride loop: cap the grid, the kernel covers the rest
    const int64_t num_blocks = std::min<int64_t>((k + CUDA_DROPOUT_BLOCK_SIZE - 1) / CUDA_DROPOUT_BLOCK_SIZE, 65535);
    if (num_blocks == 0) {
        return;
    }
    dropout_f32<<<num_blocks, CUDA_DROPOUT_BLOCK_SIZE, 0, ctx.stream()>>>(
        (const float *) src0->data, (const int32_t *) src1->data, (float *) dst->data, k, threshold, scale, stream);
}
