// Trains the MLP on spirals with ggml-opt (AdamW) and reports loss and accuracy.
#pragma once

#include "args.h"

#include <string>

namespace demo {

struct MlpOptions {
    std::string backend = "cpu";
    int threads = 2;
    int epochs  = 40;
    int hidden  = 64;
    int layers  = 2;
    float lr    = 3e-3f;
    int seed    = 42;
};

// Registers the flags that fill o.
void add_mlp_flags(ArgParser & parser, MlpOptions & o);

// Range checks; returns an empty string when o is usable, else the problem.
std::string validate(const MlpOptions & o);

// Returns the process exit code.
int train_mlp(const MlpOptions & o);

} // namespace demo
