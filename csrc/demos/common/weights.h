// A set of model parameters: tensor metadata in a ggml context, data in one buffer
// of the compute backend, filled from the host.
#pragma once

#include "ggml.h"
#include "ggml-backend.h"
#include "rng.h"

#include <vector>

namespace demo {

class Weights {
public:
    // max_tensors bounds how many tensors new_tensor may create.
    explicit Weights(int max_tensors);
    ~Weights();
    Weights(const Weights &) = delete;
    Weights & operator=(const Weights &) = delete;

    ggml_context * ctx() const { return ctx_; }

    // A named f32 tensor, registered as a trainable parameter when param is true.
    ggml_tensor * new_tensor(const char * name, int n_dims, const int64_t * ne, bool param);
    // A named graph input of any type (e.g. i32 token ids), never a parameter.
    ggml_tensor * new_input(const char * name, ggml_type type, int n_dims, const int64_t * ne);

    // Places every tensor in a buffer of backend; false if that allocation failed.
    bool allocate(ggml_backend_t backend);

    // Host-side initialisation, after allocate().
    static void fill_normal(ggml_tensor * t, Rng & rng, float std);
    static void fill_const(ggml_tensor * t, float value);

    // Parameters in creation order (for saving and counting).
    const std::vector<ggml_tensor *> & params() const { return params_; }
    int64_t n_param_elements() const;

private:
    ggml_context * ctx_ = nullptr;
    ggml_backend_buffer_t buf_ = nullptr;
    std::vector<ggml_tensor *> params_;
};

} // namespace demo
