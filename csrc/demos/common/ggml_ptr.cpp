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

OptPtr new_adamw_opt(ggml_backend_sched_t sched, ggml_context * ctx_compute,
                     ggml_tensor * inputs, ggml_tensor * outputs, ggml_opt_optimizer_params * pars) {
    ggml_opt_params params = ggml_opt_default_params(sched, GGML_OPT_LOSS_TYPE_CROSS_ENTROPY);
    params.ctx_compute     = ctx_compute;
    params.inputs          = inputs;
    params.outputs         = outputs;
    params.optimizer       = GGML_OPT_OPTIMIZER_TYPE_ADAMW;
    params.get_opt_pars    = ggml_opt_get_constant_optimizer_params;
    params.get_opt_pars_ud = pars;
    return OptPtr(ggml_opt_init(params));
}

} // namespace demo
