// Compute graphs: forward build, backward expansion, allocation through the backend
// scheduler, and compute with the GIL released.
//
// A graph owns the op nodes it computes: their memory comes from the graph's own
// scheduler, so an op node must not be put into a second graph (build the
// expression again instead). Persistent tensors (parameters, inputs, gradient
// accumulators, optimizer state) may appear in any number of graphs.
#include <algorithm>
#include <climits>
#include <cstring>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "common.h"

namespace pyggml {

namespace {

bool is_persistent(const ggml_tensor * t) { return t->op == GGML_OP_NONE; }

// Ops whose backward ggml_compute_backward implements (with our patches), and
// which sources it can differentiate.
bool has_backward(const ggml_tensor * t, int src) {
    switch (t->op) {
        case GGML_OP_NONE:
        case GGML_OP_DUP:
        case GGML_OP_ADD:
        case GGML_OP_ADD1:
        case GGML_OP_ACC:
        case GGML_OP_SUB:
        case GGML_OP_MUL:
        case GGML_OP_DIV:
        case GGML_OP_SQR:
        case GGML_OP_SQRT:
        case GGML_OP_LOG:
        case GGML_OP_SIN:
        case GGML_OP_COS:
        case GGML_OP_SUM:
        case GGML_OP_SUM_ROWS:
        case GGML_OP_MEAN:
        case GGML_OP_REPEAT:
        case GGML_OP_REPEAT_BACK:
        case GGML_OP_NORM:
        case GGML_OP_RMS_NORM:
        case GGML_OP_MUL_MAT:
        case GGML_OP_SCALE:
        case GGML_OP_SET:
        case GGML_OP_CPY:
        case GGML_OP_CONT:
        case GGML_OP_RESHAPE:
        case GGML_OP_VIEW:
        case GGML_OP_PERMUTE:
        case GGML_OP_TRANSPOSE:
        case GGML_OP_DIAG_MASK_INF:
        case GGML_OP_DIAG_MASK_ZERO:
        case GGML_OP_ATTN_CAUSAL:
            return true;
        case GGML_OP_GET_ROWS:
            return src == 0;
        case GGML_OP_SOFT_MAX:
        case GGML_OP_CROSS_ENTROPY_LOSS:
        case GGML_OP_CROSS_ENTROPY_LOSS_SPARSE:
        case GGML_OP_DROPOUT:  // src 1 is the integer (seed, counter) state
        case GGML_OP_ROPE:     // src 1 holds the integer positions
            return src == 0;
        case GGML_OP_UNARY:
            switch (ggml_get_unary_op(t)) {
                case GGML_UNARY_OP_ABS:
                case GGML_UNARY_OP_SGN:
                case GGML_UNARY_OP_NEG:
                case GGML_UNARY_OP_STEP:
                case GGML_UNARY_OP_RELU:
                case GGML_UNARY_OP_SILU:
                case GGML_UNARY_OP_EXP:
                case GGML_UNARY_OP_GELU:
                case GGML_UNARY_OP_GELU_ERF:
                case GGML_UNARY_OP_TANH:
                    return true;
                default:
                    return false;
            }
        default:
            return false;
    }
}

std::string op_name(const ggml_tensor * t) { return ggml_op_desc(t); }

// An index operand whose values must lie in [lo, hi) (lo = INT64_MIN: any negative
// value is allowed, e.g. an ignored target). Checked before every compute: a bad index
// would otherwise fail a GGML_ASSERT inside a compute thread, or read out of bounds.
struct IndexCheck {
    const ggml_tensor * idx;
    int64_t lo, hi;
    std::string what;  // "get_rows: the table has 5 rows", for the error
};

// idx's data, read from the leaf it views: ops.cpp only lets leaves and views of leaves
// be index operands, so the values are known before the graph runs.
void check_index_values(const IndexCheck & c) {
    const ggml_tensor * t = c.idx;
    const ggml_tensor * base = t->view_src ? t->view_src : t;
    const size_t offs = t->view_src ? t->view_offs : 0;
    if (!base->buffer && !base->data) return;  // never allocated: nothing to read yet
    std::vector<uint8_t> copy;
    const uint8_t * data;
    if (base->buffer && !ggml_backend_buffer_is_host(base->buffer)) {
        copy.resize(ggml_nbytes(base));
        ggml_backend_tensor_get(const_cast<ggml_tensor *>(base), copy.data(), 0, copy.size());
        data = copy.data();
    } else {
        data = static_cast<const uint8_t *>(base->data);
    }
    data += offs;
    for (int64_t i3 = 0; i3 < t->ne[3]; ++i3) {
        for (int64_t i2 = 0; i2 < t->ne[2]; ++i2) {
            for (int64_t i1 = 0; i1 < t->ne[1]; ++i1) {
                const uint8_t * row = data + i1 * t->nb[1] + i2 * t->nb[2] + i3 * t->nb[3];
                int32_t lo = INT32_MAX, hi = INT32_MIN;
                if (t->nb[0] == sizeof(int32_t)) {
                    const int32_t * v = reinterpret_cast<const int32_t *>(row);
                    for (int64_t i0 = 0; i0 < t->ne[0]; ++i0) {
                        lo = std::min(lo, v[i0]);
                        hi = std::max(hi, v[i0]);
                    }
                } else {
                    for (int64_t i0 = 0; i0 < t->ne[0]; ++i0) {
                        int32_t v;
                        std::memcpy(&v, row + i0 * t->nb[0], sizeof v);
                        lo = std::min(lo, v);
                        hi = std::max(hi, v);
                    }
                }
                if ((c.lo != INT64_MIN && lo < c.lo) || hi >= c.hi) {
                    const int32_t bad = (c.lo != INT64_MIN && lo < c.lo) ? lo : hi;
                    int64_t i0 = 0;
                    for (; i0 < t->ne[0]; ++i0) {
                        int32_t v;
                        std::memcpy(&v, row + i0 * t->nb[0], sizeof v);
                        if (v == bad) break;
                    }
                    // the position in numpy order, leading size-1 axes dropped
                    const int64_t pos[4] = {i3, i2, i1, i0};
                    int first = 0;
                    while (first < 3 && t->ne[3 - first] == 1) ++first;
                    std::string at;
                    for (int d = first; d < 4; ++d) at += (d > first ? ", " : "") + std::to_string(pos[d]);
                    if (first == 3) at += ",";
                    const std::string range = c.lo == INT64_MIN ? "< " + std::to_string(c.hi) + " (negative: ignored)"
                                                                : "in [" + std::to_string(c.lo) + ", " + std::to_string(c.hi) + ")";
                    throw InvalidArgument(c.what + ": index " + std::to_string(bad) + " at position (" + at + ") of " +
                                          describe(t) + " is out of range; valid values are " + range +
                                          ". Were the ids made for another vocabulary (tokenizer), or the input not set?");
                }
            }
        }
    }
}

}  // namespace

class Graph;

// Compute buffers that several graphs share because they never run at the same time
// (activation recomputation runs one graph per transformer block): one scheduler, whose
// buffers grow to the largest graph, re-allocated to whichever graph computes next.
struct Arena {
    ggml_backend_sched_ptr sched;
    int size = 0;                     // graph size the scheduler was made for
    const Graph * current = nullptr;  // the graph whose tensors the buffers hold now
};

class Graph {
  public:
    Graph(std::shared_ptr<Context> ctx, const std::vector<TensorRef> & outputs, bool backward, int size,
          const std::vector<std::pair<TensorRef, TensorRef>> & grad_accs, std::shared_ptr<Arena> arena)
        : ctx_(std::move(ctx)), arena_(arena ? std::move(arena) : std::make_shared<Arena>()) {
        for (const auto & o : outputs) {
            if (o.ctx.get() != ctx_.get()) fail("all outputs of a graph must come from the same Context");
        }
        for (const auto & [param, acc] : grad_accs) {
            if (param.ctx.get() != ctx_.get() || acc.ctx.get() != ctx_.get()) {
                fail("grad_accs: parameters and accumulators must come from the graph's Context");
            }
            if (!(param.t->flags & GGML_TENSOR_FLAG_PARAM)) fail("grad_accs: " + describe(param.t) + " is not a parameter");
            if (acc.t->type != GGML_TYPE_F32 || !ggml_are_same_shape(acc.t, param.t) || !is_persistent(acc.t) ||
                !ggml_is_contiguous(acc.t)) {
                fail("grad_accs: the accumulator of " + describe(param.t) + " must be a contiguous f32 leaf of its shape, got " +
                     describe(acc.t));
            }
            given_accs_[param.t] = acc.t;
        }
        // Count the forward nodes to size the graph: the backward pass adds a few
        // nodes per forward node.
        std::unordered_set<ggml_tensor *> reach;
        for (const auto & o : outputs) collect(o.t, reach);
        claim(reach);
        size_ = size > 0 ? size : std::max<int>(2048, 10 * static_cast<int>(reach.size()) + 1024);
        if (static_cast<int>(reach.size()) > size_) {
            fail("graph size " + std::to_string(size_) + " is too small for " + std::to_string(reach.size()) + " tensors");
        }
        ggml_init_params params = {
            /*.mem_size   =*/ggml_graph_overhead_custom(size_, true) + size_ * ggml_tensor_overhead(),
            /*.mem_buffer =*/nullptr,
            /*.no_alloc   =*/true,
        };
        gctx_.reset(ggml_init(params));
        if (!gctx_) fail_memory("the graph's metadata", params.mem_size, ctx_->backend(), "build a smaller graph");
        cg_ = ggml_new_graph_custom(gctx_.get(), size_, true);
        for (const auto & o : outputs) {
            mark_output(o.t);
            ggml_build_forward_expand(cg_, o.t);
        }
        if (backward) expand_backward();
        collect_index_checks();
    }

