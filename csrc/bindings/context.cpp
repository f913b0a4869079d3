// Context, backends and tensor data transfer.
#include <cstring>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "common.h"

namespace pyggml {

namespace {

constexpr size_t kPersistentTensorsPerCtx = 1024;
constexpr size_t kOpTensorsPerCtx = 8192;
constexpr size_t kOpHeadroom = 8;  // no single op creates more tensors than this

ggml_context_ptr new_meta_ctx(size_t n_tensors) {
    ggml_init_params params = {
        /*.mem_size   =*/n_tensors * ggml_tensor_overhead(),
        /*.mem_buffer =*/nullptr,
        /*.no_alloc   =*/true,
    };
    ggml_context * ctx = ggml_init(params);
    if (!ctx) {
        throw std::runtime_error("ggml_init failed: out of memory for tensor metadata");
    }
    return ggml_context_ptr(ctx);
}

size_t room(ggml_context * ctx) {
    return (ggml_get_mem_size(ctx) - ggml_used_mem(ctx)) / ggml_tensor_overhead();
}

// ggml names backends "CPU", "CUDA0", "MTL0"...; users say cpu, cuda, metal.
ggml_backend_dev_t find_device(const std::string & device) {
    std::string want = device;
    for (auto & c : want) c = static_cast<char>(std::tolower(c));
    if (want == "cpu") {
        return ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    }
    std::string prefix = want == "cuda" ? "cuda" : want == "metal" ? "mtl" : want;
    std::vector<std::string> seen;
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        std::string name = ggml_backend_dev_name(dev);
        seen.push_back(name);
        std::string lower = name;
        for (auto & c : lower) c = static_cast<char>(std::tolower(c));
        if (lower.rfind(prefix, 0) == 0) {
            return dev;
        }
    }
    std::ostringstream msg;
    msg << "device '" << device << "' is not available in this build; available devices: ";
    for (size_t i = 0; i < seen.size(); ++i) msg << (i ? ", " : "") << seen[i];
    if (want == "cuda") {
        msg << ". Rebuild with CUDA: CMAKE_ARGS=\"-DGGML_CUDA=ON\" pip install .";
    } else if (want == "metal") {
        msg << ". Metal is built on macOS only.";
    } else if (want == "vulkan" && ggml_backend_reg_by_name("Vulkan")) {
        msg << ". This build has Vulkan but found no Vulkan GPU; a CPU-type Vulkan device (Mesa's "
               "lavapipe) is used only when GGML_VK_VISIBLE_DEVICES names it, e.g. "
               "GGML_VK_VISIBLE_DEVICES=0, set before pyggml_train is imported (docs/devices.md)";
    } else if (want == "vulkan") {
        msg << ". Rebuild with Vulkan: CMAKE_ARGS=\"-DGGML_VULKAN=ON\" pip install . (docs/devices.md)";
    }
    fail(msg.str());
}

py::dtype numpy_dtype(ggml_type type) {
    switch (type) {
        case GGML_TYPE_F32: return py::dtype::of<float>();
        case GGML_TYPE_I32: return py::dtype::of<int32_t>();
        case GGML_TYPE_F16: return py::dtype("float16");
        default: fail_type(std::string("no numpy dtype for ggml type ") + ggml_type_name(type) +
                           " (bf16 tensors are made in graphs with cast(); reading one gives f32)");
    }
}

void check_allocated(const TensorRef & r, const char * what) {
    if (!r.t->buffer && !r.t->data) {
        fail(std::string("cannot ") + what + " " + describe(r.t) +
             ": it has no memory yet. Compute a graph that contains it first "
             "(op results live in the graph that computes them).");
    }
}

// bf16 and q8_0 leaves (a frozen LoRA base) are written from f32 and read back as f32:
// numpy has neither type, and their rounding belongs to ggml's own conversions
bool stored_from_f32(ggml_type type) { return type == GGML_TYPE_BF16 || type == GGML_TYPE_Q8_0; }

void set_from_f32(ggml_tensor * t, const py::array & arr) {
    if (!arr.dtype().is(py::dtype::of<float>())) {
        fail_type("dtype mismatch for " + describe(t) + ": got numpy " + std::string(py::str(arr.dtype())) +
                  ", expected float32 (converted to " + ggml_type_name(t->type) + ")");
    }
    if (arr.size() != ggml_nelements(t)) {
        fail("size mismatch for " + describe(t) + ": got " + std::to_string(arr.size()) + " elements, expected " +
             std::to_string(ggml_nelements(t)));
    }
    const float * src = static_cast<const float *>(arr.data());
    std::vector<uint8_t> raw(ggml_nbytes(t));
    if (t->type == GGML_TYPE_BF16) {
        ggml_fp32_to_bf16_row_ref(src, reinterpret_cast<ggml_bf16_t *>(raw.data()), ggml_nelements(t));
    } else {
        ggml_quantize_chunk(t->type, src, raw.data(), 0, ggml_nrows(t), t->ne[0], nullptr);
    }
    ggml_backend_tensor_set(t, raw.data(), 0, raw.size());
}

void set_data(TensorRef & r, const py::array & arr) {
    ggml_tensor * t = r.t;
    if (t->op != GGML_OP_NONE) {
        fail("cannot set data of " + describe(t) + ": it is the result of op " + ggml_op_desc(t) +
             "; only tensors created with param/input/constant hold data you can set");
    }
    if (stored_from_f32(t->type)) {
        if (!(arr.flags() & py::array::c_style)) {
            fail("array for " + describe(t) + " must be C-contiguous (use np.ascontiguousarray)");
        }
        if (!t->buffer) {
            r.ctx->allocate();
        }
        set_from_f32(t, arr);
        return;
    }
    if (!arr.dtype().is(numpy_dtype(t->type))) {
        fail_type("dtype mismatch for " + describe(t) + ": got numpy " +
                  std::string(py::str(arr.dtype())) + ", expected " +
                  std::string(py::str(numpy_dtype(t->type))));
    }
    if (!(arr.flags() & py::array::c_style)) {
        fail("array for " + describe(t) + " must be C-contiguous (use np.ascontiguousarray)");
    }
    if (static_cast<size_t>(arr.nbytes()) != ggml_nbytes(t)) {
        fail("size mismatch for " + describe(t) + ": got " + std::to_string(arr.size()) +
             " elements, expected " + std::to_string(ggml_nelements(t)));
    }
    if (!t->buffer) {
        r.ctx->allocate();
    }
    ggml_backend_tensor_set(t, arr.data(), 0, ggml_nbytes(t));
}

py::array get_data(const TensorRef & r) {
    ggml_tensor * t = r.t;
    check_allocated(r, "read");
    if (!ggml_is_contiguous(t)) {
        fail("cannot read " + describe(t) + ": it is not contiguous (a transposed or permuted view); "
             "read cont() of it instead");
    }
    std::vector<py::ssize_t> shape = {t->ne[3], t->ne[2], t->ne[1], t->ne[0]};
    if (stored_from_f32(t->type)) {  // numpy has no bfloat16 nor q8_0: widen to f32 (exact)
        std::vector<uint8_t> raw(ggml_nbytes(t));
        ggml_backend_tensor_get(t, raw.data(), 0, raw.size());
        py::array_t<float> out(shape);
        ggml_get_type_traits(t->type)->to_float(raw.data(), out.mutable_data(), ggml_nelements(t));
        return std::move(out);
    }
    py::array out(numpy_dtype(t->type), shape);
    ggml_backend_tensor_get(t, out.mutable_data(), 0, ggml_nbytes(t));
    return out;
}

// The tensor's memory as a writable numpy array, without a copy: MPI reduces gradient
// accumulators in place through it. Host (CPU) buffers only; the array keeps the context
// (and so the buffer) alive.
py::array host_view(const TensorRef & r) {
    ggml_tensor * t = r.t;
    check_allocated(r, "view");
    if (!t->buffer || !ggml_backend_buffer_is_host(t->buffer)) {
        fail("cannot view " + describe(t) + " as numpy: its memory is not in host RAM "
             "(a GPU tensor); copy it with numpy() instead");
    }
    if (!ggml_is_contiguous(t)) {
        fail("cannot view " + describe(t) + ": it is not contiguous");
    }
    std::vector<py::ssize_t> shape = {t->ne[3], t->ne[2], t->ne[1], t->ne[0]};
    auto * keep = new std::shared_ptr<Context>(r.ctx);
    py::capsule owner(keep, [](void * p) { delete static_cast<std::shared_ptr<Context> *>(p); });
    return py::array(numpy_dtype(t->type), shape, t->data, owner);
}

void fill(TensorRef & r, float value) {
    ggml_tensor * t = r.t;
    if (t->type != GGML_TYPE_F32) {
        fail_type("fill needs an f32 tensor, got " + describe(t));
    }
    if (!t->buffer) {
        if (t->op != GGML_OP_NONE) check_allocated(r, "fill");
        r.ctx->allocate();
    }
    if (!ggml_is_contiguous(t)) fail("cannot fill non-contiguous " + describe(t));
    std::vector<float> values(ggml_nelements(t), value);
    ggml_backend_tensor_set(t, values.data(), 0, ggml_nbytes(t));
}

// Bytes the kernel could give this process now without swapping (MemAvailable), 0 if unknown.
size_t host_available_bytes() {
    std::ifstream meminfo("/proc/meminfo");
    std::string key;
    size_t kib = 0;
    while (meminfo >> key >> kib) {
        if (key == "MemAvailable:") return kib * 1024;
        meminfo.ignore(256, '\n');
    }
    return 0;
}

std::string megabytes(size_t bytes) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(1) << bytes / 1e6 << " MB";
    return s.str();
}

