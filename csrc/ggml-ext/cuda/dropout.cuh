#include "common.cuh"

#define CUDA_DROPOUT_BLOCK_SIZE 256

void ggml_cuda_op_dropout(ggml_backend_cuda_context & ctx, ggml_tensor * dst);
