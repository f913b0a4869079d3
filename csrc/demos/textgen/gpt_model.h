// A GPT-2 style char-level model: token + learned position embeddings, pre-LayerNorm
// blocks of causal multi-head attention and a 4x MLP with tanh GELU, final
// LayerNorm, lm_head tied to the token embedding.
#pragma once

#include "rng.h"
#include "weights.h"

#include <string>
#include <vector>

namespace demo {

struct GptConfig {
    int vocab   = 0;
    int block   = 64;  // context length
    int n_layer = 2;
    int n_embd  = 64;
    int n_head  = 4;
};

// Range checks; empty when cfg is usable.
std::string validate(const GptConfig & cfg);

class GptModel {
public:
    // Creates the parameters (named as in GPT-2's checkpoint) in weights().
    explicit GptModel(const GptConfig & cfg);

    const GptConfig & config() const { return cfg_; }
    Weights & weights() { return w_; }
    const Weights & weights() const { return w_; }

    // After weights().allocate(): GPT-2's init (N(0, 0.02), residual projections
    // scaled by 1/sqrt(2 n_layer), zero biases, identity LayerNorms).
    void init(Rng & rng);

    // tokens [block, B] i32 -> logits [vocab, block*B]. Always the full block: the
    // sampler right-pads shorter contexts, which causal attention never looks at.
    ggml_tensor * forward(ggml_context * ctx, ggml_tensor * tokens) const;

private:
    struct Block {
        ggml_tensor * ln1_g, * ln1_b;   // [C]
        ggml_tensor * q_w, * k_w, * v_w; // [C, C]: GPT-2's c_attn split in three
        ggml_tensor * q_b, * k_b, * v_b; // [C]
        ggml_tensor * proj_w, * proj_b;  // [C, C], [C]
        ggml_tensor * ln2_g, * ln2_b;   // [C]
        ggml_tensor * fc_w, * fc_b;     // [C, 4C], [4C]
        ggml_tensor * out_w, * out_b;   // [4C, C], [C]
    };
    ggml_tensor * param(const std::string & name, int64_t ne0, int64_t ne1 = 0);
    ggml_tensor * attention(ggml_context * ctx, const Block & b, ggml_tensor * x) const;

    GptConfig cfg_;
    Weights w_;
    ggml_tensor * wte_; // [C, vocab], also the lm_head
    ggml_tensor * wpe_; // [C, block]
    std::vector<Block> blocks_;
    ggml_tensor * lnf_g_, * lnf_b_; // [C]
};

} // namespace demo
