// Owning pointers for the ggml objects the demos create, so every early return
// (bad file, failed allocation) frees them.
#pragma once

#include "ggml.h"
#include "ggml-backend.h"
#include "ggml-opt.h"
#include "gguf.h"

#include <memory>

namespace demo {

struct ContextFree    { void operator()(ggml_context * p) const { ggml_free(p); } };
struct SchedFree      { void operator()(ggml_backend_sched * p) const { ggml_backend_sched_free(p); } };
struct OptFree        { void operator()(ggml_opt_context * p) const { ggml_opt_free(p); } };
struct OptResultFree  { void operator()(ggml_opt_result * p) const { ggml_opt_result_free(p); } };
struct DatasetFree    { void operator()(ggml_opt_dataset * p) const { ggml_opt_dataset_free(p); } };
struct GgufFree       { void operator()(gguf_context * p) const { gguf_free(p); } };

using ContextPtr   = std::unique_ptr<ggml_context, ContextFree>;
using SchedPtr     = std::unique_ptr<ggml_backend_sched, SchedFree>;
using OptPtr       = std::unique_ptr<ggml_opt_context, OptFree>;
using OptResultPtr = std::unique_ptr<ggml_opt_result, OptResultFree>;
using DatasetPtr   = std::unique_ptr<ggml_opt_dataset, DatasetFree>;
using GgufPtr      = std::unique_ptr<gguf_context, GgufFree>;

// A metadata-only context (no_alloc) for graph nodes that a scheduler places;
// sized for n_tensors tensors plus n_graphs graphs of graph_size nodes with grads.
ContextPtr new_compute_context(size_t n_tensors, size_t n_graphs, size_t graph_size);

// ggml-opt with AdamW and constant hyperparameters *pars (which must outlive the
// result), a cross-entropy loss on outputs, and graphs built in ctx_compute.
OptPtr new_adamw_opt(ggml_backend_sched_t sched, ggml_context * ctx_compute,
                     ggml_tensor * inputs, ggml_tensor * outputs, ggml_opt_optimizer_params * pars);

} // namespace demo
