// Push constants of the element-wise and row ops (NORM_BACK, GELU_BACK, DROPOUT): shape
// [ne0, ne1, ne2, ne3], strides in elements of src0, src1 and dst, element offsets of
// misaligned views, and per-op parameters.
layout(push_constant) uniform PC {
    uint ne0, ne1, ne2, ne3;
    uint s00, s01, s02, s03;
    uint s10, s11, s12, s13;
    uint d1, d2, d3;
    uint off0, off1, offd;
    float f0;   // NORM_BACK: eps; DROPOUT: 1/(1-p)
    uint u0;    // DROPOUT: keep threshold on 32 bits; GELU_BACK: mode (0 tanh, 1 erf)
    int i0;     // DROPOUT: stream
} p;

#define WG 256
layout(local_size_x = WG, local_size_y = 1, local_size_z = 1) in;

// element offsets of row r (= i1 + ne1*(i2 + ne2*i3)) in src0, src1 and dst
uvec3 row_bases(uint r) {
    const uint i1 = r % p.ne1;
    const uint i2 = (r / p.ne1) % p.ne2;
    const uint i3 = r / (p.ne1 * p.ne2);
    return uvec3(p.off0 + i1 * p.s01 + i2 * p.s02 + i3 * p.s03,
                 p.off1 + i1 * p.s11 + i2 * p.s12 + i3 * p.s13,
                 p.offd + i1 * p.d1 + i2 * p.d2 + i3 * p.d3);
}
