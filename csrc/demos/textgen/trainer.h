// Trains a GptModel on token ids with ggml-opt (AdamW), printing train and
// validation loss as it goes.
#pragma once

#include "backend.h"
#include "gpt_model.h"

#include <cstdint>
#include <vector>

namespace demo {

struct TrainSettings {
    int steps        = 300;
    int batch        = 16;
    float lr         = 3e-3f;
    int eval_every   = 50; // steps between validation reports
    int eval_batches = 4;  // batches per validation estimate
};

// Splits at 90%: the validation text is the tail, never seen in training. Both
// parts must be longer than the block (checked by the caller via min_tokens()).
struct TokenSplit {
    std::vector<int32_t> train;
    std::vector<int32_t> val;
};
TokenSplit split_tokens(const std::vector<int32_t> & tokens);

// Fewest tokens a text needs so that both splits hold one block plus its target.
size_t min_tokens(int block);

// Returns the last validation loss.
double train_gpt(const Backend & backend, GptModel & model, const TokenSplit & data,
                 const TrainSettings & s, Rng & rng);

} // namespace demo
