#include "files.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sys/stat.h>

namespace demo {

bool check_readable(const std::string & path, std::string * err) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
        *err = "cannot open '" + path + "': " + std::strerror(errno);
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        *err = "'" + path + "' is not a regular file";
        return false;
    }
    FILE * f = std::fopen(path.c_str(), "rb");
    if (!f) {
        *err = "cannot open '" + path + "': " + std::strerror(errno);
        return false;
    }
    std::fclose(f);
    return true;
}

bool read_file(const std::string & path, std::string * out, std::string * err) {
    if (!check_readable(path, err)) {
        return false;
    }
    FILE * f = std::fopen(path.c_str(), "rb");
    if (!f) {
        *err = "cannot open '" + path + "': " + std::strerror(errno);
        return false;
    }
    out->clear();
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) {
        out->append(buf, n);
    }
    const bool failed = std::ferror(f) != 0;
    std::fclose(f);
    if (failed) {
        *err = "error reading '" + path + "'";
        return false;
    }
    return true;
}

} // namespace demo
