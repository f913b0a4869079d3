#include "gpt_model.h"

#include "layers.h"

#include <cmath>

namespace demo {

namespace {
constexpr float kLnEps = 1e-5f;
constexpr int kTensorsPerBlock = 16;
}

std::string validate(const GptConfig & c) {
    if (c.vocab < 1 || c.vocab > 256) return "vocabulary size must be in [1, 256]";
    if (c.block < 1 || c.block > 4096) return "block size must be in [1, 4096]";
    // ggml-opt's static training graphs hold at most GGML_DEFAULT_GRAPH_SIZE (2048)
    // tensors, forward, backward and AdamW together; 8 blocks fit, 9 do not.
    if (c.n_layer < 1 || c.n_layer > 8) return "layers must be in [1, 8]";
    if (c.n_embd < 1 || c.n_embd > 4096) return "width must be in [1, 4096]";
    if (c.n_head < 1 || c.n_embd % c.n_head != 0) return "heads must be >= 1 and divide the width";
    return "";
}

ggml_tensor * GptModel::param(const std::string & name, int64_t ne0, int64_t ne1) {
    const int64_t ne[2] = {ne0, ne1};
    return w_.new_tensor(name.c_str(), ne1 ? 2 : 1, ne, true);
}

GptModel::GptModel(const GptConfig & cfg)
    : cfg_(cfg), w_(kTensorsPerBlock * cfg.n_layer + 4) {
    const int64_t C = cfg.n_embd;
    wte_ = param("wte", C, cfg.vocab);
    wpe_ = param("wpe", C, cfg.block);
    for (int l = 0; l < cfg.n_layer; ++l) {
        const std::string p = "h." + std::to_string(l) + ".";
        Block b;
        b.ln1_g  = param(p + "ln_1.weight", C);
        b.ln1_b  = param(p + "ln_1.bias", C);
        b.q_w    = param(p + "attn.q.weight", C, C);
        b.q_b    = param(p + "attn.q.bias", C);
        b.k_w    = param(p + "attn.k.weight", C, C);
        b.k_b    = param(p + "attn.k.bias", C);
        b.v_w    = param(p + "attn.v.weight", C, C);
        b.v_b    = param(p + "attn.v.bias", C);
        b.proj_w = param(p + "attn.c_proj.weight", C, C);
        b.proj_b = param(p + "attn.c_proj.bias", C);
        b.ln2_g  = param(p + "ln_2.weight", C);
        b.ln2_b  = param(p + "ln_2.bias", C);
        b.fc_w   = param(p + "mlp.c_fc.weight", C, 4 * C);
        b.fc_b   = param(p + "mlp.c_fc.bias", 4 * C);
        b.out_w  = param(p + "mlp.c_proj.weight", 4 * C, C);
        b.out_b  = param(p + "mlp.c_proj.bias", C);
        blocks_.push_back(b);
    }
    lnf_g_ = param("ln_f.weight", C);
    lnf_b_ = param("ln_f.bias", C);
}

void GptModel::init(Rng & rng) {
    const float std = 0.02f;
    const float std_resid = std / std::sqrt(2.0f * float(cfg_.n_layer));
    Weights::fill_normal(wte_, rng, std);
    Weights::fill_normal(wpe_, rng, std);
    for (const Block & b : blocks_) {
        for (ggml_tensor * g : {b.ln1_g, b.ln2_g}) Weights::fill_const(g, 1.0f);
        for (ggml_tensor * w : {b.q_w, b.k_w, b.v_w, b.fc_w}) Weights::fill_normal(w, rng, std);
        for (ggml_tensor * w : {b.proj_w, b.out_w}) Weights::fill_normal(w, rng, std_resid);
        for (ggml_tensor * z : {b.ln1_b, b.ln2_b, b.q_b, b.k_b, b.v_b, b.proj_b, b.fc_b, b.out_b}) {
            Weights::fill_const(z, 0.0f);
        }
    }
    Weights::fill_const(lnf_g_, 1.0f);
    Weights::fill_const(lnf_b_, 0.0f);
}

ggml_tensor * GptModel::attention(ggml_context * ctx, const Block & b, ggml_tensor * x) const {
    // x [C, T, B]
    const int64_t C = x->ne[0], T = x->ne[1], B = x->ne[2];
    const int64_t H = cfg_.n_head, D = C / H;

    // [C, T, B] -> [D, H, T, B] -> [D, T, H, B]: one contiguous [D, T] matrix per head.
    auto heads = [&](ggml_tensor * w, ggml_tensor * bias) {
        ggml_tensor * t = ggml_reshape_4d(ctx, linear(ctx, x, w, bias), D, H, T, B);
        return ggml_cont(ctx, ggml_permute(ctx, t, 0, 2, 1, 3));
    };
    ggml_tensor * q = heads(b.q_w, b.q_b); // [D, T, H, B]
    ggml_tensor * k = heads(b.k_w, b.k_b); // [D, T, H, B]
    ggml_tensor * v = ggml_reshape_4d(ctx, linear(ctx, x, b.v_w, b.v_b), D, H, T, B);
    v = ggml_cont(ctx, ggml_permute(ctx, v, 1, 2, 0, 3)); // [T, D, H, B], so v^T is the matmul's src0

    ggml_tensor * att = ggml_mul_mat(ctx, k, q);              // [T_k, T_q, H, B] = k . q
    att = ggml_scale(ctx, att, 1.0f / std::sqrt(float(D)));
    att = ggml_diag_mask_inf(ctx, att, 0);                   // query t sees keys <= t
    att = ggml_soft_max(ctx, att);                           // over T_k

    ggml_tensor * y = ggml_mul_mat(ctx, v, att);             // [D, T_q, H, B]
    y = ggml_cont(ctx, ggml_permute(ctx, y, 0, 2, 1, 3));     // [D, H, T, B]
    y = ggml_reshape_3d(ctx, y, C, T, B);                    // heads concatenated
    return linear(ctx, y, b.proj_w, b.proj_b);               // [C, T, B]
}

ggml_tensor * GptModel::forward(ggml_context * ctx, ggml_tensor * tokens) const {
    // tokens [T, B]
    const int64_t C = cfg_.n_embd, T = tokens->ne[0], B = tokens->ne[1];

    ggml_tensor * ids = ggml_reshape_1d(ctx, tokens, T * B);
    ggml_tensor * x = ggml_reshape_3d(ctx, ggml_get_rows(ctx, wte_, ids), C, T, B); // [C, T, B]
    x = ggml_add(ctx, x, wpe_); // wpe [C, T] broadcasts over the batch

    for (const Block & b : blocks_) {
        x = ggml_add(ctx, x, attention(ctx, b, layer_norm(ctx, x, b.ln1_g, b.ln1_b, kLnEps)));
        ggml_tensor * h = layer_norm(ctx, x, b.ln2_g, b.ln2_b, kLnEps);
        h = ggml_gelu(ctx, linear(ctx, h, b.fc_w, b.fc_b)); // [4C, T, B], tanh GELU as GPT-2
        x = ggml_add(ctx, x, linear(ctx, h, b.out_w, b.out_b));
    }
    x = layer_norm(ctx, x, lnf_g_, lnf_b_, kLnEps);
    x = ggml_reshape_2d(ctx, x, C, T * B);
    return ggml_mul_mat(ctx, wte_, x); // [vocab, T*B], lm_head tied to wte
}

} // namespace demo
