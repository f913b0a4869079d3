#include "layers.h"

namespace demo {

ggml_tensor * linear(ggml_context * ctx, ggml_tensor * x, ggml_tensor * w, ggml_tensor * b) {
    ggml_tensor * y = ggml_mul_mat(ctx, w, x); // [n_out, ...]
    return ggml_add(ctx, y, b);                // b broadcasts over the trailing dims
}

ggml_tensor * layer_norm(ggml_context * ctx, ggml_tensor * x, ggml_tensor * g, ggml_tensor * b, float eps) {
    ggml_tensor * y = ggml_norm(ctx, x, eps); // [n, ...], zero mean and unit variance per row
    return ggml_add(ctx, ggml_mul(ctx, y, g), b);
}

} // namespace demo
