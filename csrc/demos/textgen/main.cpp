// textgen-train: a char-level GPT-2 trained on a text file, saved as GGUF, sampled.
#include "textgen.h"

#include <cstdio>

int main(int argc, char ** argv) {
    demo::TextgenOptions o;
    demo::ArgParser parser("textgen-train",
        "Train a char-level GPT (GPT-2 architecture) on --data, report train/val loss, save it as GGUF\n"
        "and sample from it; or sample from a saved model with --load.");
    demo::add_textgen_flags(parser, o);
    const int code = demo::parse_or_exit_code(parser, argc, argv);
    if (code >= 0) {
        return code;
    }
    const std::string problem = demo::validate(o);
    if (!problem.empty()) {
        std::fprintf(stderr, "error: %s\n", problem.c_str());
        return 2;
    }
    return demo::run_textgen(o);
}
