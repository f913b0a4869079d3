#version 450
// OPT_STEP_ADAMW with the optional 8th parameter, a gradient scale (1 without it), as the
// CPU kernel: g' = g * scale; m = b1 m + (1-b1) g'; v = b2 v + (1-b2) g'^2;
// w = w (1 - alpha wd) - alpha m b1h / (sqrt(v b2h) + eps). Contiguous tensors.

#define WG 256
layout(local_size_x = WG, local_size_y = 1, local_size_z = 1) in;

layout(binding = 0) buffer W { float w[]; };
layout(binding = 1) readonly buffer G { float g[]; };
layout(binding = 2) buffer M { float m[]; };
layout(binding = 3) buffer V { float v[]; };
layout(binding = 4) readonly buffer P { float par[]; };

layout(push_constant) uniform PC {
    uint n, n_params;
    uint off_w, off_g, off_m, off_v, off_p;
} p;

void main() {
    const float alpha = par[p.off_p + 0];
    const float beta1 = par[p.off_p + 1];
    const float beta2 = par[p.off_p + 2];
    const float eps = par[p.off_p + 3];
    const float wd = par[p.off_p + 4];
    const float beta1h = par[p.off_p + 5];
    const float beta2h = par[p.off_p + 6];
    const float gscale = p.n_params == 8 ? par[p.off_p + 7] : 1.0;
    const float keep = 1.0 - alpha * wd;
    for (uint i = gl_GlobalInvocationID.x; i < p.n; i += gl_NumWorkGroups.x * WG) {
        const float gi = g[p.off_g + i] * gscale;
        const float mi = m[p.off_m + i] * beta1 + gi * (1.0 - beta1);
        const float vi = v[p.off_v + i] * beta2 + gi * gi * (1.0 - beta2);
        m[p.off_m + i] = mi;
        v[p.off_v + i] = vi;
        const float mh = mi * beta1h;
        const float vh = sqrt(vi * beta2h) + eps;
        w[p.off_w + i] = w[p.off_w + i] * keep - alpha * mh / vh;
    }
}
