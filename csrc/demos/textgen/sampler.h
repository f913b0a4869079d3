// Generates text from a GptModel, one token per forward pass over the last block.
#pragma once

#include "backend.h"
#include "ggml_ptr.h"
#include "gpt_model.h"
#include "vocab.h"

#include <string>
#include <vector>

namespace demo {

struct SampleSettings {
    int n_tokens      = 200;
    float temperature = 0.8f;
    int top_k         = 10; // 0: the whole vocabulary
};

class Sampler {
public:
    Sampler(const Backend & backend, const GptModel & model);

    // False if the graph's buffers could not be allocated.
    bool ok() const { return ok_; }

    // Continues `context` (non-empty, ids of the vocabulary) by s.n_tokens tokens,
    // writing each byte to out as it is drawn; returns the generated text.
    std::string generate(const CharVocab & vocab, std::vector<int32_t> context,
                         const SampleSettings & s, Rng & rng, FILE * out);

private:
    // Index into logits of the next token, drawn with temperature and top-k.
    static int draw(std::vector<float> & logits, const SampleSettings & s, Rng & rng);

    int block_, vocab_;
    Weights io_; // holds tokens_
    ggml_tensor * tokens_ = nullptr; // [block, 1]
    ggml_tensor * logits_ = nullptr; // [vocab, block]
    ContextPtr ctx_;
    ggml_cgraph * graph_ = nullptr;
    SchedPtr sched_;
    bool ok_ = false;
};

} // namespace demo
