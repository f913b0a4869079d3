#include "args.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <utility>

namespace demo {

ArgParser::ArgParser(std::string program, std::string summary)
    : program_(std::move(program)), summary_(std::move(summary)) {}

void ArgParser::add_int(const char * name, int * dst, const char * help) {
    flags_.push_back({name, Kind::integer, dst, {}, help});
}
void ArgParser::add_float(const char * name, float * dst, const char * help) {
    flags_.push_back({name, Kind::real, dst, {}, help});
}
void ArgParser::add_string(const char * name, std::string * dst, const char * help) {
    flags_.push_back({name, Kind::text, dst, {}, help});
}
void ArgParser::add_choice(const char * name, std::string * dst, std::vector<std::string> choices, const char * help) {
    flags_.push_back({name, Kind::choice, dst, std::move(choices), help});
}

bool ArgParser::assign(const Flag & flag, const std::string & value) {
    const char * s = value.c_str();
    char * end = nullptr;
    errno = 0;
    switch (flag.kind) {
        case Kind::integer: {
            const long v = std::strtol(s, &end, 10);
            if (value.empty() || *end != '\0' || errno == ERANGE || v < -2147483647L || v > 2147483647L) {
                error_ = "--" + flag.name + " expects an integer, got '" + value + "'";
                return false;
            }
            *static_cast<int *>(flag.dst) = static_cast<int>(v);
            return true;
        }
        case Kind::real: {
            const float v = std::strtof(s, &end);
            if (value.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v)) {
                error_ = "--" + flag.name + " expects a number, got '" + value + "'";
                return false;
            }
            *static_cast<float *>(flag.dst) = v;
            return true;
        }
        case Kind::text:
            *static_cast<std::string *>(flag.dst) = value;
            return true;
        case Kind::choice:
            for (const std::string & c : flag.choices) {
                if (c == value) {
                    *static_cast<std::string *>(flag.dst) = value;
                    return true;
                }
            }
            error_ = "--" + flag.name + " must be one of";
            for (const std::string & c : flag.choices) {
                error_ += " " + c;
            }
            error_ += ", got '" + value + "'";
            return false;
    }
    return false;
}

ArgParser::Status ArgParser::parse(int argc, char ** argv) {
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "-h" || arg == "--help") {
            return Status::help;
        }
        if (arg.rfind("--", 0) != 0) {
            error_ = "unexpected argument '" + arg + "'";
            return Status::error;
        }
        // Both "--name value" and "--name=value".
        std::string value;
        bool inline_value = false;
        const size_t eq = arg.find('=');
        if (eq != std::string::npos) {
            value = arg.substr(eq + 1);
            arg = arg.substr(0, eq);
            inline_value = true;
        }
        const Flag * flag = nullptr;
        for (const Flag & f : flags_) {
            if ("--" + f.name == arg) {
                flag = &f;
            }
        }
        if (!flag) {
            error_ = "unknown flag '" + arg + "' (see --help)";
            return Status::error;
        }
        if (!inline_value) {
            if (i + 1 >= argc) {
                error_ = arg + " needs a value";
                return Status::error;
            }
            value = argv[++i];
        }
        if (!assign(*flag, value)) {
            return Status::error;
        }
    }
    return Status::ok;
}

std::string ArgParser::default_of(const Flag & flag) const {
    switch (flag.kind) {
        case Kind::integer: return std::to_string(*static_cast<const int *>(flag.dst));
        case Kind::real: {
            char buf[32];
            std::snprintf(buf, sizeof(buf), "%g", *static_cast<const float *>(flag.dst));
            return buf;
        }
        case Kind::text:
        case Kind::choice: return *static_cast<const std::string *>(flag.dst);
    }
    return "";
}

void ArgParser::print_help(FILE * out) const {
    std::fprintf(out, "usage: %s [flags]\n%s\n\nflags:\n", program_.c_str(), summary_.c_str());
    for (const Flag & f : flags_) {
        std::string lhs = "--" + f.name;
        if (f.kind == Kind::choice) {
            lhs += " ";
            for (size_t i = 0; i < f.choices.size(); ++i) {
                lhs += (i ? "|" : "") + f.choices[i];
            }
        } else {
            lhs += f.kind == Kind::text ? " S" : f.kind == Kind::integer ? " N" : " X";
        }
        const std::string def = default_of(f);
        std::fprintf(out, "  %-26s %s%s\n", lhs.c_str(), f.help.c_str(),
                     def.empty() ? "" : (" (default: " + def + ")").c_str());
    }
    std::fprintf(out, "  %-26s %s\n", "-h, --help", "show this help");
}

int parse_or_exit_code(ArgParser & parser, int argc, char ** argv) {
    switch (parser.parse(argc, argv)) {
        case ArgParser::Status::ok:
            return -1;
        case ArgParser::Status::help:
            parser.print_help(stdout);
            return 0;
        case ArgParser::Status::error:
            std::fprintf(stderr, "error: %s\n", parser.error().c_str());
            return 2;
    }
    return 2;
}

} // namespace demo