    void expand(const TensorRef & t) {
        if (t.ctx.get() != ctx_.get()) fail("tensor comes from another Context");
        std::unordered_set<ggml_tensor *> reach;
        collect(t.t, reach);
        if (ggml_graph_n_nodes(cg_) + static_cast<int>(reach.size()) > size_) {
            fail("graph is full (size " + std::to_string(size_) + "); create it with a larger size=");
        }
        claim(reach);
        mark_output(t.t);
        ggml_build_forward_expand(cg_, t.t);
        allocated_ = false;
        collect_index_checks();
    }

    // check_indices=false exists for the test of patch 0017's guard, which needs an
    // assert to fire inside a compute thread.
    void compute(int n_threads, bool check_indices) {
        if (n_threads > 0) ctx_->set_n_threads(n_threads);
        ctx_->allocate();
        if (check_indices) {
            for (const IndexCheck & c : index_checks_) check_index_values(c);
        }
        ensure_allocated();
        enum ggml_status status;
        {
            py::gil_scoped_release release;
            status = ggml_backend_sched_graph_compute(arena_->sched.get(), cg_);
        }
        if (status == GGML_STATUS_FAILED && *ggml_cpu_last_error()) {
            // patch 0017: an assert failed inside a compute thread
            throw std::runtime_error(std::string("graph compute failed in ") + ggml_cpu_last_error() +
                                     ". The outputs of this compute are unspecified; the process is intact. "
                                     "pyggml_train should have rejected this input before compute: please report it.");
        }
        if (status != GGML_STATUS_SUCCESS) {
            throw std::runtime_error(std::string("graph compute failed: ") + ggml_status_to_string(status));
        }
        node_backends_.clear();
        for (int i = 0; i < ggml_graph_n_nodes(cg_); ++i) {
            node_backends_.push_back(ggml_backend_sched_get_tensor_backend(arena_->sched.get(), ggml_graph_node(cg_, i)));
        }
    }

