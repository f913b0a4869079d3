// Whole-file reading with an error message instead of an exception or abort.
#pragma once

#include <string>

namespace demo {

// Reads all bytes of path into *out; on failure returns false and says why in *err.
bool read_file(const std::string & path, std::string * out, std::string * err);

// True if path names a readable regular file; otherwise says why in *err.
bool check_readable(const std::string & path, std::string * err);

} // namespace demo
