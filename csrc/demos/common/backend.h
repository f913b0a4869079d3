// Picks the compute backend by name ("cpu" or "cuda") and makes schedulers for it,
// so a demo's model code never mentions a device.
#pragma once

#include "ggml-backend.h"

#include <string>

namespace demo {

class Backend {
public:
    Backend() = default;
    ~Backend();
    Backend(const Backend &) = delete;
    Backend & operator=(const Backend &) = delete;

    // Returns false with a message in *err when the device is not available, e.g.
    // "cuda" in a build configured without -DGGML_CUDA=ON.
    bool init(const std::string & name, int n_threads, std::string * err);

    // Where weights and optimizer state live; first backend of every scheduler.
    ggml_backend_t main() const { return main_; }
    const char * name() const;

    // A scheduler over [main, cpu]: the CPU takes any op the GPU lacks.
    ggml_backend_sched_t new_sched(size_t graph_size) const;

private:
    ggml_backend_t main_ = nullptr;
    ggml_backend_t cpu_  = nullptr; // == main_ for "cpu"
};

} // namespace demo
