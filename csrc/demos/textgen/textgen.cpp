#include "textgen.h"

#include "backend.h"
#include "files.h"
#include "gpt_gguf.h"

#include <cstdio>

namespace demo {

namespace {

int fail(const std::string & msg) {
    std::fprintf(stderr, "error: %s\n", msg.c_str());
    return 1;
}

// The prompt as ids, or the first byte of the vocabulary when it is empty (a
// char model has no start token; a newline is the natural one for plays).
bool prompt_ids(const CharVocab & vocab, const std::string & prompt, std::vector<int32_t> * ids, std::string * err) {
    if (prompt.empty()) {
        ids->assign(1, vocab.id('\n') >= 0 ? vocab.id('\n') : 0);
        return true;
    }
    size_t bad = 0;
    if (!vocab.encode(prompt, ids, &bad)) {
        *err = "--prompt: character '" + prompt.substr(bad, 1) + "' (at offset " + std::to_string(bad) +
               ") is not in the model's vocabulary";
        return false;
    }
    return true;
}

int sample(const Backend & backend, const GptModel & model, const CharVocab & vocab, const TextgenOptions & o) {
    std::vector<int32_t> context;
    std::string err;
    if (!prompt_ids(vocab, o.prompt, &context, &err)) {
        return fail(err);
    }
    Sampler sampler(backend, model);
    if (!sampler.ok()) {
        return fail(std::string("could not allocate the sampling graph on ") + backend.name());
    }
    Rng rng(uint64_t(o.seed));
    std::printf("--- sample (seed %d, temperature %g, top-k %d) ---\n%s",
                o.seed, double(o.sample.temperature), o.sample.top_k, o.prompt.c_str());
    sampler.generate(vocab, context, o.sample, rng, stdout);
    std::printf("\n--- end of sample ---\n");
    return 0;
}

} // namespace

void add_textgen_flags(ArgParser & p, TextgenOptions & o) {
    p.add_choice("backend", &o.backend, {"cpu", "cuda"}, "compute backend");
    p.add_int("threads", &o.threads, "CPU threads");
    p.add_string("data", &o.data, "text file to train on (required unless --load)");
    p.add_int("steps", &o.train.steps, "optimizer steps");
    p.add_int("batch", &o.train.batch, "sequences per step");
    p.add_int("block", &o.model.block, "context length in characters");
    p.add_int("layers", &o.model.n_layer, "transformer blocks");
    p.add_int("width", &o.model.n_embd, "embedding width");
    p.add_int("heads", &o.model.n_head, "attention heads (must divide --width)");
    p.add_float("lr", &o.train.lr, "AdamW learning rate");
    p.add_int("eval-every", &o.train.eval_every, "steps between train/val loss reports");
    p.add_int("eval-batches", &o.train.eval_batches, "validation batches per report");
    p.add_int("seed", &o.seed, "seed for init, batches and sampling");
    p.add_string("save", &o.save, "write the trained model and vocabulary to this GGUF file");
    p.add_string("load", &o.load, "sample from this GGUF file instead of training");
    p.add_int("sample", &o.sample.n_tokens, "characters to generate (0: none)");
    p.add_float("temperature", &o.sample.temperature, "sampling temperature");
    p.add_int("top-k", &o.sample.top_k, "sample among the k likeliest characters (0: all)");
    p.add_string("prompt", &o.prompt, "text the sample continues");
}

std::string validate(const TextgenOptions & o) {
    if (o.threads < 1 || o.threads > 256) return "--threads must be in [1, 256]";
    if (o.seed < 0) return "--seed must be >= 0";
    if (o.sample.n_tokens < 0 || o.sample.n_tokens > 1000000) return "--sample must be in [0, 1000000]";
    if (!(o.sample.temperature > 0.0f) || o.sample.temperature > 100.0f) return "--temperature must be in (0, 100]";
    if (o.sample.top_k < 0) return "--top-k must be >= 0";
    if (!o.load.empty()) {
        if (!o.data.empty() || !o.save.empty()) return "--load samples a saved model; it takes no --data or --save";
        return "";
    }
    if (o.data.empty()) return "--data FILE is required (or --load FILE.gguf to sample a saved model)";
    if (o.train.steps < 1 || o.train.steps > 10000000) return "--steps must be in [1, 10000000]";
    if (o.train.batch < 1 || o.train.batch > 4096) return "--batch must be in [1, 4096]";
    if (!(o.train.lr > 0.0f) || o.train.lr > 1.0f) return "--lr must be in (0, 1]";
    if (o.train.eval_every < 1) return "--eval-every must be >= 1";
    if (o.train.eval_batches < 1 || o.train.eval_batches > 10000) return "--eval-batches must be in [1, 10000]";
    GptConfig c = o.model;
    c.vocab = 1; // not known until the data is read
    const std::string bad = demo::validate(c);
    return bad.empty() ? "" : "--block/--layers/--width/--heads: " + bad;
}

int run_textgen(const TextgenOptions & o) {
    Backend backend;
    std::string err;
    if (!backend.init(o.backend, o.threads, &err)) {
        return fail(err);
    }

    if (!o.load.empty()) {
        CharVocab vocab;
        std::unique_ptr<GptModel> model = load_gguf(o.load, backend, &vocab, &err);
        if (!model) {
            return fail(err);
        }
        const GptConfig & c = model->config();
        std::printf("textgen-train: loaded %s (%d layers, width %d, %d heads, block %d, vocab %d) on %s\n",
                    o.load.c_str(), c.n_layer, c.n_embd, c.n_head, c.block, c.vocab, backend.name());
        return o.sample.n_tokens > 0 ? sample(backend, *model, vocab, o) : 0;
    }

    std::string text;
    if (!read_file(o.data, &text, &err)) {
        return fail(err);
    }
    if (text.size() < min_tokens(o.model.block)) {
        return fail("'" + o.data + "' has " + std::to_string(text.size()) + " bytes; --block " +
                    std::to_string(o.model.block) + " needs at least " + std::to_string(min_tokens(o.model.block)));
    }
    const CharVocab vocab = CharVocab::from_text(text);
    std::vector<int32_t> ids;
    size_t unused = 0;
    vocab.encode(text, &ids, &unused);
    const TokenSplit split = split_tokens(ids);

    GptConfig cfg = o.model;
    cfg.vocab = vocab.size();
    GptModel model(cfg);
    if (!model.weights().allocate(backend.main())) {
        return fail(std::string("could not allocate the weights on ") + backend.name());
    }
    Rng rng(uint64_t(o.seed));
    model.init(rng);

    std::printf("textgen-train: %s, %d layers, width %d, %d heads, block %d, vocab %d, %lld parameters\n",
                backend.name(), cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.block, cfg.vocab,
                (long long) model.weights().n_param_elements());
    std::printf("data: %s, %zu train / %zu val characters; batch %d, AdamW lr %g\n",
                o.data.c_str(), split.train.size(), split.val.size(), o.train.batch, double(o.train.lr));

    const double val_loss = train_gpt(backend, model, split, o.train, rng);
    if (val_loss < 0.0) {
        return 1;
    }
    std::printf("final val loss: %.4f\n", val_loss);
    if (!o.save.empty()) {
        if (!save_gguf(o.save, model, vocab, &err)) {
            return fail(err);
        }
        std::printf("saved %s\n", o.save.c_str());
    }
    return o.sample.n_tokens > 0 ? sample(backend, model, vocab, o) : 0;
}

} // namespace demo
