#include "mlp_model.h"

#include "layers.h"

#include <cmath>
#include <string>

namespace demo {

namespace {
constexpr float kLnEps = 1e-5f;
}

MlpModel::MlpModel(Weights & w, int n_in, int n_hidden, int n_layers, int n_out) {
    int n_prev = n_in;
    for (int l = 0; l < n_layers; ++l) {
        const std::string p = "hidden." + std::to_string(l) + ".";
        const int64_t ne_w[2] = {n_prev, n_hidden};
        const int64_t ne_v[1] = {n_hidden};
        hidden_.push_back({
            w.new_tensor((p + "weight").c_str(), 2, ne_w, true),
            w.new_tensor((p + "bias").c_str(),   1, ne_v, true),
            w.new_tensor((p + "ln.weight").c_str(), 1, ne_v, true),
            w.new_tensor((p + "ln.bias").c_str(),   1, ne_v, true),
        });
        n_prev = n_hidden;
    }
    const int64_t ne_hw[2] = {n_prev, n_out};
    const int64_t ne_hb[1] = {n_out};
    head_w_ = w.new_tensor("head.weight", 2, ne_hw, true);
    head_b_ = w.new_tensor("head.bias",   1, ne_hb, true);
}

void MlpModel::init(Rng & rng) {
    for (const Hidden & h : hidden_) {
        Weights::fill_normal(h.w, rng, std::sqrt(2.0f / float(h.w->ne[0])));
        Weights::fill_const(h.b, 0.0f);
        Weights::fill_const(h.ln_g, 1.0f);
        Weights::fill_const(h.ln_b, 0.0f);
    }
    Weights::fill_normal(head_w_, rng, 1.0f / std::sqrt(float(head_w_->ne[0])));
    Weights::fill_const(head_b_, 0.0f);
}

ggml_tensor * MlpModel::forward(ggml_context * ctx, ggml_tensor * x) const {
    for (const Hidden & h : hidden_) {
        x = linear(ctx, x, h.w, h.b);                 // [n_hidden, n_batch]
        x = layer_norm(ctx, x, h.ln_g, h.ln_b, kLnEps); // exercises NORM_BACK
        x = ggml_gelu(ctx, x);                          // exercises GELU_BACK
    }
    return linear(ctx, x, head_w_, head_b_); // [n_out, n_batch]
}

} // namespace demo
