// pyggml_train._C: the raw binding. pyggml_train/ggml.py is the user-facing layer.
#include "common.h"

namespace pyggml {
namespace {

// ggml_abort() would end the interpreter. Validation in the binding is the first
// line of defence; this turns any abort that slips through (on the calling
// thread) into a Python RuntimeError. ggml's C sources are built with -fexceptions
// so the exception can unwind through them.
void throw_on_abort(const char * message) {
    throw std::runtime_error(std::string("ggml internal error (please report it): ") + message);
}

std::vector<std::string> devices() {
    std::vector<std::string> out;
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        out.emplace_back(ggml_backend_dev_name(ggml_backend_dev_get(i)));
    }
    return out;
}

std::vector<std::string> split_csv(const std::string & s) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start < s.size()) {
        size_t end = s.find(',', start);
        if (end == std::string::npos) end = s.size();
        out.push_back(s.substr(start, end - start));
        start = end + 1;
    }
    return out;
}

#ifdef PYGGML_CPU_BLAS
extern "C" char * scipy_openblas_get_config(void);
extern "C" char * scipy_openblas_get_corename(void);
#endif

// The BLAS library behind the CPU backend's large f32 matmuls (patch 0010), with the
// kernel it picked for this CPU; empty when built with ggml's own sgemm only.
std::string cpu_blas() {
#ifdef PYGGML_CPU_BLAS
    return std::string(scipy_openblas_get_config()) + " (kernels: " + scipy_openblas_get_corename() + ")";
#else
    return "";
#endif
}

void quiet_log(ggml_log_level level, const char * text, void *) {
    if (level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN) fputs(text, stderr);
}

}  // namespace
}  // namespace pyggml

PYBIND11_MODULE(_C, m) {
    using namespace pyggml;
    m.doc() = "Raw bindings of the patched ggml used by pyggml_train (ne order; see pyggml_train.ggml)";
    ggml_set_abort_callback(&throw_on_abort);
    ggml_log_set(&quiet_log, nullptr);

    py::register_exception<TypeMismatch>(m, "GgmlTypeError", PyExc_TypeError);
    py::register_exception<InvalidArgument>(m, "GgmlValueError", PyExc_ValueError);

    m.attr("GGML_COMMIT") = PYGGML_GGML_COMMIT;
    m.attr("GGML_PATCHES") = split_csv(PYGGML_GGML_PATCHES);
    m.def("devices", &devices, "Names of the ggml devices this build can run on");
    m.def("cpu_blas", &cpu_blas, "The BLAS behind the CPU's large f32 matmuls ('' if none)");

    init_context(m);
    init_ops(m);
    init_graph(m);
}
