#include "mlp_train.h"

#include "backend.h"
#include "ggml_ptr.h"
#include "mlp_model.h"
#include "spirals.h"

#include <cstdio>
#include <cstring>

namespace demo {

namespace {

// Fixed data sizes, both multiples of the batch as ggml_opt_epoch requires.
constexpr int64_t kBatch   = 32;
constexpr int64_t kNTrain  = 30 * kBatch;
constexpr int64_t kNTest   = 10 * kBatch;
constexpr size_t  kGraphSize = 2048;

struct Scores {
    double loss;
    double accuracy;
};

Scores scores_of(ggml_opt_result_t r) {
    Scores s;
    ggml_opt_result_loss(r, &s.loss, nullptr);
    ggml_opt_result_accuracy(r, &s.accuracy, nullptr);
    return s;
}

// Forward passes only, over batches [first, last) of the dataset.
Scores evaluate(ggml_opt_context_t opt, ggml_opt_dataset_t data, int64_t first, int64_t last) {
    OptResultPtr result(ggml_opt_result_init());
    for (int64_t ib = first; ib < last; ++ib) {
        ggml_opt_alloc(opt, /*backward =*/ false);
        ggml_opt_dataset_get_batch(data, ggml_opt_inputs(opt), ggml_opt_labels(opt), ib);
        ggml_opt_eval(opt, result.get());
    }
    return scores_of(result.get());
}

} // namespace

void add_mlp_flags(ArgParser & p, MlpOptions & o) {
    p.add_choice("backend", &o.backend, {"cpu", "cuda"}, "compute backend");
    p.add_int("threads", &o.threads, "CPU threads");
    p.add_int("epochs",  &o.epochs,  "passes over the training set");
    p.add_int("hidden",  &o.hidden,  "width of each hidden layer");
    p.add_int("layers",  &o.layers,  "number of hidden layers");
    p.add_float("lr",    &o.lr,      "AdamW learning rate");
    p.add_int("seed",    &o.seed,    "seed for data and initial weights");
}

std::string validate(const MlpOptions & o) {
    if (o.threads < 1 || o.threads > 256) return "--threads must be in [1, 256]";
    if (o.epochs  < 1 || o.epochs > 100000) return "--epochs must be in [1, 100000]";
    if (o.hidden  < 1 || o.hidden > 8192) return "--hidden must be in [1, 8192]";
    // ggml-opt's static graphs hold at most GGML_DEFAULT_GRAPH_SIZE (2048) tensors,
    // forward, backward and AdamW together: 48 layers fit, 64 do not.
    if (o.layers  < 1 || o.layers > 32) return "--layers must be in [1, 32]";
    if (!(o.lr > 0.0f) || o.lr > 1.0f) return "--lr must be in (0, 1]";
    if (o.seed < 0) return "--seed must be >= 0";
    return "";
}

int train_mlp(const MlpOptions & o) {
    Backend backend;
    std::string err;
    if (!backend.init(o.backend, o.threads, &err)) {
        std::fprintf(stderr, "error: %s\n", err.c_str());
        return 1;
    }

    Rng rng(uint64_t(o.seed));
    const SpiralData data = make_spirals(kNTrain + kNTest, rng);

    Weights weights(MlpModel::max_tensors(o.layers) + 1);
    MlpModel model(weights, 2, o.hidden, o.layers, kSpiralClasses);
    // ggml-opt's static graphs read the batch from a tensor allocated with the weights.
    const int64_t ne_in[2] = {2, kBatch};
    ggml_tensor * inputs = weights.new_input("inputs", GGML_TYPE_F32, 2, ne_in); // [2, kBatch]
    if (!weights.allocate(backend.main())) {
        std::fprintf(stderr, "error: could not allocate the weights on %s\n", backend.name());
        return 1;
    }
    model.init(rng);

    // Room for the forward graph, its gradient and optimizer copies, and their nodes.
    ContextPtr ctx_compute = new_compute_context(8 * kGraphSize, 3, kGraphSize);
    ggml_tensor * logits = model.forward(ctx_compute.get(), inputs); // [3, kBatch]

    SchedPtr sched(backend.new_sched(4 * kGraphSize));
    ggml_opt_optimizer_params opt_pars = ggml_opt_get_default_optimizer_params(nullptr);
    opt_pars.adamw.alpha = o.lr;

    OptPtr opt = new_adamw_opt(sched.get(), ctx_compute.get(), inputs, logits, &opt_pars);

    // The dataset lives in host memory; ggml-opt copies each batch to the backend.
    DatasetPtr dataset(ggml_opt_dataset_init(GGML_TYPE_F32, GGML_TYPE_F32, 2, kSpiralClasses, data.n, 1));
    std::memcpy(ggml_opt_dataset_data(dataset.get())->data, data.points.data(), data.points.size() * sizeof(float));
    std::memcpy(ggml_opt_dataset_labels(dataset.get())->data, data.onehot.data(), data.onehot.size() * sizeof(float));

    std::printf("mlp-train: %s, %d hidden layers x %d (LayerNorm + GELU), %lld parameters\n",
                backend.name(), o.layers, o.hidden, (long long) weights.n_param_elements());
    std::printf("spirals: %d classes, %lld train / %lld test points, batch %lld, AdamW lr %g\n",
                kSpiralClasses, (long long) kNTrain, (long long) kNTest, (long long) kBatch, double(o.lr));

    OptResultPtr res_train(ggml_opt_result_init());
    OptResultPtr res_test(ggml_opt_result_init());
    for (int epoch = 1; epoch <= o.epochs; ++epoch) {
        ggml_opt_result_reset(res_train.get());
        ggml_opt_result_reset(res_test.get());
        // Trains on the shuffled first kNTrain points, then evaluates the held-out rest.
        ggml_opt_epoch(opt.get(), dataset.get(), res_train.get(), res_test.get(), kNTrain, nullptr, nullptr);
        const Scores tr = scores_of(res_train.get());
        const Scores te = scores_of(res_test.get());
        std::printf("epoch %4d  train loss %.4f  acc %5.1f%%  |  test loss %.4f  acc %5.1f%%\n",
                    epoch, tr.loss, 100.0 * tr.accuracy, te.loss, 100.0 * te.accuracy);
        std::fflush(stdout);
    }

    // Train accuracy of the final weights, not the running average over the last epoch.
    const Scores tr = evaluate(opt.get(), dataset.get(), 0, kNTrain / kBatch);
    const Scores te = evaluate(opt.get(), dataset.get(), kNTrain / kBatch, (kNTrain + kNTest) / kBatch);
    std::printf("final train accuracy: %.1f%%\n", 100.0 * tr.accuracy);
    std::printf("final test accuracy: %.1f%%\n", 100.0 * te.accuracy);
    return 0;
}

} // namespace demo
