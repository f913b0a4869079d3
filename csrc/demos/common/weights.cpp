#include "weights.h"

#include "ggml-alloc.h"

namespace demo {

Weights::Weights(int max_tensors) {
    ggml_init_params p = {
        /*.mem_size   =*/ size_t(max_tensors) * ggml_tensor_overhead(),
        /*.mem_buffer =*/ nullptr,
        /*.no_alloc   =*/ true, // data goes to a backend buffer, see allocate()
    };
    ctx_ = ggml_init(p);
}

Weights::~Weights() {
    ggml_backend_buffer_free(buf_);
    ggml_free(ctx_);
}

ggml_tensor * Weights::new_tensor(const char * name, int n_dims, const int64_t * ne, bool param) {
    ggml_tensor * t = ggml_new_tensor(ctx_, GGML_TYPE_F32, n_dims, ne);
    ggml_set_name(t, name);
    if (param) {
        ggml_set_param(t);
        params_.push_back(t);
    }
    return t;
}

ggml_tensor * Weights::new_input(const char * name, ggml_type type, int n_dims, const int64_t * ne) {
    ggml_tensor * t = ggml_new_tensor(ctx_, type, n_dims, ne);
    ggml_set_name(t, name);
    ggml_set_input(t);
    return t;
}

bool Weights::allocate(ggml_backend_t backend) {
    buf_ = ggml_backend_alloc_ctx_tensors(ctx_, backend);
    return buf_ != nullptr;
}

void Weights::fill_normal(ggml_tensor * t, Rng & rng, float std) {
    std::vector<float> v(ggml_nelements(t));
    for (float & x : v) {
        x = std * rng.normal();
    }
    ggml_backend_tensor_set(t, v.data(), 0, ggml_nbytes(t));
}

void Weights::fill_const(ggml_tensor * t, float value) {
    std::vector<float> v(ggml_nelements(t), value);
    ggml_backend_tensor_set(t, v.data(), 0, ggml_nbytes(t));
}

int64_t Weights::n_param_elements() const {
    int64_t n = 0;
    for (const ggml_tensor * t : params_) {
        n += ggml_nelements(t);
    }
    return n;
}

} // namespace demo
