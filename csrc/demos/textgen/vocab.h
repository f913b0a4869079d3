// Character-level vocabulary: every distinct byte of the training text is a token,
// ids in byte order so the same text always gives the same ids.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace demo {

class CharVocab {
public:
    CharVocab() = default;
    static CharVocab from_text(const std::string & text);
    // From a saved byte list; false if it is empty or has duplicates.
    static bool from_bytes(const std::vector<uint8_t> & bytes, CharVocab * out);

    int size() const { return int(bytes_.size()); }
    const std::vector<uint8_t> & bytes() const { return bytes_; }

    // Id of a byte, -1 if it is not in the vocabulary.
    int id(unsigned char c) const { return index_[c]; }
    char byte(int id) const { return char(bytes_[id]); }

    // Encodes text; on an unknown byte returns false and its position in *bad_pos.
    bool encode(const std::string & text, std::vector<int32_t> * out, size_t * bad_pos) const;

private:
    std::vector<uint8_t> bytes_;
    int index_[256];
};

} // namespace demo
