// A tiny seeded RNG (splitmix64). The standard distributions are implementation
// defined, so these draw their own: runs with the same seed match on every platform.
#pragma once

#include <cmath>
#include <cstdint>

namespace demo {

class Rng {
public:
    explicit Rng(uint64_t seed) : state_(seed) {}

    uint64_t next_u64() {
        uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }

    // Uniform in [0, 1) from the top 24 bits, exactly representable in a float.
    float uniform() { return float(next_u64() >> 40) * (1.0f / 16777216.0f); }

    // Uniform integer in [0, n); the modulo bias is negligible for n << 2^64.
    uint64_t below(uint64_t n) { return next_u64() % n; }

    // Standard normal by Box-Muller; 1 - u keeps the log argument in (0, 1].
    float normal() {
        const float u1 = 1.0f - uniform();
        const float u2 = uniform();
        return std::sqrt(-2.0f * std::log(u1)) * std::cos(6.28318530718f * u2);
    }

private:
    uint64_t state_;
};

} // namespace demo
