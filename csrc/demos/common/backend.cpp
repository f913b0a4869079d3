#include "backend.h"

#include "ggml-cpu.h"

namespace demo {

Backend::~Backend() {
    if (main_ != cpu_) {
        ggml_backend_free(main_);
    }
    ggml_backend_free(cpu_);
}

bool Backend::init(const std::string & name, int n_threads, std::string * err) {
    cpu_ = ggml_backend_cpu_init();
    if (!cpu_) {
        *err = "could not initialise the CPU backend";
        return false;
    }
    ggml_backend_cpu_set_n_threads(cpu_, n_threads);
    if (name == "cpu") {
        main_ = cpu_;
        return true;
    }
    if (name == "cuda") {
        // Backends are linked in statically (GGML_BACKEND_DL=OFF), so a GPU device
        // is registered exactly when ggml was built with CUDA.
        ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_GPU);
        if (!dev) {
            *err = "--backend cuda: this build has no CUDA backend (configure with -DGGML_CUDA=ON) "
                   "or no CUDA device was found";
            return false;
        }
        main_ = ggml_backend_dev_init(dev, nullptr);
        if (!main_) {
            *err = std::string("could not initialise ") + ggml_backend_dev_name(dev);
            return false;
        }
        return true;
    }
    *err = "unknown backend '" + name + "' (expected cpu or cuda)";
    return false;
}

const char * Backend::name() const {
    return ggml_backend_name(main_);
}

ggml_backend_sched_t Backend::new_sched(size_t graph_size) const {
    ggml_backend_t backends[2] = {main_, cpu_};
    const int n = main_ == cpu_ ? 1 : 2;
    return ggml_backend_sched_new(backends, nullptr, n, graph_size, /*parallel =*/ false, /*op_offload =*/ true);
}

} // namespace demo
