// textgen-train: a char-level GPT-2 trained on a text file, saved as GGUF, sampled.
#include "textgen.h"

int main(int argc, char ** argv) {
    demo::TextgenOptions o;
    demo::ArgParser parser("textgen-train",
        "Train a char-level GPT (GPT-2 architecture) on --data, report train/val loss, save it as GGUF\n"
        "and sample from it; or sample from a saved model with --load.");
    demo::add_textgen_flags(parser, o);
    return demo::run_program(parser, argc, argv, o, demo::validate, demo::run_textgen);
}
