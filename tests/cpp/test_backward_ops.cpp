// Checks the backward ops added by csrc/patches against finite differences.
//
//   NORM_BACK:          ggml_norm_back(grad, x, eps)  vs  d/dx sum(w * norm(x))
//   GELU_BACK (tanh):   ggml_gelu_back(grad, x)       vs  d/dx sum(w * gelu(x))
//   GELU_BACK (erf):    ggml_gelu_erf_back(grad, x)   vs  d/dx sum(w * gelu_erf(x))
//
// The references are central differences of double-precision versions of the forward
// functions, so they do not inherit any rounding of the f32 kernels. Each op is run
// directly and through ggml_build_backward_expand, with 1 and 4 threads, on odd row
// lengths and more than 64 rows. NORM_BACK also gets rows with a large mean and tiny
// variance, rows with a variance below eps, and constant rows.
//
// Prints one line per case and PASS/FAIL at the end; exits non-zero on failure.

#include "ggml.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace {

// ---- double-precision references ----------------------------------------------

double gelu_tanh_ref(double x) {
    // 0.5*x*(1 + tanh(u)) written as x*sigmoid(2u), which does not cancel for x << 0
    const double u = std::sqrt(2.0/M_PI)*(x + 0.044715*x*x*x);
    return x/(1.0 + std::exp(-2.0*u));
}

double gelu_erf_ref(double x) {
    return 0.5*x*std::erfc(-x/std::sqrt(2.0));
}

// sum_i w_i * norm(x)_i for one row
double norm_loss_ref(const std::vector<double> & x, const float * w, double eps) {
    const size_t n = x.size();
    double mean = 0.0;
    for (double v : x) mean += v;
    mean /= n;
    double var = 0.0;
    for (double v : x) var += (v - mean)*(v - mean);
    var /= n;
    const double rstd = 1.0/std::sqrt(var + eps);
    double loss = 0.0;
    for (size_t i = 0; i < n; ++i) loss += w[i]*(x[i] - mean)*rstd;
    return loss;
}

// central difference of norm_loss_ref for every element of one row
void norm_grad_fd(const float * xf, const float * w, int n, double eps, double * out) {
    std::vector<double> x(xf, xf + n);
    double mean = 0.0, var = 0.0;
    for (double v : x) mean += v;
    mean /= n;
    for (double v : x) var += (v - mean)*(v - mean);
    var /= n;
    // the loss changes on the scale of sqrt(var + eps): keep the step well inside it
    const double h = 1e-4*std::sqrt(var + eps);
    for (int i = 0; i < n; ++i) {
        const double xi = x[i], xp = xi + h, xm = xi - h;
        x[i] = xp; const double lp = norm_loss_ref(x, w, eps);
        x[i] = xm; const double lm = norm_loss_ref(x, w, eps);
        x[i] = xi;
        out[i] = (lp - lm)/(xp - xm); // divide by the step actually taken
    }
}

double grad_fd(double (*f)(double), double x) {
    const double h = 1e-5*std::max(1.0, std::fabs(x));
    const double xp = x + h, xm = x - h;
    return (f(xp) - f(xm))/(xp - xm);
}

// ---- running ggml graphs on the CPU backend --------------------------------------

struct cpu_graph {
    ggml_context          * ctx = nullptr;
    ggml_backend_t          backend = nullptr;
    ggml_backend_buffer_t   buf = nullptr;
    ggml_gallocr_t          galloc = nullptr;

    cpu_graph() {
        ggml_init_params params = {
            /*.mem_size   =*/ ggml_tensor_overhead()*256 + ggml_graph_overhead_custom(1024, true),
            /*.mem_buffer =*/ nullptr,
            /*.no_alloc   =*/ true,
        };
        ctx     = ggml_init(params);
        backend = ggml_backend_cpu_init();
    }
    ~cpu_graph() {
        if (galloc) ggml_gallocr_free(galloc);
        if (buf)    ggml_backend_buffer_free(buf);
        ggml_backend_free(backend);
        ggml_free(ctx);
    }
    // allocate the leaf tensors created so far (inputs)
    void alloc_inputs() { buf = ggml_backend_alloc_ctx_tensors(ctx, backend); }
    bool compute(ggml_cgraph * gf, int n_threads) {
        ggml_backend_cpu_set_n_threads(backend, n_threads);
        galloc = ggml_gallocr_new(ggml_backend_get_default_buffer_type(backend));
        return ggml_gallocr_alloc_graph(galloc, gf) &&
               ggml_backend_graph_compute(backend, gf) == GGML_STATUS_SUCCESS;
    }
};

void set_data(ggml_tensor * t, const std::vector<float> & v) {
    ggml_backend_tensor_set(t, v.data(), 0, ggml_nbytes(t));
}

std::vector<float> get_data(ggml_tensor * t) {
    std::vector<float> v(ggml_nelements(t));
    ggml_backend_tensor_get(t, v.data(), 0, ggml_nbytes(t));
    return v;
}

// computes dL/dx for L = sum(w * op(x)), either with the backward op called directly
// on (w, x) or through ggml_build_backward_expand
enum class op_kind { norm, gelu_tanh, gelu_erf };