    // Zero the gradient accumulators and set the loss gradient to loss_scale.
    void reset_grads() {
        require_backward("reset_grads");
        ctx_->allocate();
        for (auto & [param, acc] : accs_) ggml_backend_tensor_memset(acc, 0, 0, ggml_nbytes(acc));
        write_loss_seed();
    }

    void set_loss_scale(float s) {
        loss_scale_ = s;
        if (has_backward_) {
            ctx_->allocate();
            write_loss_seed();
        }
    }

    TensorRef grad(const TensorRef & p) {
        require_backward("grad");
        auto it = accs_.find(p.t);
        if (it == accs_.end()) {
            fail(describe(p.t) + " is not a parameter of this graph (flag it with set_param before building the graph)");
        }
        ggml_tensor * g = ggml_graph_get_grad(cg_, p.t);
        return ctx_->wrap(g ? g : it->second);
    }

    TensorRef grad_accumulator(const TensorRef & p) {
        require_backward("grad_accumulator");
        auto it = accs_.find(p.t);
        if (it == accs_.end()) fail(describe(p.t) + " is not a parameter of this graph");
        return ctx_->wrap(it->second);
    }

    std::vector<TensorRef> params() const {
        std::vector<TensorRef> out;
        for (ggml_tensor * p : param_order_) out.push_back(ctx_->wrap(p));
        return out;
    }

