#include "sampler.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace demo {

namespace {
constexpr size_t kGraphSize = 4096;
}

Sampler::Sampler(const Backend & backend, const GptModel & model)
    : block_(model.config().block), vocab_(model.config().vocab), io_(1) {
    const int64_t ne[2] = {block_, 1};
    tokens_ = io_.new_input("tokens", GGML_TYPE_I32, 2, ne);
    if (!io_.allocate(backend.main())) {
        return;
    }
    ctx_ = new_compute_context(kGraphSize, 1, kGraphSize);
    logits_ = model.forward(ctx_.get(), tokens_);
    ggml_set_output(logits_);
    graph_ = ggml_new_graph_custom(ctx_.get(), kGraphSize, false);
    ggml_build_forward_expand(graph_, logits_);
    sched_.reset(backend.new_sched(kGraphSize));
    ok_ = ggml_backend_sched_alloc_graph(sched_.get(), graph_);
}

int Sampler::draw(std::vector<float> & logits, const SampleSettings & s, Rng & rng) {
    const int n = int(logits.size());
    std::vector<int> order(n);
    for (int i = 0; i < n; ++i) {
        order[i] = i;
    }
    const int k = s.top_k > 0 ? std::min(s.top_k, n) : n;
    // Ties keep the lower id first, so the draw never depends on the sort's whims.
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
    std::vector<double> p(k);
    double sum = 0.0;
    for (int i = 0; i < k; ++i) {
        p[i] = std::exp(double(logits[order[i]] - logits[order[0]]) / s.temperature);
        sum += p[i];
    }
    double u = double(rng.uniform()) * sum;
    for (int i = 0; i < k; ++i) {
        u -= p[i];
        if (u < 0.0) {
            return order[i];
        }
    }
    return order[k - 1];
}

std::string Sampler::generate(const CharVocab & vocab, std::vector<int32_t> context,
                              const SampleSettings & s, Rng & rng, FILE * out) {
    std::string text;
    std::vector<int32_t> window(block_, 0);
    std::vector<float> logits(vocab_);
    for (int i = 0; i < s.n_tokens; ++i) {
        // The last `block` tokens from position 0; the rest is padding that causal
        // attention hides from the position we read.
        const size_t n = std::min(context.size(), size_t(block_));
        std::fill(window.begin(), window.end(), 0);
        std::copy(context.end() - n, context.end(), window.begin());
        ggml_backend_tensor_set(tokens_, window.data(), 0, ggml_nbytes(tokens_));
        ggml_backend_sched_graph_compute(sched_.get(), graph_);
        ggml_backend_tensor_get(logits_, logits.data(), (n - 1) * vocab_ * sizeof(float), vocab_ * sizeof(float));

        const int next = draw(logits, s, rng);
        context.push_back(next);
        text.push_back(vocab.byte(next));
        if (out) {
            std::fputc(vocab.byte(next), out);
            std::fflush(out);
        }
    }
    return text;
}

} // namespace demo