constexpr const char * kLowerParams =
    "the parameters and optimizer state grow with the model: lower n_layer, n_embd or the "
    "vocabulary (pyggml-train: --set n_layer=N n_embd=N, or a smaller --preset)";

}  // namespace

[[noreturn]] void fail_memory(const std::string & what, size_t bytes, ggml_backend_t backend,
                              const std::string & lower) {
    ggml_backend_dev_t dev = ggml_backend_get_device(backend);
    std::string name = dev ? ggml_backend_dev_name(dev) : "CPU";
    size_t available = 0;
    std::string source = "MemAvailable in /proc/meminfo";
    if (dev && ggml_backend_dev_type(dev) != GGML_BACKEND_DEVICE_TYPE_CPU) {
        size_t free = 0, total = 0;
        ggml_backend_dev_memory(dev, &free, &total);
        available = free;
        source = "free device memory";
    } else {
        available = host_available_bytes();
    }
    std::ostringstream msg;
    msg << "out of " << name << " memory: " << what << " need " << megabytes(bytes);
    if (available) msg << ", and " << megabytes(available) << " are available (" << source << ")";
    msg << "; " << lower;
    throw OutOfMemory(msg.str());
}

[[noreturn]] void fail(const std::string & message) { throw InvalidArgument(message); }
[[noreturn]] void fail_type(const std::string & message) { throw TypeMismatch(message); }

