// The MLP: n_layers x (linear -> LayerNorm -> GELU), then a linear head to logits.
#pragma once

#include "rng.h"
#include "weights.h"

#include <vector>

namespace demo {

class MlpModel {
public:
    // Creates the parameters in w (not yet allocated).
    MlpModel(Weights & w, int n_in, int n_hidden, int n_layers, int n_out);

    // After w.allocate(): He-style init for GELU layers, identity LayerNorms.
    void init(Rng & rng);

    // x [n_in, n_batch] -> logits [n_out, n_batch]
    ggml_tensor * forward(ggml_context * ctx, ggml_tensor * x) const;

    // Upper bound on the tensors the constructor creates, for sizing Weights.
    static int max_tensors(int n_layers) { return 4 * n_layers + 2; }

private:
    struct Hidden {
        ggml_tensor * w;    // [n_prev, n_hidden]
        ggml_tensor * b;    // [n_hidden]
        ggml_tensor * ln_g; // [n_hidden]
        ggml_tensor * ln_b; // [n_hidden]
    };
    std::vector<Hidden> hidden_;
    ggml_tensor * head_w_; // [n_hidden, n_out]
    ggml_tensor * head_b_; // [n_out]
};

} // namespace demo
