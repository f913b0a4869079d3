// Shared types of the pyggml_train._C extension.
//
// The binding speaks ggml's `ne` order (innermost dimension first) only; the Python
// package converts to and from numpy order in one place (pyggml_train/shape.py).
// Error messages print shapes in numpy order so that they read like the Python code.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpp.h"
#include "ggml-cpu.h"
#include "ggml.h"

namespace py = pybind11;

namespace pyggml {

using Ne = std::array<int64_t, 4>;

// Raised as ValueError: the caller passed something the op cannot take.
struct InvalidArgument : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};
// Raised as TypeError: wrong dtype.
struct TypeMismatch : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

// Raised as MemoryError: a buffer could not be allocated on a device.
struct OutOfMemory : std::runtime_error {
    using std::runtime_error::runtime_error;
};

[[noreturn]] void fail(const std::string & message);
[[noreturn]] void fail_type(const std::string & message);
// Throws OutOfMemory saying what needed `bytes` on `backend`'s device, how much that
// device has available, and `lower`: the setting that makes it smaller.
[[noreturn]] void fail_memory(const std::string & what, size_t bytes, ggml_backend_t backend,
                              const std::string & lower);

// "(2, 3)" for ne = [3, 2, 1, 1]: numpy order, leading ones dropped.
std::string shape_str(const ggml_tensor * t);
std::string describe(const ggml_tensor * t);  // "tensor 'w' of shape (2, 3), f32"

class Context;

// A tensor and the context that owns its memory. Copies share ownership.
struct TensorRef {
    std::shared_ptr<Context> ctx;
    ggml_tensor * t = nullptr;
};

// Owns the ggml contexts that hold tensor metadata, the backend(s), and the
// buffers of the tensors that persist across graph computes (parameters, inputs,
// gradient accumulators, optimizer state).
class Context : public std::enable_shared_from_this<Context> {
  public:
    Context(const std::string & device, int n_threads);

    // A tensor whose data lives in a persistent backend buffer.
    TensorRef new_persistent(ggml_type type, const Ne & ne, const std::string & name);
    // The context that the next op node goes into (grown on demand).
    ggml_context * op_ctx();
    // Allocates every persistent tensor that has no memory yet.
    void allocate();

    TensorRef wrap(ggml_tensor * t) { return TensorRef{shared_from_this(), t}; }

    ggml_backend_t backend() const { return backend_.get(); }
    ggml_backend_t cpu_backend() const { return cpu_ ? cpu_.get() : backend_.get(); }
    const std::string & device() const { return device_; }
    int n_threads() const { return n_threads_; }
    void set_n_threads(int n);
    size_t persistent_bytes() const;
    // op node -> the graph that computes it (see Graph::claim)
    std::unordered_map<const ggml_tensor *, const void *> & owners() { return owners_; }

  private:
    std::string device_;
    int n_threads_;
    ggml_backend_ptr backend_;
    ggml_backend_ptr cpu_;  // set when the primary backend is not the CPU
    std::vector<ggml_context_ptr> persistent_ctxs_;
    std::vector<ggml_backend_buffer_ptr> buffers_;
    std::vector<ggml_context_ptr> op_ctxs_;
    std::unordered_map<const ggml_tensor *, const void *> owners_;
    size_t first_unallocated_ = 0;
    bool pending_ = false;
};

void check_same_context(const TensorRef & a, const TensorRef & b);
void check_f32(const TensorRef & a, const char * op);
void check_contiguous(const TensorRef & a, const char * op);

void init_context(py::module_ & m);
void init_ops(py::module_ & m);
void init_graph(py::module_ & m);

}  // namespace pyggml
