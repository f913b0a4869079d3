// Shared by the sparse cross entropy shaders: push constants and the row reductions.
// logits: f32 [ne0, ne1, ne2, ne3] with contiguous rows (strides s1, s2, s3 in elements);
// the softmax covers the first nc columns (nc < ne0 for a padded vocabulary).
layout(push_constant) uniform PC {
    uint ne0, ne1, ne2, nrows;
    uint nc, s1, s2, s3;
    uint off_x, off_t, off_d, off_g;
} p;

#define WG 256
layout(local_size_x = WG, local_size_y = 1, local_size_z = 1) in;

shared float red[WG];

uint row_base(uint r) {
    const uint i1 = r % p.ne1;
    const uint i2 = (r / p.ne1) % p.ne2;
    const uint i3 = r / (p.ne1 * p.ne2);
    return p.off_x + i1 * p.s1 + i2 * p.s2 + i3 * p.s3;
}

float reduce_max(float v) {
    const uint tid = gl_LocalInvocationID.x;
    red[tid] = v;
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (tid < s) red[tid] = max(red[tid], red[tid + s]);
        barrier();
    }
    const float r = red[0];
    barrier();
    return r;
}

float reduce_sum(float v) {
    const uint tid = gl_LocalInvocationID.x;
    red[tid] = v;
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (tid < s) red[tid] += red[tid + s];
        barrier();
    }
    const float r = red[0];
    barrier();
    return r;
}

float row_max(uint base) {
    float m = uintBitsToFloat(0xFF800000u);  // -inf
    for (uint i = gl_LocalInvocationID.x; i < p.nc; i += WG) m = max(m, x[base + i]);
    return reduce_max(m);
}

float row_sum_exp(uint base, float mx) {
    float s = 0.0;
    for (uint i = gl_LocalInvocationID.x; i < p.nc; i += WG) s += exp(x[base + i] - mx);
    return reduce_sum(s);
}
