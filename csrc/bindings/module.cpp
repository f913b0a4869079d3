// pyggml_train._C: the raw binding. pyggml_train/ggml.py is the user-facing layer.
#include <cstring>
#include <cstdlib>

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

// The BLAS library behind the CPU backend's large f32 matmuls (patch 0011), with the
// kernel it picked for this CPU; empty when built with ggml's own sgemm only.
std::string cpu_blas() {
#ifdef PYGGML_CPU_BLAS
    return std::string(scipy_openblas_get_config()) + " (kernels: " + scipy_openblas_get_corename() + ")";
#else
    return "";
#endif
}

// The x86 features the CPU backend was compiled for, named as in /proc/cpuinfo's flags: its
// kernels use these instructions whatever CPU runs them (GGML_NATIVE builds for the build
// machine), so each must be present at run time (pyggml_train.kernels checks). The one
// exception is "amx_bf16", the AMX tile GEMM of patch 0021: compiled in whatever the build
// machine, it runs only where cpu_amx_bf16_usable() says so.
std::vector<std::string> cpu_compiled_features() {
    const std::pair<const char *, int> all[] = {
        {"ssse3", ggml_cpu_has_ssse3()},
        {"avx", ggml_cpu_has_avx()},             {"avx2", ggml_cpu_has_avx2()},
        {"fma", ggml_cpu_has_fma()},             {"f16c", ggml_cpu_has_f16c()},
        {"bmi2", ggml_cpu_has_bmi2()},           {"avx_vnni", ggml_cpu_has_avx_vnni()},
        {"avx512f", ggml_cpu_has_avx512()},      {"avx512vbmi", ggml_cpu_has_avx512_vbmi()},
        {"avx512_vnni", ggml_cpu_has_avx512_vnni()},
        {"avx512_bf16", ggml_cpu_has_avx512_bf16()},
        {"amx_int8", ggml_cpu_has_amx_int8()},
        {"amx_bf16", ggml_cpu_has_amx_bf16_gemm()},
    };
    std::vector<std::string> out;
    for (const auto & [name, has] : all) {
        if (has) out.emplace_back(name);
    }
    return out;
}

// Which kernel ran the CPU's MUL_MAT / OUT_PROD products since the last reset (patch 0019):
// (op, kernel, src0 type, products, multiply-adds) for every kernel that ran any.
std::vector<py::tuple> cpu_matmul_stats() {
    const char * ops[] = {"mul_mat", "out_prod"};
    const char * kernels[] = {"cblas_sgemm", "tinyblas", "vec_dot", "out_prod_loop", "amx_bf16", "avx512_bf16"};
    static_assert(sizeof(kernels) / sizeof(kernels[0]) == GGML_CPU_MATMUL_KERNEL_COUNT);
    std::vector<py::tuple> out;
    for (int op = 0; op < 2; op++) {
        for (int k = 0; k < GGML_CPU_MATMUL_KERNEL_COUNT; k++) {
            for (int t = 0; t < GGML_TYPE_COUNT; t++) {
                int64_t macs = 0;
                const int64_t n = ggml_cpu_matmul_stat(op, (ggml_cpu_matmul_kernel) k, (ggml_type) t, &macs);
                if (n > 0) out.push_back(py::make_tuple(ops[op], kernels[k], ggml_type_name((ggml_type) t), n, macs));
            }
        }
    }
    return out;
}

// ggml-vulkan keeps the tiles of its matmul shaders in f16 wherever the device has f16
// arithmetic or cooperative matrices, f32 operands included: products then differ from
// f32 by ~5e-4 relative, too much for f32 training (gradients are checked to 1e-4). Its
// own switches select the f32 shaders; set them before the first device is enumerated
// (docs/devices.md). A user's setting is kept.
void f32_products_on_vulkan() {
    for (const char * name : {"GGML_VK_DISABLE_F16", "GGML_VK_DISABLE_COOPMAT", "GGML_VK_DISABLE_COOPMAT2"}) {
        if (!std::getenv(name)) {
#ifdef _WIN32
            _putenv_s(name, "1");
#else
            setenv(name, "1", 0);
#endif
        }
    }
}

// Errors and warnings reach stderr, except a failed allocation: the binding raises a
// MemoryError that says what needed how much, and ggml's lines would only repeat it.
void quiet_log(ggml_log_level level, const char * text, void *) {
    if (level != GGML_LOG_LEVEL_ERROR && level != GGML_LOG_LEVEL_WARN) return;
    if (std::strstr(text, "failed to allocate") || std::strstr(text, "insufficient memory")) return;
    fputs(text, stderr);
}

}  // namespace
}  // namespace pyggml

PYBIND11_MODULE(_C, m) {
    using namespace pyggml;
    m.doc() = "Raw bindings of the patched ggml used by pyggml_train (ne order; see pyggml_train.ggml)";
    f32_products_on_vulkan();
    ggml_set_abort_callback(&throw_on_abort);
    ggml_log_set(&quiet_log, nullptr);

    py::register_exception<TypeMismatch>(m, "GgmlTypeError", PyExc_TypeError);
    py::register_exception<InvalidArgument>(m, "GgmlValueError", PyExc_ValueError);
    py::register_exception<OutOfMemory>(m, "GgmlMemoryError", PyExc_MemoryError);

    m.attr("GGML_COMMIT") = PYGGML_GGML_COMMIT;
    m.attr("GGML_PATCHES") = split_csv(PYGGML_GGML_PATCHES);
    m.def("devices", &devices, "Names of the ggml devices this build can run on");
    m.def("cpu_blas", &cpu_blas, "The BLAS behind the CPU's large f32 matmuls ('' if none)");
    m.def("cpu_compiled_features", &cpu_compiled_features,
          "x86 features the CPU backend was compiled for, named as in /proc/cpuinfo");
    m.def("cpu_amx_bf16_usable", [] { return ggml_cpu_amx_bf16_gemm_usable() != 0; },
          "Whether bf16 products run on AMX tiles in this process (compiled in, the CPU has "
          "AMX-BF16, Linux granted the tile state, PYGGML_AMX is not 0)");
    m.def("cpu_amx_bf16_emulated", [] { return ggml_cpu_amx_bf16_gemm_emulated() != 0; },
          "Whether the AMX tiles of this build are a C emulation (-DPYGGML_AMX_EMULATE=ON, for tests)");
    m.def("cpu_bf16_gemm_engine", [] {
            const char * names[] = {"", "amx_bf16", "avx512_bf16"};
            return std::string(names[ggml_cpu_bf16_gemm_engine()]);
        },
          "What runs ggml's packed bf16 GEMM (bf16 matmuls, and the backward products of a bf16 "
          "matmul) in this process: 'amx_bf16' tiles, 'avx512_bf16' registers, or '' (none: "
          "PYGGML_BF16_GEMM=0, or neither in this build and CPU)");
    m.def("cpu_matmul_stats", &cpu_matmul_stats,
          "(op, kernel, src0 type, products, multiply-adds) of the CPU products since the last reset");
    m.def("cpu_matmul_stats_reset", &ggml_cpu_matmul_stats_reset, "Zero the counters of cpu_matmul_stats");

    init_context(m);
    init_ops(m);
    init_graph(m);
}
