#version 450
// GELU_BACK: dx = dy * gelu'(x), the CPU kernels' formulas in f32; u0 is the mode
// (op_params[0]). 0, tanh approximation: gelu'(x) = s + 2 x s (1 - s) du with
// s = sigmoid(2u), u = sqrt(2/pi) x (1 + a x^2), the sigmoid taken from exp(-2|u|) so
// neither tail overflows. 1, erf: gelu'(x) = 0.5 erfc(-x/sqrt(2)) + x exp(-x^2/2)/sqrt(2 pi)
// (erfc, not 1 + erf, so negative x does not cancel).
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

// erfc(z) from the Chebyshev fit of Numerical Recipes (Press et al., 2nd ed., 6.2, erfcc):
// relative error below 1.2e-7 for every z, so 0.5 erfc keeps f32 accuracy in both tails
// (GLSL has no erf).
float erfc_f32(float z) {
    const float t = 1.0 / (1.0 + 0.5 * abs(z));
    const float r = t * exp(-z * z - 1.26551223 +
        t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
        t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 +
        t * 0.17087277)))))))));
    return z >= 0.0 ? r : 2.0 - r;
}

const float SQRT_2_INV = 0.70710678118654752440;
const float INV_SQRT_2PI = 0.39894228040143267794;

float gelu_erf_back(float v, float g) {
    return g * (0.5 * erfc_f32(-v * SQRT_2_INV) + v * exp(-0.5 * v * v) * INV_SQRT_2PI);
}

void main() {
    const uint n = p.ne0 * p.ne1 * p.ne2 * p.ne3;
    for (uint i = gl_GlobalInvocationID.x; i < n; i += gl_NumWorkGroups.x * WG) {
        const uvec3 base = row_bases(i / p.ne0);
        const uint i0 = i % p.ne0;
        const float xv = x[base.y + i0 * p.s10], g = dy[base.x + i0 * p.s00];
        dx[base.z + i0] = p.u0 == 0 ? gelu_back(xv, g) : gelu_erf_back(xv, g);
    }
}
