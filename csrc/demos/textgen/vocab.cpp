#include "vocab.h"

#include <algorithm>

namespace demo {

CharVocab CharVocab::from_text(const std::string & text) {
    bool seen[256] = {};
    for (unsigned char c : text) {
        seen[c] = true;
    }
    std::vector<uint8_t> bytes;
    for (int c = 0; c < 256; ++c) {
        if (seen[c]) {
            bytes.push_back(uint8_t(c));
        }
    }
    CharVocab v;
    from_bytes(bytes, &v);
    return v;
}

bool CharVocab::from_bytes(const std::vector<uint8_t> & bytes, CharVocab * out) {
    if (bytes.empty()) {
        return false;
    }
    CharVocab v;
    std::fill(std::begin(v.index_), std::end(v.index_), -1);
    for (size_t i = 0; i < bytes.size(); ++i) {
        if (v.index_[bytes[i]] != -1) {
            return false;
        }
        v.index_[bytes[i]] = int(i);
    }
    v.bytes_ = bytes;
    *out = v;
    return true;
}

bool CharVocab::encode(const std::string & text, std::vector<int32_t> * out, size_t * bad_pos) const {
    out->clear();
    out->reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
        const int t = id((unsigned char) text[i]);
        if (t < 0) {
            *bad_pos = i;
            return false;
        }
        out->push_back(t);
    }
    return true;
}

} // namespace demo