    int n_nodes() const { return ggml_graph_n_nodes(cg_); }
    int size() const { return size_; }
    size_t compute_buffer_bytes() const {
        ggml_backend_sched_t sched = arena_->sched.get();
        if (!sched) return 0;
        size_t total = 0;
        for (int i = 0; i < ggml_backend_sched_get_n_backends(sched); ++i) {
            total += ggml_backend_sched_get_buffer_size(sched, ggml_backend_sched_get_backend(sched, i));
        }
        return total;
    }
    // The backend the scheduler ran each node on at the last compute (aligned with
    // op_names; empty before the first): a device graph whose nodes fell back to the CPU
    // shows it here. Recorded at compute because an arena's next graph reuses the scheduler.
    std::vector<std::string> node_backends() const {
        std::vector<std::string> out;
        for (ggml_backend_t b : node_backends_) out.emplace_back(b ? ggml_backend_name(b) : "");
        return out;
    }
    std::vector<std::string> op_names() const {
        std::vector<std::string> out;
        for (int i = 0; i < ggml_graph_n_nodes(cg_); ++i) out.push_back(op_name(ggml_graph_node(cg_, i)));
        return out;
    }

    ~Graph() {
        auto & owners = ctx_->owners();
        for (auto it = owners.begin(); it != owners.end();) {
            if (it->second != this) {
                ++it;
                continue;
            }
            // The memory went with our scheduler: let a later graph allocate anew.
            auto * t = const_cast<ggml_tensor *>(it->first);
            t->data = nullptr;
            t->buffer = nullptr;
            it = owners.erase(it);
        }
    }

  private:
    static void collect(ggml_tensor * t, std::unordered_set<ggml_tensor *> & seen) {
        std::vector<ggml_tensor *> stack = {t};
        while (!stack.empty()) {
            ggml_tensor * cur = stack.back();
            stack.pop_back();
            if (!seen.insert(cur).second) continue;
            for (ggml_tensor * s : cur->src) {
                if (s) stack.push_back(s);
            }
        }
    }

    // An op node gets its memory from the graph that computes it, so it may belong
    // to one graph only. Views whose memory is a persistent tensor's are exempt.
    void claim(const std::unordered_set<ggml_tensor *> & reach) {
        for (ggml_tensor * t : reach) {
            if (is_persistent(t) || (t->view_src && is_persistent(t->view_src))) continue;
            auto [it, inserted] = ctx_->owners().emplace(t, this);
            if (!inserted && it->second != this) {
                fail("op node " + describe(t) + " (" + op_name(t) +
                     ") already belongs to another graph; build the expression again for each graph");
            }
        }
    }

    // Outputs (and the tensors whose memory they view) must survive to the end of
    // the compute: otherwise the allocator reuses their memory for later nodes.
    static void mark_output(ggml_tensor * t) {
        for (; t; t = t->view_src) {
            if (!is_persistent(t)) ggml_set_output(t);
        }
    }

    // dL/dloss, where the backward pass starts.
    void write_loss_seed() {
        for (auto & [loss, acc] : loss_accs_) ggml_backend_tensor_set(acc, &loss_scale_, 0, sizeof(float));
    }

    void require_backward(const char * what) const {
        if (!has_backward_) fail(std::string(what) + ": this graph was built without backward=True");
    }

    // Raise instead of letting ggml_build_backward_expand abort.
    void check_backward_supported() {
        std::unordered_set<const ggml_tensor *> needs;
        bool any_param = false, any_loss = false;
        const int n = ggml_graph_n_nodes(cg_);
        for (int i = 0; i < n; ++i) {
            ggml_tensor * node = ggml_graph_node(cg_, i);
            any_param |= (node->flags & GGML_TENSOR_FLAG_PARAM) != 0;
            any_loss |= (node->flags & GGML_TENSOR_FLAG_LOSS) != 0;
            bool need = (node->flags & GGML_TENSOR_FLAG_PARAM) != 0;
            for (int j = 0; j < GGML_MAX_SRC; ++j) {
                const ggml_tensor * s = node->src[j];
                if (!s || !needs.count(s)) continue;
                if (node->type == GGML_TYPE_I32) continue;
                if (!has_backward(node, j)) {
                    fail("no backward pass for op " + op_name(node) + " with respect to its input " +
                         std::to_string(j) + " (" + describe(s) + "), needed to differentiate " + describe(node) +
                         "; stop the gradient before it or use a differentiable op");
                }
                if (node->view_src && !(node->op == GGML_OP_VIEW || node->op == GGML_OP_RESHAPE ||
                                        node->op == GGML_OP_PERMUTE || node->op == GGML_OP_TRANSPOSE ||
                                        node->op == GGML_OP_CPY)) {
                    fail("cannot differentiate the in-place op " + op_name(node));
                }
                need = true;
            }
            if (need) needs.insert(node);
        }
        if (!any_param) fail("backward=True but no tensor in the graph is a parameter (use ctx.param or set_param)");
        if (!any_loss) fail("backward=True but no output is flagged as the loss (use set_loss on a scalar)");
    }