std::string shape_str(const ggml_tensor * t) {
    int n = GGML_MAX_DIMS;
    while (n > 1 && t->ne[n - 1] == 1) --n;
    std::ostringstream s;
    s << "(";
    for (int i = n - 1; i >= 0; --i) {
        s << t->ne[i];
        if (i > 0) s << ", ";
    }
    s << (n == 1 ? ",)" : ")");
    return s.str();
}

std::string describe(const ggml_tensor * t) {
    std::ostringstream s;
    s << "tensor";
    if (t->name[0]) s << " '" << t->name << "'";
    s << " of shape " << shape_str(t) << ", " << ggml_type_name(t->type);
    return s.str();
}

void check_same_context(const TensorRef & a, const TensorRef & b) {
    if (a.ctx.get() != b.ctx.get()) {
        fail(describe(a.t) + " and " + describe(b.t) +
             " belong to different Contexts; build a graph from tensors of one Context");
    }
}

void check_f32(const TensorRef & a, const char * op) {
    if (a.t->type != GGML_TYPE_F32) {
        fail_type(std::string(op) + " needs an f32 tensor, got " + describe(a.t));
    }
}

void check_contiguous(const TensorRef & a, const char * op) {
    if (!ggml_is_contiguous(a.t)) {
        fail(std::string(op) + " needs a contiguous tensor, got a non-contiguous view: " +
             describe(a.t) + "; apply cont() first");
    }
}

