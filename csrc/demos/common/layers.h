// Layer helpers shared by the demos, in ggml's ne order (ne[0] = features).
#pragma once

#include "ggml.h"

namespace demo {

// y = W x + b.  W [n_in, n_out], b [n_out], x [n_in, ...] -> [n_out, ...]
ggml_tensor * linear(ggml_context * ctx, ggml_tensor * x, ggml_tensor * w, ggml_tensor * b);

// LayerNorm over ne[0] with affine gain and bias.  x [n, ...], g/b [n] -> [n, ...]
ggml_tensor * layer_norm(ggml_context * ctx, ggml_tensor * x, ggml_tensor * g, ggml_tensor * b, float eps);

} // namespace demo