    void expand_backward() {
        check_backward_supported();
        const int n = ggml_graph_n_nodes(cg_);
        std::vector<ggml_tensor *> grad_accs(n, nullptr);
        for (int i = 0; i < n; ++i) {
            ggml_tensor * node = ggml_graph_node(cg_, i);
            const bool is_param = node->flags & GGML_TENSOR_FLAG_PARAM;
            const bool is_loss = node->flags & GGML_TENSOR_FLAG_LOSS;
            if (!is_param && !is_loss) continue;
            auto given = given_accs_.find(node);
            if (is_param && given != given_accs_.end()) {  // shared with other graphs
                grad_accs[i] = given->second;
                accs_[node] = given->second;
                param_order_.push_back(node);
                continue;
            }
            std::string name = std::string(is_param ? "grad_acc:" : "loss_grad:") + node->name;
            TensorRef acc = ctx_->new_persistent(GGML_TYPE_F32, {node->ne[0], node->ne[1], node->ne[2], node->ne[3]}, name);
            grad_accs[i] = acc.t;
            if (is_param) {
                accs_[node] = acc.t;
                param_order_.push_back(node);
            } else {
                loss_accs_[node] = acc.t;
            }
        }
        ggml_build_backward_expand(gctx_.get(), cg_, grad_accs.data());
        has_backward_ = true;
        reset_grads();
    }

    // The index operands of the graph's nodes and their valid ranges.
    void collect_index_checks() {
        index_checks_.clear();
        for (int i = 0; i < ggml_graph_n_nodes(cg_); ++i) {
            const ggml_tensor * n = ggml_graph_node(cg_, i);
            switch (n->op) {
                case GGML_OP_GET_ROWS:
                    index_checks_.push_back({n->src[1], 0, n->src[0]->ne[1],
                                             "get_rows: the table " + describe(n->src[0]) + " has " +
                                                 std::to_string(n->src[0]->ne[1]) + " rows"});
                    break;
                case GGML_OP_SET_ROWS:
                    index_checks_.push_back({n->src[1], 0, n->ne[1],
                                             "set_rows: the destination " + describe(n) + " has " +
                                                 std::to_string(n->ne[1]) + " rows"});
                    break;
                case GGML_OP_CROSS_ENTROPY_LOSS_SPARSE: {
                    int32_t n_classes;
                    std::memcpy(&n_classes, n->op_params, sizeof n_classes);  // op_params[0], patch 0007
                    index_checks_.push_back({n->src[1], INT64_MIN, n_classes,
                                             "cross_entropy_loss_sparse: the logits " + describe(n->src[0]) + " have " +
                                                 std::to_string(n_classes) + " classes"});
                    break;
                }
                default:
                    break;
            }
        }
        // one check per index tensor and range (a backward pass repeats the forward's)
        std::sort(index_checks_.begin(), index_checks_.end(), [](const IndexCheck & a, const IndexCheck & b) {
            return std::tie(a.idx, a.lo, a.hi) < std::tie(b.idx, b.lo, b.hi);
        });
        index_checks_.erase(std::unique(index_checks_.begin(), index_checks_.end(),
                                        [](const IndexCheck & a, const IndexCheck & b) {
                                            return a.idx == b.idx && a.lo == b.lo && a.hi == b.hi;
                                        }),
                            index_checks_.end());
    }

