// mlp-train: an MLP with LayerNorm and GELU learns interleaved spirals with AdamW.
#include "mlp_train.h"

#include <cstdio>

int main(int argc, char ** argv) {
    demo::MlpOptions o;
    demo::ArgParser parser("mlp-train", "Train an MLP (linear -> LayerNorm -> GELU blocks) on 3-class spirals with AdamW.");
    demo::add_mlp_flags(parser, o);
    const int code = demo::parse_or_exit_code(parser, argc, argv);
    if (code >= 0) {
        return code;
    }
    const std::string problem = demo::validate(o);
    if (!problem.empty()) {
        std::fprintf(stderr, "error: %s\n", problem.c_str());
        return 2;
    }
    return demo::train_mlp(o);
}
