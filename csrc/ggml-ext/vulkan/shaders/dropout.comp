#version 450
// DROPOUT: y = x * (keep ? 1/(1-p) : 0) with the CPU kernel's counter hash, so a mask is
// the same on every device: element i (logical row-major index) is kept when
// (mix64(key + (i + 1) * GAMMA) >> 32) >= threshold, key = mix64(mix64(seed << 32 | stream)
// ^ counter), mix64 = splitmix64's output function. 64-bit integers as uvec2 (lo, hi) so
// the shader needs no Int64 capability.
#include "rows_head.glsl"

layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) readonly buffer S { uint state[]; };  // i32 [seed, counter]
layout(binding = 2) writeonly buffer Y { float y[]; };

uvec2 add64(uvec2 a, uvec2 b) {
    uint carry;
    const uint lo = uaddCarry(a.x, b.x, carry);
    return uvec2(lo, a.y + b.y + carry);
}

uvec2 mul64(uvec2 a, uvec2 b) {
    uint hi, lo;
    umulExtended(a.x, b.x, hi, lo);
    return uvec2(lo, hi + a.x * b.y + a.y * b.x);
}

uvec2 xor_shr64(uvec2 a, uint s) {  // a ^ (a >> s), 0 < s < 32
    return a ^ uvec2((a.x >> s) | (a.y << (32 - s)), a.y >> s);
}

uvec2 mix64(uvec2 z) {
    z = mul64(xor_shr64(z, 30), uvec2(0x1CE4E5B9u, 0xBF58476Du));
    z = mul64(xor_shr64(z, 27), uvec2(0x133111EBu, 0x94D049BBu));
    return xor_shr64(z, 31);
}

const uvec2 GAMMA = uvec2(0x7F4A7C15u, 0x9E3779B9u);

void main() {
    const uint stateoff = p.off1;
    const uvec2 k = mix64(uvec2(uint(p.i0), state[stateoff]));
    const uvec2 key = mix64(k ^ uvec2(state[stateoff + 1], 0u));
    const uint n = p.ne0 * p.ne1 * p.ne2 * p.ne3;
    for (uint i = gl_GlobalInvocationID.x; i < n; i += gl_NumWorkGroups.x * WG) {
        const uvec3 base = row_bases(i / p.ne0);
        const uint i0 = i % p.ne0;
        const uvec2 h = add64(key, mul64(uvec2(i + 1u, 0u), GAMMA));
        const uint r = mix64(h).y;
        y[base.z + i0] = x[base.x + i0 * p.s00] * (r >= p.u0 ? p.f0 : 0.0);
    }
}