Context::Context(const std::string & device, int n_threads) : device_(device), n_threads_(n_threads) {
    if (n_threads < 1) fail("threads must be >= 1, got " + std::to_string(n_threads));
    ggml_backend_dev_t dev = find_device(device);
    backend_.reset(ggml_backend_dev_init(dev, nullptr));
    if (!backend_) fail("could not initialise device '" + device + "'");
    if (ggml_backend_dev_type(dev) != GGML_BACKEND_DEVICE_TYPE_CPU) {
        cpu_.reset(ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_CPU, nullptr));
    }
    set_n_threads(n_threads);
}

void Context::set_n_threads(int n) {
    if (n < 1) fail("threads must be >= 1, got " + std::to_string(n));
    n_threads_ = n;
    ggml_backend_cpu_set_n_threads(cpu_backend(), n);
}

TensorRef Context::new_persistent(ggml_type type, const Ne & ne, const std::string & name) {
    for (int i = 0; i < 4; ++i) {
        if (ne[i] < 1) fail("tensor dimensions must be >= 1, got " + std::to_string(ne[i]));
    }
    if (ne[0] % ggml_blck_size(type) != 0) {
        fail(std::string(ggml_type_name(type)) + " stores rows in blocks of " + std::to_string(ggml_blck_size(type)) +
             " values: the last dimension must be a multiple of it, got " + std::to_string(ne[0]) +
             "; keep this tensor in f32 or bf16");
    }
    if (persistent_ctxs_.empty() || room(persistent_ctxs_.back().get()) < 1) {
        persistent_ctxs_.push_back(new_meta_ctx(kPersistentTensorsPerCtx));
    }
    ggml_tensor * t = ggml_new_tensor_4d(persistent_ctxs_.back().get(), type, ne[0], ne[1], ne[2], ne[3]);
    if (!name.empty()) ggml_set_name(t, name.c_str());
    pending_ = true;
    return wrap(t);
}

ggml_context * Context::op_ctx() {
    if (op_ctxs_.empty() || room(op_ctxs_.back().get()) < kOpHeadroom) {
        op_ctxs_.push_back(new_meta_ctx(kOpTensorsPerCtx));
    }
    return op_ctxs_.back().get();
}

