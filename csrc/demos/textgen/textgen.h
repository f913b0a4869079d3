// textgen-train's flags and its two modes: train on a text file (then optionally
// save and sample), or load a saved model and sample.
#pragma once

#include "args.h"
#include "gpt_model.h"
#include "sampler.h"
#include "trainer.h"

#include <string>

namespace demo {

struct TextgenOptions {
    std::string backend = "cpu";
    int threads = 2;
    std::string data;   // text to train on (required unless --load)
    std::string save;   // GGUF path to write after training
    std::string load;   // GGUF path to sample from, skipping training
    std::string prompt;
    int seed = 42;
    GptConfig model;     // vocab comes from the data or the file
    TrainSettings train;
    SampleSettings sample;
};

void add_textgen_flags(ArgParser & parser, TextgenOptions & o);

// Range checks on the flags alone; empty when o is usable.
std::string validate(const TextgenOptions & o);

// Returns the process exit code.
int run_textgen(const TextgenOptions & o);

} // namespace demo
