// mlp-train: an MLP with LayerNorm and GELU learns interleaved spirals with AdamW.
#include "mlp_train.h"

int main(int argc, char ** argv) {
    demo::MlpOptions o;
    demo::ArgParser parser("mlp-train", "Train an MLP (linear -> LayerNorm -> GELU blocks) on 3-class spirals with AdamW.");
    demo::add_mlp_flags(parser, o);
    return demo::run_program(parser, argc, argv, o, demo::validate, demo::train_mlp);
}
