// Command-line flags for the demo programs: declare each flag with a pointer to
// its variable and a help line, then parse. Values are checked for syntax here
// (a whole integer, a whole float); ranges are each program's business.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

namespace demo {

class ArgParser {
public:
    ArgParser(std::string program, std::string summary);

    void add_int   (const char * name, int         * dst, const char * help);
    void add_float (const char * name, float       * dst, const char * help);
    void add_string(const char * name, std::string * dst, const char * help);
    void add_choice(const char * name, std::string * dst, std::vector<std::string> choices, const char * help);

    enum class Status { ok, help, error };
    // On error, error() says which flag and why.
    Status parse(int argc, char ** argv);
    const std::string & error() const { return error_; }
    void print_help(FILE * out) const;

private:
    enum class Kind { integer, real, text, choice };
    struct Flag {
        std::string name;
        Kind kind;
        void * dst;
        std::vector<std::string> choices;
        std::string help;
    };
    bool assign(const Flag & flag, const std::string & value);
    std::string default_of(const Flag & flag) const;

    std::string program_;
    std::string summary_;
    std::vector<Flag> flags_;
    std::string error_;
};

// Parses argv, prints help or the error; returns -1 to go on, else the exit code.
int parse_or_exit_code(ArgParser & parser, int argc, char ** argv);

// The whole body of a demo's main: parse the flags into o, check them, run.
template <class Options>
int run_program(ArgParser & parser, int argc, char ** argv, const Options & o,
                std::string (*check)(const Options &), int (*run)(const Options &)) {
    const int code = parse_or_exit_code(parser, argc, argv);
    if (code >= 0) {
        return code;
    }
    const std::string problem = check(o);
    if (!problem.empty()) {
        std::fprintf(stderr, "error: %s\n", problem.c_str());
        return 2;
    }
    return run(o);
}

} // namespace demo
