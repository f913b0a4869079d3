#include "ggml_ptr.h"

namespace demo {

ContextPtr new_compute_context(size_t n_tensors, size_t n_graphs, size_t graph_size) {
    ggml_init_params p = {
        /*.mem_size   =*/ n_tensors * ggml_tensor_overhead() + n_graphs * ggml_graph_overhead_custom(graph_size, true),
        /*.mem_buffer =*/ nullptr,
        /*.no_alloc   =*/ true,
    };
    return ContextPtr(ggml_init(p));
}

} // namespace demo