    void ensure_allocated() {
        Arena & a = *arena_;
        if (allocated_ && a.current == this) return;
        if (!a.sched || a.size < size_) {
            // primary device, then the CPU as the fallback
            std::vector<ggml_backend_t> backends = {ctx_->backend()};
            if (ctx_->cpu_backend() != ctx_->backend()) backends.push_back(ctx_->cpu_backend());
            a.sched.reset(ggml_backend_sched_new(backends.data(), nullptr, static_cast<int>(backends.size()),
                                                 static_cast<size_t>(size_) * 2, false, true));
            a.size = size_;
        }
        ggml_backend_sched_reset(a.sched.get());
        a.current = nullptr;
        release_nodes();
        // Reserve first: when its buffer allocation fails, ggml_backend_sched_alloc_graph goes
        // on to place the tensors in the missing buffer and crashes (ggml v0.15.3); reserve
        // reports the failure, and a reserved graph allocates without growing the buffers.
        if (!ggml_backend_sched_reserve(a.sched.get(), cg_) || !ggml_backend_sched_alloc_graph(a.sched.get(), cg_)) {
            std::vector<size_t> sizes(ggml_backend_sched_get_n_backends(a.sched.get()), 0);
            ggml_backend_sched_reserve_size(a.sched.get(), cg_, sizes.data());
            size_t needed = 0;
            for (size_t s : sizes) needed += s;
            fail_memory("the compute buffers of a graph of " + std::to_string(ggml_graph_n_nodes(cg_)) +
                            " nodes (activations and gradients)",
                        needed, ctx_->backend(),
                        "activations grow with batch x sequence length (attention with its square): "
                        "lower them (pyggml-train: --batch-size, --block-size), or recompute them "
                        "(--set recompute=blocks)");
        }
        a.current = this;
        allocated_ = true;
    }

    // Forget where the compute buffers put this graph's op results (another graph of the
    // arena may have used, or grown, them since): the allocator places only tensors
    // without data, so every node and non-persistent leaf must be placed anew.
    void release_nodes() {
        auto release = [](ggml_tensor * t) {
            const ggml_tensor * root = t;
            while (root->view_src) root = root->view_src;
            if (is_persistent(root)) return;
            t->data = nullptr;
            t->buffer = nullptr;
        };
        for (int i = 0; i < ggml_graph_n_nodes(cg_); ++i) {
            ggml_tensor * node = ggml_graph_node(cg_, i);
            release(node);
            for (ggml_tensor * s : node->src) {
                if (s) release(s);
            }
        }
    }

    std::shared_ptr<Context> ctx_;
    ggml_context_ptr gctx_;
    ggml_cgraph * cg_ = nullptr;
    std::shared_ptr<Arena> arena_;
    int size_ = 0;
    bool allocated_ = false;
    bool has_backward_ = false;
    float loss_scale_ = 1.0f;
    std::unordered_map<ggml_tensor *, ggml_tensor *> accs_;
    std::unordered_map<ggml_tensor *, ggml_tensor *> loss_accs_;
    std::unordered_map<ggml_tensor *, ggml_tensor *> given_accs_;  // param -> accumulator shared with other graphs
    std::vector<ggml_tensor *> param_order_;
    std::vector<IndexCheck> index_checks_;
    std::vector<ggml_backend_t> node_backends_;  // the Context's backends, which outlive us
};

void init_graph(py::module_ & m) {
    py::class_<Arena, std::shared_ptr<Arena>>(m, "Arena").def(py::init<>());
    py::class_<Graph>(m, "Graph")
        .def(py::init([](const std::vector<TensorRef> & outputs, bool backward, int size,
                         const std::vector<std::pair<TensorRef, TensorRef>> & grad_accs, std::shared_ptr<Arena> arena) {
                 if (outputs.empty()) fail("a graph needs at least one output tensor");
                 if (!grad_accs.empty() && !backward) fail("grad_accs needs backward=True");
                 return new Graph(outputs.front().ctx, outputs, backward, size, grad_accs, std::move(arena));
             }),
             py::arg("outputs"), py::arg("backward") = false, py::arg("size") = 0,
             py::arg("grad_accs") = std::vector<std::pair<TensorRef, TensorRef>>{}, py::arg("arena") = nullptr)
        .def("expand", &Graph::expand)
        .def("compute", &Graph::compute, py::arg("threads") = 0, py::arg("check_indices") = true)
        .def("reset_grads", &Graph::reset_grads)
        .def("set_loss_scale", &Graph::set_loss_scale)
        .def("grad", &Graph::grad)
        .def("grad_accumulator", &Graph::grad_accumulator)
        .def_property_readonly("params", &Graph::params)
        .def_property_readonly("n_nodes", &Graph::n_nodes)
        .def_property_readonly("size", &Graph::size)
        .def_property_readonly("compute_buffer_bytes", &Graph::compute_buffer_bytes)
        .def_property_readonly("op_names", &Graph::op_names)
        .def_property_readonly("node_backends", &Graph::node_backends);
}

}  // namespace pyggml
