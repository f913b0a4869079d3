#version 450
// GELU_BACK (tanh approximation): dx = dy * gelu'(x), the CPU kernel's formula in f32:
// gelu'(x) = s + 2 x s (1 - s) du with s = sigmoid(2u), u = sqrt(2/pi) x (1 + a x^2),
// the sigmoid taken from exp(-2|u|) so neither tail overflows.
#include "rows_head.glsl"

layout(binding = 0) readonly buffer DY { float dy[]; };
layout(binding = 1) readonly buffer X { float x[]; };
layout(binding = 2) writeonly buffer DX { float dx[]; };

const float GELU_COEF_A = 0.044715;
const float SQRT_2_OVER_PI = 0.79788456080286535587989211986876;

float gelu_back(float v, float g) {
    if (abs(v) > 1e4) {
        return v > 0.0 ? g : 0.0 * g;
    }
    const float u = SQRT_2_OVER_PI * v * (1.0 + GELU_COEF_A * v * v);
    const float du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_COEF_A * v * v);
    const float e = exp(-2.0 * abs(u));
    const float r = 1.0 / (1.0 + e);
    const float s = u >= 0.0 ? r : e * r;
    const float sc = u >= 0.0 ? e * r : r;
    return g * (s + 2.0 * v * s * sc * du);
}

void main() {
    const uint n = p.ne0 * p.ne1 * p.ne2 * p.ne3;
    for (uint i = gl_GlobalInvocationID.x; i < n; i += gl_NumWorkGroups.x * WG) {
        const uvec3 base = row_bases(i / p.ne0);
        const uint i0 = i % p.ne0;
        dx[base.z + i0] = gelu_back(x[base.y + i0 * p.s10], dy[base.x + i0 * p.s00]);
    }
}
