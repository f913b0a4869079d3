#include "spirals.h"

#include <cmath>
#include <utility>

namespace demo {

SpiralData make_spirals(int64_t n, Rng & rng) {
    // 1.25 turns per arm: neighbouring arms are 2*pi*r/3 apart and wind around
    // each other, so no linear (or shallow) boundary separates the classes.
    constexpr float kTurn  = 6.28318530718f;
    constexpr float kTurns = 1.25f;
    constexpr float kNoise = 0.04f;

    std::vector<int64_t> order(n);
    for (int64_t i = 0; i < n; ++i) {
        order[i] = i;
    }
    for (int64_t i = n - 1; i > 0; --i) { // Fisher-Yates
        std::swap(order[i], order[rng.below(uint64_t(i) + 1)]);
    }

    SpiralData d;
    d.n = n;
    d.points.assign(2 * n, 0.0f);
    d.onehot.assign(kSpiralClasses * n, 0.0f);
    for (int64_t i = 0; i < n; ++i) {
        const int cls = int(i % kSpiralClasses);
        const float t = rng.uniform();
        const float r = 0.1f + 0.9f * t;
        const float angle = kTurn * (float(cls) / kSpiralClasses + kTurns * t);
        const int64_t j = order[i];
        d.points[2 * j + 0] = r * std::cos(angle) + kNoise * rng.normal();
        d.points[2 * j + 1] = r * std::sin(angle) + kNoise * rng.normal();
        d.onehot[kSpiralClasses * j + cls] = 1.0f;
    }
    return d;
}

} // namespace demo
