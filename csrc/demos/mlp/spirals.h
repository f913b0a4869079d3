// The MLP's classification problem: interleaved 2-D spirals, one arm per class.
#pragma once

#include "rng.h"

#include <cstdint>
#include <vector>

namespace demo {

constexpr int kSpiralClasses = 3;

struct SpiralData {
    int64_t n = 0;
    std::vector<float> points; // [2, n]: (x, y) per point
    std::vector<float> onehot; // [kSpiralClasses, n]
};

// n points in random order with classes balanced (class = draw index mod 3), so
// any prefix/suffix split is a fair train/test split.
SpiralData make_spirals(int64_t n, Rng & rng);

} // namespace demo
