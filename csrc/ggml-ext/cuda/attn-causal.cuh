#include "common.cuh"

// GGML_OP_ATTN_CAUSAL and its backward (patch 0016); see docs/ops/attn_causal.md
void ggml_cuda_op_attn_causal(ggml_backend_cuda_context & ctx, ggml_tensor * dst);
void ggml_cuda_op_attn_causal_back(ggml_backend_cuda_context & ctx, ggml_tensor * dst);
