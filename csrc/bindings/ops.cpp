// Graph-building ops. Each checks what ggml would assert on, so that bad input
// raises a Python exception instead of aborting the interpreter.
#include <cmath>

#include "common.h"

namespace pyggml {

namespace {

using T = TensorRef;


// The last axis dense (a stride of one element): what row-wise CPU kernels index by.
void check_dense_rows(const T & a, const char * op) {
    if (a.t->nb[0] != ggml_type_size(a.t->type)) {
        fail(std::string(op) + " needs its operand's last axis dense, got a transposed or permuted view " +
             describe(a.t) + "; apply cont() first");
    }
}

void check_can_broadcast(const T & a, const T & b, const char * op) {
    check_same_context(a, b);
    check_f32(a, op);
    check_f32(b, op);
    check_dense_rows(a, op);
    if (!ggml_can_repeat(b.t, a.t)) {
        fail(std::string(op) + ": cannot broadcast " + describe(b.t) + " to " + describe(a.t) +
             " (each dimension of the second operand must divide the first's)");
    }
}

T result(const T & like, ggml_tensor * t) { return TensorRef{like.ctx, t}; }

using Binary = ggml_tensor * (*)(ggml_context *, ggml_tensor *, ggml_tensor *);
using Unary = ggml_tensor * (*)(ggml_context *, ggml_tensor *);

void def_binary(py::module_ & m, const char * name, Binary fn) {
    m.def(name, [name, fn](const T & a, const T & b) {
        check_can_broadcast(a, b, name);
        return result(a, fn(a.ctx->op_ctx(), a.t, b.t));
    });
}

void def_unary(py::module_ & m, const char * name, Unary fn, bool needs_contiguous = false) {
    m.def(name, [name, fn, needs_contiguous](const T & a) {
        check_f32(a, name);
        if (needs_contiguous) check_contiguous(a, name);
        check_dense_rows(a, name);
        return result(a, fn(a.ctx->op_ctx(), a.t));
    });
}

void check_rows_op(const T & a, const char * op) {
    check_f32(a, op);
    check_dense_rows(a, op);
    if (!ggml_is_contiguous_rows(a.t)) {
        fail(std::string(op) + " needs contiguous rows, got " + describe(a.t) + "; apply cont() first");
    }
}

void check_eps(float eps, const char * op) {
    if (!(eps >= 0.0f) || !std::isfinite(eps)) fail(std::string(op) + ": eps must be a finite number >= 0");
}

T mul_mat(const T & a, const T & b) {
    check_same_context(a, b);
    if (a.t->type != GGML_TYPE_F32 && a.t->type != GGML_TYPE_F16 && a.t->type != GGML_TYPE_BF16 &&
        a.t->type != GGML_TYPE_Q8_0) {
        fail_type("mul_mat: a must be f32, f16, bf16 or q8_0 (a frozen weight), got " + describe(a.t));
    }
    check_f32(b, "mul_mat");
    const ggml_tensor *x = a.t, *y = b.t;
    if (x->ne[0] != y->ne[0]) {
        fail("mul_mat: the last dimensions must match (it computes b @ a^T): got a " + shape_str(x) +
             " and b " + shape_str(y));
    }
    if (y->ne[2] % x->ne[2] != 0 || y->ne[3] % x->ne[3] != 0) {
        fail("mul_mat: batch dimensions of a " + shape_str(x) + " must divide those of b " + shape_str(y));
    }
    for (const ggml_tensor * t : {x, y}) {
        if (ggml_is_transposed(t) || t->nb[0] != ggml_type_size(t->type)) {
            fail("mul_mat: operands need contiguous rows (their last axis dense), got a transposed view " +
                 describe(t) + "; apply cont() first");
        }
    }
    return result(a, ggml_mul_mat(a.ctx->op_ctx(), a.t, b.t));
}

T out_prod(const T & a, const T & b, bool allow_bf16) {
    check_same_context(a, b);
    check_f32(a, "out_prod");
    check_f32(b, "out_prod");
    const ggml_tensor *x = a.t, *y = b.t;
    if (x->ne[1] != y->ne[1]) {
        fail("out_prod: the second-to-last dimensions must match: got a " + shape_str(x) + " and b " + shape_str(y));
    }
    if (y->ne[2] % x->ne[2] != 0 || y->ne[3] % x->ne[3] != 0) {
        fail("out_prod: batch dimensions of a " + shape_str(x) + " must divide those of b " + shape_str(y));
    }
    if (ggml_is_transposed(x) || x->nb[0] != ggml_type_size(x->type)) {
        fail("out_prod: the first operand needs contiguous rows, got a transposed view " + describe(x) +
             "; apply cont() first");
    }
    ggml_tensor * out = ggml_out_prod(a.ctx->op_ctx(), a.t, b.t);
    if (allow_bf16) ggml_out_prod_allow_bf16(out);
    return result(a, out);
}

T permute(const T & a, const std::array<int, 4> & axes) {
    bool seen[4] = {false, false, false, false};
    for (int ax : axes) {
        if (ax < 0 || ax > 3 || seen[ax]) fail("permute: axes must be a permutation of 0..3");
        seen[ax] = true;
    }
    return result(a, ggml_permute(a.ctx->op_ctx(), a.t, axes[0], axes[1], axes[2], axes[3]));
}

T reshape(const T & a, const Ne & ne) {
    check_contiguous(a, "reshape");
    int64_t n = 1;
    for (int64_t d : ne) {
        if (d < 1) fail("reshape: dimensions must be >= 1");
        n *= d;
    }
    if (n != ggml_nelements(a.t)) {
        fail("reshape: cannot reshape " + describe(a.t) + " (" + std::to_string(ggml_nelements(a.t)) +
             " elements) to " + std::to_string(n) + " elements");
    }
    return result(a, ggml_reshape_4d(a.ctx->op_ctx(), a.t, ne[0], ne[1], ne[2], ne[3]));
}

T view(const T & a, const Ne & ne, const std::array<size_t, 3> & nb123, size_t offset) {
    // the furthest byte the view touches must lie inside a
    size_t last = offset + ggml_type_size(a.t->type) * (ne[0] - 1);
    for (int i = 0; i < 3; ++i) {
        if (ne[i + 1] < 1) fail("view: dimensions must be >= 1");
        last += nb123[i] * (ne[i + 1] - 1);
    }
    if (ne[0] < 1) fail("view: dimensions must be >= 1");
    if (last + ggml_type_size(a.t->type) > ggml_nbytes(a.t)) {
        fail("view: out of bounds of " + describe(a.t));
    }
    // ggml also wants the view's dense size to fit in the memory it views, from its offset
    const ggml_tensor * base = a.t->view_src ? a.t->view_src : a.t;
    const size_t base_offs = (a.t->view_src ? a.t->view_offs : 0) + offset;
    const size_t dense = ggml_row_size(a.t->type, ne[0]) * ne[1] * ne[2] * ne[3];
    if (base_offs + dense > ggml_nbytes(base)) {
        fail("view: a view of " + std::to_string(ne[0] * ne[1] * ne[2] * ne[3]) + " elements at byte offset " +
             std::to_string(offset) + " does not fit in the " + std::to_string(ggml_nbytes(base)) +
             " bytes that " + describe(a.t) + " views; use a smaller shape or offset");
    }
    return result(a, ggml_view_4d(a.ctx->op_ctx(), a.t, ne[0], ne[1], ne[2], ne[3], nb123[0], nb123[1],
                                  nb123[2], offset));
}

// Index operands are range-checked before each compute (graph.cpp), which needs their
// values before the graph runs: they must be leaves (inputs) or views of one.
void check_index_leaf(const T & idx, const char * op) {
    for (const ggml_tensor * t = idx.t; t->op != GGML_OP_NONE; t = t->src[0]) {
        if (t->op != GGML_OP_VIEW && t->op != GGML_OP_RESHAPE && t->op != GGML_OP_PERMUTE &&
            t->op != GGML_OP_TRANSPOSE) {
            fail(std::string(op) + ": the indices must be an input tensor or a view of one, so that they can be "
                 "range-checked before compute; got " + describe(idx.t) + " computed by op " + ggml_op_desc(t));
        }
    }
}

T get_rows(const T & a, const T & idx) {
    check_same_context(a, idx);
    if (idx.t->type != GGML_TYPE_I32) fail_type("get_rows: indices must be i32, got " + describe(idx.t));
    check_index_leaf(idx, "get_rows");
    if (a.t->ne[2] != idx.t->ne[1] || idx.t->ne[3] != 1 || a.t->ne[3] != 1) {
        fail("get_rows: a table " + shape_str(a.t) + " and indices " + shape_str(idx.t) +
             " do not fit: use a 2-D table (rows, width) with indices of any shape up to 2-D");
    }
    return result(a, ggml_get_rows(a.ctx->op_ctx(), a.t, idx.t));
}

T soft_max(const T & a, const T * mask, float scale) {
    check_rows_op(a, "soft_max");
    ggml_tensor * mt = nullptr;
    if (mask) {
        check_same_context(a, *mask);
        mt = mask->t;
        if (mt->type != GGML_TYPE_F32 && mt->type != GGML_TYPE_F16) fail_type("soft_max: mask must be f32 or f16");
        if (!ggml_is_contiguous(mt)) fail("soft_max: mask must be contiguous");
        if (mt->ne[0] != a.t->ne[0] || mt->ne[1] < a.t->ne[1] || a.t->ne[2] % mt->ne[2] != 0 ||
            a.t->ne[3] % mt->ne[3] != 0) {
            fail("soft_max: mask " + shape_str(mt) + " does not broadcast to scores " + shape_str(a.t));
        }
    }
    return result(a, ggml_soft_max_ext(a.ctx->op_ctx(), a.t, mt, scale, 0.0f));
}

T cross_entropy_loss(const T & logits, const T & labels) {
    check_same_context(logits, labels);
    check_f32(logits, "cross_entropy_loss");
    check_f32(labels, "cross_entropy_loss (dense label probabilities)");
    if (!ggml_are_same_shape(logits.t, labels.t)) {
        fail("cross_entropy_loss: logits " + shape_str(logits.t) + " and label probabilities " +
             shape_str(labels.t) + " must have the same shape");
    }
    check_contiguous(logits, "cross_entropy_loss");
    check_contiguous(labels, "cross_entropy_loss");
    return result(logits, ggml_cross_entropy_loss(logits.ctx->op_ctx(), logits.t, labels.t));
}

void check_same_shape(const T & a, const T & b, const char * op) {
    check_same_context(a, b);
    if (!ggml_are_same_shape(a.t, b.t)) {
        fail(std::string(op) + ": " + describe(a.t) + " and " + describe(b.t) + " must have the same shape");
    }
}

// The hyperparameter tensor of an optimizer step holds n or, where the op takes an
// optional trailing entry, n_optional elements.
void check_hparams(const T & p, int64_t n, const char * op, const char * what, int64_t n_optional = 0) {
    check_f32(p, op);
    const int64_t got = ggml_nelements(p.t);
    if (got != n && (n_optional == 0 || got != n_optional)) {
        const std::string counts = std::to_string(n) + (n_optional ? " or " + std::to_string(n_optional) : "");
        fail(std::string(op) + ": hyperparameter tensor must have " + counts + " elements (" + what + "), got " +
             describe(p.t));
    }
}

T opt_step_adamw(const T & a, const T & grad, const T & m, const T & v, const T & hparams) {
    for (const T * t : {&a, &grad, &m, &v}) check_f32(*t, "opt_step_adamw");
    check_same_shape(a, grad, "opt_step_adamw");
    check_same_shape(a, m, "opt_step_adamw");
    check_same_shape(a, v, "opt_step_adamw");
    check_same_context(a, hparams);
    check_hparams(hparams, 7, "opt_step_adamw", "alpha, beta1, beta2, eps, wd, beta1h, beta2h[, grad scale]", 8);
    if (!(a.t->flags & GGML_TENSOR_FLAG_PARAM)) fail("opt_step_adamw: " + describe(a.t) + " is not a parameter");
    return result(a, ggml_opt_step_adamw(a.ctx->op_ctx(), a.t, grad.t, m.t, v.t, hparams.t));
}

T opt_step_sgd(const T & a, const T & grad, const T & hparams) {
    check_f32(a, "opt_step_sgd");
    check_f32(grad, "opt_step_sgd");
    check_same_shape(a, grad, "opt_step_sgd");
    check_same_context(a, hparams);
    check_hparams(hparams, 2, "opt_step_sgd", "alpha, wd");
    if (!(a.t->flags & GGML_TENSOR_FLAG_PARAM)) fail("opt_step_sgd: " + describe(a.t) + " is not a parameter");
    return result(a, ggml_opt_step_sgd(a.ctx->op_ctx(), a.t, grad.t, hparams.t));
}

}  // namespace

void init_ops(py::module_ & m) {
    def_binary(m, "add", ggml_add);
    def_binary(m, "sub", ggml_sub);
    def_binary(m, "mul", ggml_mul);
    def_binary(m, "div", ggml_div);
    m.def("repeat", [](const T & a, const Ne & ne) {
        check_f32(a, "repeat");
        check_dense_rows(a, "repeat");
        for (int i = 0; i < 4; ++i) {
            if (ne[i] < 1 || ne[i] % a.t->ne[i] != 0) fail("repeat: cannot broadcast " + describe(a.t) + " to the requested shape");
        }
        return result(a, ggml_repeat_4d(a.ctx->op_ctx(), a.t, ne[0], ne[1], ne[2], ne[3]));
    });
    m.def("scale", [](const T & a, float s) {
        check_f32(a, "scale");
        const ggml_tensor * t = a.t;
        if (t->nb[0] != sizeof(float) || t->nb[2] != t->nb[1] * t->ne[1] || t->nb[3] != t->nb[2] * t->ne[2]) {
            fail("scale needs a tensor whose rows are packed (a contiguous tensor, or a view of whole rows), got " +
                 describe(t) + "; apply cont() first");
        }
        return result(a, ggml_scale(a.ctx->op_ctx(), a.t, s));
    });
    m.def("clamp", [](const T & a, float lo, float hi) {
        check_f32(a, "clamp");
        check_dense_rows(a, "clamp");
        if (!(lo <= hi)) fail("clamp: min must be <= max");
        // ggml_clamp works in place (a view of its input): clamp a copy so `a` keeps its values
        ggml_context * c = a.ctx->op_ctx();
        return result(a, ggml_clamp(c, ggml_cont(c, a.t), lo, hi));
    });
    m.def("mul_mat", &mul_mat);
    m.def("out_prod", &out_prod, py::arg("a"), py::arg("b"), py::arg("allow_bf16") = false);
    m.def("transpose", [](const T & a) { return result(a, ggml_transpose(a.ctx->op_ctx(), a.t)); });
    m.def("permute", &permute);
    m.def("reshape", &reshape);
    m.def("view", &view);
    m.def("cont", [](const T & a) { return result(a, ggml_cont(a.ctx->op_ctx(), a.t)); });
    m.def("get_rows", &get_rows);
    m.def("norm", [](const T & a, float eps) {
        check_rows_op(a, "norm");
        check_eps(eps, "norm");
        return result(a, ggml_norm(a.ctx->op_ctx(), a.t, eps));
    });
    m.def("rms_norm", [](const T & a, float eps) {
        check_rows_op(a, "rms_norm");
        check_eps(eps, "rms_norm");
        return result(a, ggml_rms_norm(a.ctx->op_ctx(), a.t, eps));
    });
    def_unary(m, "gelu", ggml_gelu, true);
    def_unary(m, "gelu_erf", ggml_gelu_erf, true);
    def_unary(m, "silu", ggml_silu, true);
    def_unary(m, "relu", ggml_relu, true);
    def_unary(m, "tanh", ggml_tanh, true);
    def_unary(m, "exp", ggml_exp, true);
    def_unary(m, "neg", ggml_neg, true);
    def_unary(m, "log", ggml_log);
    def_unary(m, "sqr", ggml_sqr);
    def_unary(m, "sqrt", ggml_sqrt);
    def_unary(m, "sum", ggml_sum);
    def_unary(m, "sum_rows", ggml_sum_rows);
    def_unary(m, "mean", ggml_mean);
    m.def("soft_max", [](const T & a, std::optional<T> mask, float scale) {
        return soft_max(a, mask ? &*mask : nullptr, scale);
    }, py::arg("a"), py::arg("mask") = py::none(), py::arg("scale") = 1.0f);
    // q [hs, T, n_head, B]; k, v [hs, T, n_kv_head, B] with n_head a multiple of n_kv_head
    // (query head h reads K/V head h / (n_head / n_kv_head): grouped-query attention)
    m.def("attn_causal", [](const T & q, const T & k, const T & v, float scale) {
        check_same_shape(k, v, "attn_causal");
        check_same_context(q, k);
        const int64_t * qn = q.t->ne;
        const int64_t * kn = k.t->ne;
        if (kn[0] != qn[0] || kn[1] != qn[1] || kn[3] != qn[3] || qn[2] % kn[2] != 0) {
            fail("attn_causal: k and v need q's shape with a number of heads that divides q's (" +
                 std::to_string(qn[2]) + "), got q " + describe(q.t) + " and k " + describe(k.t));
        }
        for (const T * t : {&q, &k, &v}) {
            check_f32(*t, "attn_causal");
            if (t->t->nb[0] != sizeof(float)) {
                fail("attn_causal: q, k and v need their last axis dense, got " + describe(t->t) + "; apply cont() first");
            }
        }
        return result(q, ggml_attn_causal(q.ctx->op_ctx(), q.t, k.t, v.t, scale));
    });
    // Rotary position embedding of x [hs, nh, T, B] (numpy (B, T, nh, hs)) at the i32
    // positions (T,): mode 0 rotates adjacent pairs (x[2i], x[2i+1]) (llama.cpp's llama),
    // mode 2 the halves (x[i], x[i + n_dims/2]) (GPT-NeoX, Hugging Face's rotate_half).
    // No YaRN or frequency scaling: the angle of pair i at position p is
    // p * freq_base^(-2i/n_dims). Its backward (ROPE_BACK) is upstream's.
    m.def("rope", [](const T & x, const T & pos, int n_dims, int mode, float freq_base) {
        check_same_context(x, pos);
        check_f32(x, "rope");
        check_dense_rows(x, "rope");
        if (pos.t->type != GGML_TYPE_I32 || !ggml_is_vector(pos.t) || pos.t->ne[0] != x.t->ne[2]) {
            fail_type("rope: positions must be an i32 vector with one entry per token (" +
                      std::to_string(x.t->ne[2]) + " for " + describe(x.t) + "), got " + describe(pos.t));
        }
        check_index_leaf(pos, "rope");
        if (mode != GGML_ROPE_TYPE_NORMAL && mode != GGML_ROPE_TYPE_NEOX) {
            fail("rope: mode must be 0 (adjacent pairs) or 2 (NEOX halves), got " + std::to_string(mode));
        }
        if (n_dims <= 0 || n_dims % 2 != 0 || n_dims > x.t->ne[0]) {
            fail("rope: n_dims must be even and in [2, " + std::to_string(x.t->ne[0]) + "], got " +
                 std::to_string(n_dims));
        }
        if (!(freq_base > 0.0f) || !std::isfinite(freq_base)) fail("rope: freq_base must be a finite number > 0");
        return result(x, ggml_rope_ext(x.ctx->op_ctx(), x.t, pos.t, nullptr, n_dims, mode, 0, freq_base, 1.0f,
                                       0.0f, 1.0f, 0.0f, 0.0f));
    }, py::arg("x"), py::arg("positions"), py::arg("n_dims"), py::arg("mode"), py::arg("freq_base"));
    m.def("dropout", [](const T & a, const T & state, float p, int32_t stream) {
        check_same_context(a, state);
        check_f32(a, "dropout");
        if (state.t->type != GGML_TYPE_I32 || ggml_nelements(state.t) != 2 || !ggml_is_contiguous(state.t)) {
            fail_type("dropout: state must be a contiguous i32 tensor of 2 elements (seed, counter), got " +
                      describe(state.t));
        }
        if (!(p >= 0.0f && p < 1.0f)) fail("dropout: p must be in [0, 1), got " + std::to_string(p));
        return result(a, ggml_dropout(a.ctx->op_ctx(), a.t, state.t, p, stream));
    }, py::arg("a"), py::arg("state"), py::arg("p"), py::arg("stream") = 0);
    m.def("diag_mask_inf", [](const T & a, int n_past) {
        check_f32(a, "diag_mask_inf");
        check_contiguous(a, "diag_mask_inf");
        if (n_past < 0) fail("diag_mask_inf: n_past must be >= 0");
        return result(a, ggml_diag_mask_inf(a.ctx->op_ctx(), a.t, n_past));
    });
    m.def("cross_entropy_loss", &cross_entropy_loss);
    m.def("cross_entropy_loss_sparse", [](const T & logits, const T & targets, int64_t n_classes) {
        check_same_context(logits, targets);
        check_rows_op(logits, "cross_entropy_loss_sparse");
        if (targets.t->type != GGML_TYPE_I32) {
            fail_type("cross_entropy_loss_sparse: targets must be i32 class indices, got " + describe(targets.t));
        }
        check_contiguous(targets, "cross_entropy_loss_sparse");
        check_index_leaf(targets, "cross_entropy_loss_sparse");
        if (ggml_nelements(targets.t) != ggml_nrows(logits.t)) {
            fail("cross_entropy_loss_sparse: one target per row of logits " + shape_str(logits.t) + " expected, got " +
                 std::to_string(ggml_nelements(targets.t)) + " targets");
        }
        if (n_classes < 1 || n_classes > logits.t->ne[0]) {
            fail("cross_entropy_loss_sparse: n_classes must be in [1, " + std::to_string(logits.t->ne[0]) +
                 "] (the last axis of logits " + shape_str(logits.t) + "), got " + std::to_string(n_classes));
        }
        return result(logits, ggml_cross_entropy_loss_sparse_ext(logits.ctx->op_ctx(), logits.t, targets.t,
                                                                 static_cast<int>(n_classes)));
    }, py::arg("logits"), py::arg("targets"), py::arg("n_classes"));
    m.def("norm_back", [](const T & grad, const T & x, float eps) {
        check_same_shape(grad, x, "norm_back");
        check_rows_op(grad, "norm_back");
        check_rows_op(x, "norm_back");
        check_eps(eps, "norm_back");
        return result(x, ggml_norm_back(x.ctx->op_ctx(), grad.t, x.t, eps));
    });
    m.def("gelu_back", [](const T & grad, const T & x) {
        check_same_shape(grad, x, "gelu_back");
        check_rows_op(grad, "gelu_back");
        check_rows_op(x, "gelu_back");
        return result(x, ggml_gelu_back(x.ctx->op_ctx(), grad.t, x.t));
    });
    m.def("gelu_erf_back", [](const T & grad, const T & x) {
        check_same_shape(grad, x, "gelu_erf_back");
        check_rows_op(grad, "gelu_erf_back");
        check_rows_op(x, "gelu_erf_back");
        return result(x, ggml_gelu_erf_back(x.ctx->op_ctx(), grad.t, x.t));
    });
    m.def("set_rows", [](const T & dst, const T & src, const T & idx) {
        check_same_context(dst, src);
        check_same_context(dst, idx);
        check_f32(src, "set_rows");
        if (idx.t->type != GGML_TYPE_I32) fail_type("set_rows: indices must be i32, got " + describe(idx.t));
        check_index_leaf(idx, "set_rows");
        const ggml_tensor *a = dst.t, *b = src.t, *c = idx.t;
        if (a->ne[0] != b->ne[0] || a->ne[2] != b->ne[2] || a->ne[3] != b->ne[3] || b->ne[1] != c->ne[0] ||
            c->ne[1] != 1 || c->ne[2] != 1 || c->ne[3] != 1) {
            fail("set_rows: destination " + shape_str(a) + ", rows " + shape_str(b) + " and indices " + shape_str(c) +
                 " do not fit: rows must be (..., n, width) with the destination's width and batch dims, indices (n,)");
        }
        if (!ggml_is_contiguous_rows(a) || !ggml_is_contiguous_rows(b)) fail("set_rows: needs contiguous rows");
        return result(dst, ggml_set_rows(dst.ctx->op_ctx(), dst.t, src.t, idx.t));
    });
    m.def("cast", [](const T & a, ggml_type type) {
        if (a.t->type != GGML_TYPE_F32 || (type != GGML_TYPE_F32 && type != GGML_TYPE_F16 && type != GGML_TYPE_BF16)) {
            fail_type("cast: converts f32 to f32, f16 or bf16; got " + describe(a.t) + " to " + ggml_type_name(type));
        }
        return result(a, ggml_cast(a.ctx->op_ctx(), a.t, type));
    });
    m.def("cpy", [](const T & src, const T & dst) {
        check_same_context(src, dst);
        if (ggml_nelements(src.t) != ggml_nelements(dst.t)) {
            fail("cpy: " + describe(src.t) + " and " + describe(dst.t) + " differ in size");
        }
        return result(dst, ggml_cpy(dst.ctx->op_ctx(), src.t, dst.t));
    });
    m.def("opt_step_adamw", &opt_step_adamw);
    m.def("opt_step_sgd", &opt_step_sgd);
}

}  // namespace pyggml
