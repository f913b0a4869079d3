#include "trainer.h"

#include "ggml_ptr.h"

#include <chrono>
#include <cstdio>

namespace demo {

namespace {

constexpr size_t kGraphSize = 8192;

// The model's input and the one-hot targets of one batch, built on the host.
class BatchMaker {
public:
    BatchMaker(int vocab, int block, int batch) : vocab_(vocab), block_(block), batch_(batch) {}

    // Random windows of `tokens`; targets are the inputs shifted by one.
    void fill(const std::vector<int32_t> & tokens, Rng & rng) {
        ids_.assign(size_t(block_) * batch_, 0);
        onehot_.assign(size_t(vocab_) * block_ * batch_, 0.0f);
        const uint64_t n_start = tokens.size() - block_; // start + block is a valid target index
        for (int b = 0; b < batch_; ++b) {
            const size_t start = size_t(rng.below(n_start));
            for (int t = 0; t < block_; ++t) {
                const size_t row = size_t(b) * block_ + t; // column of the [vocab, T*B] logits
                ids_[row] = tokens[start + t];
                onehot_[row * vocab_ + tokens[start + t + 1]] = 1.0f;
            }
        }
    }

    // tokens [T, B] i32, labels [vocab, T*B] f32
    void upload(ggml_tensor * tokens, ggml_tensor * labels) const {
        ggml_backend_tensor_set(tokens, ids_.data(), 0, ggml_nbytes(tokens));
        ggml_backend_tensor_set(labels, onehot_.data(), 0, ggml_nbytes(labels));
    }

private:
    int vocab_, block_, batch_;
    std::vector<int32_t> ids_;
    std::vector<float> onehot_;
};

double mean_loss(ggml_opt_result_t r) {
    double loss;
    ggml_opt_result_loss(r, &loss, nullptr);
    return loss;
}

} // namespace

TokenSplit split_tokens(const std::vector<int32_t> & tokens) {
    const size_t n_train = tokens.size() * 9 / 10;
    return {std::vector<int32_t>(tokens.begin(), tokens.begin() + n_train),
            std::vector<int32_t>(tokens.begin() + n_train, tokens.end())};
}

size_t min_tokens(int block) {
    // val = n/10 must exceed block + 1 tokens.
    return 10 * (size_t(block) + 2);
}

double train_gpt(const Backend & backend, GptModel & model, const TokenSplit & data,
                 const TrainSettings & s, Rng & rng) {
    const GptConfig & cfg = model.config();

    // ggml-opt's static graphs need the input allocated before the graphs are built.
    Weights io(1);
    const int64_t ne_tok[2] = {cfg.block, s.batch};
    ggml_tensor * tokens = io.new_input("tokens", GGML_TYPE_I32, 2, ne_tok); // [T, B]
    if (!io.allocate(backend.main())) {
        std::fprintf(stderr, "error: could not allocate the batch on %s\n", backend.name());
        return -1.0;
    }

    ContextPtr ctx_compute = new_compute_context(4 * kGraphSize, 3, kGraphSize);
    ggml_tensor * logits = model.forward(ctx_compute.get(), tokens); // [vocab, T*B]

    SchedPtr sched(backend.new_sched(2 * kGraphSize));
    ggml_opt_optimizer_params opt_pars = ggml_opt_get_default_optimizer_params(nullptr);
    opt_pars.adamw.alpha = s.lr;
    opt_pars.adamw.beta2 = 0.99f; // short runs: let the second moment adapt faster

    OptPtr opt = new_adamw_opt(sched.get(), ctx_compute.get(), tokens, logits, &opt_pars);

    BatchMaker batch(cfg.vocab, cfg.block, s.batch);
    OptResultPtr res_train(ggml_opt_result_init());
    OptResultPtr res_val(ggml_opt_result_init());
    double val_loss = -1.0;
    const auto t0 = std::chrono::steady_clock::now();

    for (int step = 1; step <= s.steps; ++step) {
        ggml_opt_alloc(opt.get(), /*backward =*/ true);
        batch.fill(data.train, rng);
        batch.upload(tokens, ggml_opt_labels(opt.get()));
        ggml_opt_eval(opt.get(), res_train.get());

        if (step % s.eval_every != 0 && step != s.steps) {
            continue;
        }
        // The same validation windows every time, so the reports are comparable.
        Rng val_rng(0x5EED);
        ggml_opt_result_reset(res_val.get());
        for (int i = 0; i < s.eval_batches; ++i) {
            ggml_opt_alloc(opt.get(), /*backward =*/ false);
            batch.fill(data.val, val_rng);
            batch.upload(tokens, ggml_opt_labels(opt.get()));
            ggml_opt_eval(opt.get(), res_val.get());
        }
        val_loss = mean_loss(res_val.get());
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("step %5d/%d  train loss %.4f  val loss %.4f  (%.1f s)\n",
                    step, s.steps, mean_loss(res_train.get()), val_loss, secs);
        std::fflush(stdout);
        ggml_opt_result_reset(res_train.get());
    }
    return val_loss;
}

} // namespace demo