void Context::allocate() {
    if (!pending_) return;
    for (size_t i = first_unallocated_; i < persistent_ctxs_.size(); ++i) {
        ggml_context * ctx = persistent_ctxs_[i].get();
        ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors(ctx, backend_.get());
        if (!buf) {
            // NULL means either "nothing to allocate" or "out of memory"; in the second case
            // the tensors of the ranges placed before the failure point into freed buffers.
            ggml_backend_buffer_type_t buft = ggml_backend_get_default_buffer_type(backend_.get());
            size_t needed = 0;
            for (ggml_tensor * t = ggml_get_first_tensor(ctx); t; t = ggml_get_next_tensor(ctx, t)) {
                if (!t->view_src) needed += ggml_backend_buft_get_alloc_size(buft, t);
            }
            bool any_missing = false;
            for (ggml_tensor * t = ggml_get_first_tensor(ctx); t; t = ggml_get_next_tensor(ctx, t)) {
                any_missing |= t->data == nullptr;
            }
            if (!any_missing) continue;
            for (ggml_tensor * t = ggml_get_first_tensor(ctx); t; t = ggml_get_next_tensor(ctx, t)) {
                t->data = nullptr;
                t->buffer = nullptr;
            }
            first_unallocated_ = i;
            fail_memory("the tensors created since the last allocation (parameters, inputs, "
                        "optimizer state)",
                        needed, backend_.get(), kLowerParams);
        }
        ggml_backend_buffer_set_usage(buf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
        buffers_.emplace_back(buf);
    }
    pending_ = false;
    // Tensors created from now on go to a fresh context: these are fully allocated.
    persistent_ctxs_.push_back(new_meta_ctx(kPersistentTensorsPerCtx));
    first_unallocated_ = persistent_ctxs_.size() - 1;
}

size_t Context::persistent_bytes() const {
    size_t total = 0;
    for (const auto & b : buffers_) total += ggml_backend_buffer_get_size(b.get());
    return total;
}

void init_context(py::module_ & m) {
    py::enum_<ggml_type>(m, "Type")
        .value("f32", GGML_TYPE_F32)
        .value("f16", GGML_TYPE_F16)
        .value("bf16", GGML_TYPE_BF16)
        .value("q8_0", GGML_TYPE_Q8_0)
        .value("i32", GGML_TYPE_I32);

    py::class_<Context, std::shared_ptr<Context>>(m, "Context")
        .def(py::init<const std::string &, int>(), py::arg("device") = "cpu", py::arg("threads") = 1)
        .def_property_readonly("device", &Context::device)
        .def_property("threads", &Context::n_threads, &Context::set_n_threads)
        .def_property_readonly("persistent_bytes", &Context::persistent_bytes)
        .def("allocate", &Context::allocate)
        .def("new_tensor",
             [](Context & c, ggml_type type, const Ne & ne, const std::string & name) {
                 return c.new_persistent(type, ne, name);
             },
             py::arg("type"), py::arg("ne"), py::arg("name") = "");

    py::class_<TensorRef>(m, "Tensor")
        .def_property_readonly("ne", [](const TensorRef & r) { return Ne{r.t->ne[0], r.t->ne[1], r.t->ne[2], r.t->ne[3]}; })
        .def_property_readonly("nb", [](const TensorRef & r) {
            return std::array<size_t, 4>{r.t->nb[0], r.t->nb[1], r.t->nb[2], r.t->nb[3]};
        })
        .def_property_readonly("type", [](const TensorRef & r) { return r.t->type; })
        .def_property_readonly("op", [](const TensorRef & r) { return std::string(ggml_op_desc(r.t)); })
        .def_property("name", [](const TensorRef & r) { return std::string(r.t->name); },
                      [](TensorRef & r, const std::string & n) { ggml_set_name(r.t, n.c_str()); })
        .def_property_readonly("is_contiguous", [](const TensorRef & r) { return ggml_is_contiguous(r.t); })
        .def_property_readonly("is_param", [](const TensorRef & r) { return (r.t->flags & GGML_TENSOR_FLAG_PARAM) != 0; })
        .def_property_readonly("is_loss", [](const TensorRef & r) { return (r.t->flags & GGML_TENSOR_FLAG_LOSS) != 0; })
        .def_property_readonly("is_allocated", [](const TensorRef & r) { return r.t->buffer != nullptr || r.t->data != nullptr; })
        .def_property_readonly("context", [](const TensorRef & r) { return r.ctx; })
        .def_property_readonly("id", [](const TensorRef & r) { return reinterpret_cast<uintptr_t>(r.t); })
        .def("set_param", [](TensorRef & r) {
            if (r.t->op != GGML_OP_NONE) fail("only leaf tensors can be parameters, got the result of " + std::string(ggml_op_desc(r.t)));
            if (r.t->type != GGML_TYPE_F32) fail_type("parameters must be f32, got " + describe(r.t));
            ggml_set_param(r.t);
        })
        .def("set_loss", [](TensorRef & r) {
            if (r.t->type != GGML_TYPE_F32 || ggml_nelements(r.t) != 1) {
                fail("a loss must be an f32 scalar (one element), got " + describe(r.t) + "; reduce it with sum() or mean()");
            }
            ggml_set_loss(r.t);
        })
        .def("set_input", [](TensorRef & r) { ggml_set_input(r.t); })
        .def("set_output", [](TensorRef & r) { ggml_set_output(r.t); })
        .def("set", &set_data, py::arg("array"))
        .def("get", &get_data)
        .def("host_view", &host_view)
        .def("fill", &fill, py::arg("value"));
}

}  // namespace pyggml