std::vector<float> ggml_grad(op_kind kind, bool via_autodiff, int ne0, int ne1, float eps,
                             const std::vector<float> & xv, const std::vector<float> & wv, int n_threads) {
    cpu_graph g;
    ggml_tensor * x = ggml_new_tensor_2d(g.ctx, GGML_TYPE_F32, ne0, ne1);
    ggml_tensor * w = ggml_new_tensor_2d(g.ctx, GGML_TYPE_F32, ne0, ne1);
    ggml_cgraph * gf = ggml_new_graph_custom(g.ctx, 1024, /*grads =*/ via_autodiff);
    ggml_tensor * dx = nullptr;

    if (via_autodiff) {
        ggml_set_param(x);
        ggml_tensor * y =
            kind == op_kind::norm      ? ggml_norm(g.ctx, x, eps) :
            kind == op_kind::gelu_tanh ? ggml_gelu(g.ctx, x) : ggml_gelu_erf(g.ctx, x);
        ggml_tensor * loss = ggml_sum(g.ctx, ggml_mul(g.ctx, y, w));
        ggml_set_loss(loss);
        ggml_build_forward_expand(gf, loss);
        ggml_build_backward_expand(g.ctx, gf, nullptr);
        dx = ggml_graph_get_grad(gf, x);
    } else {
        dx = kind == op_kind::norm      ? ggml_norm_back(g.ctx, w, x, eps) :
             kind == op_kind::gelu_tanh ? ggml_gelu_back(g.ctx, w, x) : ggml_gelu_erf_back(g.ctx, w, x);
        ggml_build_forward_expand(gf, dx);
    }

    g.alloc_inputs();
    set_data(x, xv);
    set_data(w, wv);
    if (via_autodiff) {
        ggml_graph_reset(gf); // sets the loss gradient to 1
    }
    if (!g.compute(gf, n_threads)) {
        fprintf(stderr, "graph computation failed\n");
        return {};
    }
    return get_data(dx);
}

// ---- the checks ----------------------------------------------------------------

// row i of x: ordinary, large mean with tiny variance, variance below eps, constant
void fill_norm_rows(std::vector<float> & x, int ne0, int ne1, std::mt19937 & rng) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int r = 0; r < ne1; ++r) {
        for (int i = 0; i < ne0; ++i) {
            float & v = x[r*ne0 + i];
            switch (r % 4) {
                case 0: v = nd(rng);                  break;
                case 1: v = 1000.0f + 1e-2f*nd(rng);  break;
                case 2: v = 3.0f + 1e-5f*nd(rng);     break;
                case 3: v = -2.5f;                    break;
            }
        }
    }
}

bool check(op_kind kind, bool via_autodiff, int ne0, int ne1, int n_threads, std::mt19937 & rng) {
    const float eps = 1e-5f;
    std::vector<float> x(ne0*ne1), w(ne0*ne1);
    std::uniform_real_distribution<float> ud(-1.0f, 1.0f);
    for (float & v : w) v = ud(rng);
    if (kind == op_kind::norm) {
        fill_norm_rows(x, ne0, ne1, rng);
    } else {
        std::normal_distribution<float> nd(0.0f, 3.0f);
        for (float & v : x) v = nd(rng);
        const float tails[] = { -20.0f, -9.0f, -5.5f, -1e-3f, 0.0f, 1e-3f, 5.5f, 9.0f, 20.0f };
        std::copy(std::begin(tails), std::end(tails), x.begin());
    }

    const std::vector<float> got = ggml_grad(kind, via_autodiff, ne0, ne1, eps, x, w, n_threads);
    if (got.size() != x.size()) {
        return false;
    }

    // error relative to the largest reference gradient of the row (absolute below 1)
    double max_err = 0.0;
    std::vector<double> ref(ne0);
    for (int r = 0; r < ne1; ++r) {
        const float * xr = &x[r*ne0];
        const float * wr = &w[r*ne0];
        if (kind == op_kind::norm) {
            norm_grad_fd(xr, wr, ne0, eps, ref.data());
        } else {
            auto f = kind == op_kind::gelu_tanh ? gelu_tanh_ref : gelu_erf_ref;
            for (int i = 0; i < ne0; ++i) ref[i] = wr[i]*grad_fd(f, xr[i]);
        }
        double diff = 0.0, scale = 1.0;
        for (int i = 0; i < ne0; ++i) {
            diff  = std::max(diff, std::fabs(got[r*ne0 + i] - ref[i]));
            scale = std::max(scale, std::fabs(ref[i]));
        }
        max_err = std::max(max_err, diff/scale);
    }

    // f32 kernels: a few ulp of the largest gradient, plus the reference's own error
    const double tol = 1e-4;
    const bool ok = max_err <= tol;
    const char * name = kind == op_kind::norm ? "norm_back" : kind == op_kind::gelu_tanh ? "gelu_back" : "gelu_erf_back";
    printf("  %-14s [%4d x %3d] %-9s threads=%d  max err %.2e  %s\n", name, ne0, ne1,
           via_autodiff ? "autodiff" : "direct", n_threads, max_err, ok ? "ok" : "FAIL");
    return ok;
}

} // namespace

int main() {
    std::mt19937 rng(1234);
    bool ok = true;
    for (op_kind kind : { op_kind::norm, op_kind::gelu_tanh, op_kind::gelu_erf }) {
        for (int n_threads : { 1, 4 }) {
            for (bool via_autodiff : { false, true }) {
                ok &= check(kind, via_autodiff,  37, 67, n_threads, rng); // odd rows, > 64 of them
                ok &= check(kind, via_autodiff, 771,  9, n_threads, rng); // GPT-2-ish row length
            }
        }
    }
    printf("test_backward_ops: %s\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}
