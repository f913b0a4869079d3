"""Kernel selection (pyggml_train.kernels) and the record of which kernel ran each product.

The selection rule is a pure function of feature sets, so it is tested here for CPUs this
machine is not: AMX, AVX512-BF16 without AMX, AVX2 only. The record (patch 0019) is tested
on this machine's products, whose values are checked against float64 numpy.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.gradcheck import FWD_RTOL, assert_close
from helpers.matmul import bf16_round, ran, weight_product

from pyggml_train import ggml as G
from pyggml_train import kernels as K

AVX2 = frozenset({"sse2", "ssse3", "avx", "avx2", "fma", "f16c", "bmi2"})
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512vbmi"}
ZEN4 = AVX512 | {"avx512_bf16"}  # AMD Zen 4/5: AVX512-BF16, no AMX
SAPPHIRE = ZEN4 | {"amx_bf16", "amx_tile", "amx_int8"}  # Intel Xeon since Sapphire Rapids


def test_avx2_only_cpu_widens_bf16_and_keeps_f32_matmuls() -> None:
    c = K.select_kernels(AVX2, {"avx2", "fma", "f16c"}, "Haswell")
    assert c.bf16 == K.BF16_AVX2
    assert c.f32 == "OpenBLAS sgemm (Haswell)"
    assert c.matmul_dtype == "f32"
    assert c.notes == ()


def test_avx512_bf16_cpu_multiplies_bf16_natively_on_the_packed_gemm() -> None:
    c = K.select_kernels(ZEN4, {"avx2", "fma", "avx512f", "avx512_bf16"}, "SkylakeX")
    assert (c.bf16, c.bf16_small) == (K.BF16_PACKED_AVX512, K.BF16_AVX512BF16)
    assert c.matmul_dtype == "bf16"
    assert c.notes == ()


def test_packed_gemm_switched_off_takes_tinyblas_and_says_so() -> None:
    c = K.select_kernels(
        ZEN4, {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, "SkylakeX", gemm_on=False
    )
    assert (c.bf16, c.matmul_dtype) == (K.BF16_AVX512BF16, "bf16")
    assert any("PYGGML_BF16_GEMM=0" in n for n in c.notes)
    c = K.select_kernels(
        SAPPHIRE, {"avx512f", "avx512_bf16", "amx_bf16"}, "SkylakeX", gemm_on=False
    )
    assert c.bf16 == K.BF16_AVX512BF16
    assert any("PYGGML_BF16_GEMM=0" in n for n in c.notes)


def test_amx_cpu_without_an_amx_kernel_says_so() -> None:
    c = K.select_kernels(SAPPHIRE, {"avx2", "fma", "avx512f", "avx512_bf16"}, "SapphireRapids")
    assert c.bf16 == K.BF16_PACKED_AVX512
    assert c.matmul_dtype == "bf16"
    assert any("AMX" in n for n in c.notes)


def test_amx_cpu_with_an_amx_build_takes_the_tiles() -> None:
    c = K.select_kernels(SAPPHIRE, {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, "SkylakeX")
    assert c.bf16 == K.BF16_AMX
    assert c.matmul_dtype == "bf16"


def test_amx_build_on_a_cpu_without_amx_is_not_refused_and_takes_vdpbf16ps() -> None:
    """The AMX GEMM is compiled into builds for CPUs without it (it checks CPUID before it
    runs), so it is no reason to refuse the build: a Zen 4 takes the packed GEMM's
    vdpbf16ps."""
    c = K.select_kernels(ZEN4, {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, "SkylakeX")
    assert c.bf16 == K.BF16_PACKED_AVX512
    assert c.notes == ()


def test_amx_switched_off_says_so() -> None:
    compiled = {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}
    c = K.select_kernels(SAPPHIRE, compiled, "SkylakeX", amx_on=False)
    assert (c.bf16, c.matmul_dtype) == (K.BF16_PACKED_AVX512, "bf16")
    assert any("PYGGML_AMX=0" in n for n in c.notes)


def test_amx_kernel_record_is_named_as_the_tiles() -> None:
    choice = K.select_kernels(SAPPHIRE, {"avx512f", "avx512_bf16", "amx_bf16"}, "SkylakeX")
    assert K.kernel_name("amx_bf16", "bf16", choice) == K.BF16_AMX
    stats = [{"op": "mul_mat", "kernel": "amx_bf16", "type": "bf16", "products": 1, "macs": 8}]
    assert K.kernel_summary(stats, choice) == [f"mul_mat bf16: {K.BF16_AMX} 100%"]


def test_packed_and_small_bf16_products_are_named_apart() -> None:
    choice = K.select_kernels(ZEN4, {"avx512f", "avx512_bf16"}, "SkylakeX")
    stats = [
        {"op": "mul_mat", "kernel": "avx512_bf16", "type": "bf16", "products": 1, "macs": 3},
        {"op": "mul_mat", "kernel": "tinyblas", "type": "bf16", "products": 1, "macs": 1},
        {"op": "out_prod", "kernel": "avx512_bf16", "type": "f32", "products": 1, "macs": 4},
    ]
    assert K.kernel_summary(stats, choice) == [
        f"mul_mat bf16: {K.BF16_PACKED_AVX512} 75%, {K.BF16_AVX512BF16} 25%",
        f"out_prod f32: {K.BF16_PACKED_AVX512} 100%",
    ]


def test_bf16_cpu_with_a_build_that_lacks_it_widens_and_says_so() -> None:
    c = K.select_kernels(ZEN4, {"avx2", "fma", "avx512f"}, "SkylakeX")
    assert c.bf16 == K.BF16_AVX512F
    assert c.matmul_dtype == "f32"
    assert any("compiled without" in n for n in c.notes)


def test_no_simd_build_and_no_openblas() -> None:
    c = K.select_kernels(AVX2, set(), "")
    assert (c.bf16, c.matmul_dtype) == (K.BF16_SCALAR, "f32")
    assert c.f32.startswith("tinyBLAS f32")


def test_a_build_for_features_the_cpu_lacks_is_refused_with_the_fix() -> None:
    with pytest.raises(RuntimeError, match=r"\['avx512_bf16', 'avx512f'\].*build it on this"):
        K.select_kernels(AVX2, {"avx2", "avx512f", "avx512_bf16"}, "Haswell")


def test_cpu_features_reads_the_flags_line() -> None:
    text = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512_bf16\n\n"
    text += "processor\t: 1\nflags\t\t: fpu\n"
    assert K.cpu_features(text) == {"fpu", "avx2", "avx512_bf16"}
    assert K.cpu_features("model name\t: no flags here\n") == frozenset()


def test_this_build_runs_on_this_cpu() -> None:
    features = K.cpu_features()
    if not features:
        pytest.skip("no /proc/cpuinfo flags on this OS: nothing to compare the build with")
    assert K.compiled_features() - K.RUNTIME_DISPATCHED <= features
    choice = K.this_cpu()
    # the tiles exactly where the kernel found them usable (CPU, Linux, PYGGML_AMX), the
    # packed GEMM's engine as the kernel runs it
    assert (choice.bf16 == K.BF16_AMX) == (K.bf16_gemm_engine() == "amx_bf16")
    engine_names = {"amx_bf16": K.BF16_AMX, "avx512_bf16": K.BF16_PACKED_AVX512}
    assert choice.bf16 == engine_names.get(K.bf16_gemm_engine(), choice.bf16_small)
    if K.amx_usable() and not K.amx_emulated():
        assert "amx_bf16" in features


def test_x86_64_linux_builds_contain_the_amx_gemm() -> None:
    import platform
    import sys

    if platform.machine() not in ("x86_64", "AMD64") or not sys.platform.startswith("linux"):
        pytest.skip(f"the AMX GEMM is built for x86-64 Linux only, not {platform.machine()}")
    assert "amx_bf16" in K.compiled_features()


def test_f32_product_is_recorded_on_the_kernel_the_build_has() -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((96, 64)).astype(np.float32)  # (n, k)
    x = rng.standard_normal((80, 64)).astype(np.float32)  # (m, k)
    got = weight_product("f32", w, x, 2)
    assert_close(got, x.astype(np.float64) @ w.T.astype(np.float64), FWD_RTOL, "f32 mul_mat")
    kernel = "cblas_sgemm" if G.cpu_blas() else "tinyblas"
    assert ran("mul_mat", "f32") == {kernel: 80 * 96 * 64}


def test_out_prod_is_recorded() -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((48, 72)).astype(np.float32)
    b = rng.standard_normal((48, 45)).astype(np.float32)
    ctx = G.Context("cpu", 2)
    at, bt = ctx.input(a.shape), ctx.input(b.shape)
    out = G.out_prod(at, bt)
    graph = ctx.graph(out)
    at.set(a)
    bt.set(b)
    K.reset_matmul_stats()
    graph.compute()
    kernel = "cblas_sgemm" if G.cpu_blas() else "out_prod_loop"
    assert ran("out_prod", "f32") == {kernel: 45 * 72 * 48}
    assert K.kernel_summary(K.matmul_stats(), K.this_cpu())[0].startswith("out_prod f32: ")


# k a multiple of 32 (tinyBLAS's AVX512-BF16 step). Products with every side >= 32 run on
# the packed bf16 GEMM where this process has it ("packed"; tests/ops/test_bf16_gemm.py), else
# on tinyBLAS. Fewer than 32 rows stay on tinyBLAS, which takes weights whose row count is
# a multiple of 4 (GPT-2's all are) and declines others, which then run ggml's vec_dot
# loop: the record must tell them all apart.
@pytest.mark.parametrize(
    ("m", "n", "k", "kernel"),
    [
        (80, 96, 64, "packed"),
        (20, 96, 64, "tinyblas"),
        (17, 52, 256, "tinyblas"),
        (17, 50, 256, "vec_dot"),
    ],
)
def test_bf16_product_runs_on_the_recorded_kernel_against_float64(
    m: int, n: int, k: int, kernel: str
) -> None:
    rng = np.random.default_rng(2)
    w = rng.standard_normal((n, k)).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32)
    if kernel == "packed":
        kernel = K.bf16_gemm_engine() or "tinyblas"
    results = [weight_product("bf16", w, x, threads) for threads in (1, 2, 3)]
    # Both operands are rounded to bf16 (ggml converts x to the weight's dot type); the
    # products and sums are f32, so only f32 accumulation error remains.
    want = bf16_round(x).astype(np.float64) @ bf16_round(w).T.astype(np.float64)
    assert_close(results[0], want, FWD_RTOL, "bf16 mul_mat")
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0], "bf16 mul_mat differs across thread counts")
    choice = K.this_cpu()
    assert ran("mul_mat", "bf16") == {kernel: m * n * k}
    name = K.kernel_name(kernel, "bf16", choice)
    assert K.kernel_summary(K.matmul_stats(), choice) == [f"mul_mat bf16: {name} 100%"]


def test_unknown_cpu_features_are_taken_as_the_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(K, "cpu_features", lambda cpuinfo=None: frozenset())
    choice = K.this_cpu()  # no /proc/cpuinfo (e.g. macOS): no refusal, the build's kernels
    compiled = K.compiled_features()
    amx = {"amx_bf16"} if K.amx_usable() else set()
    cpu = (compiled - K.RUNTIME_DISPATCHED) | amx
    want = K.select_kernels(
        cpu, compiled, K.blas_core(), K.amx_usable(), K.bf16_gemm_engine() != ""
    )
    assert choice == want


def test_matmul_dtype_auto_takes_the_rules_dtype() -> None:
    """GPT2Config(matmul_dtype='auto') builds the same graph as the dtype the rule picks for
    this CPU: its loss equals that model's bit for bit."""
    import dataclasses

    from pyggml_train.config import GPT2Config
    from pyggml_train.gpt2 import GPT2

    cfg = GPT2Config(vocab_size=29, block_size=16, n_layer=1, n_head=2, n_embd=32)
    picked = K.this_cpu().matmul_dtype
    idx = np.random.default_rng(3).integers(0, 29, (2, 17))
    losses = {}
    for dtype in ("auto", picked):
        model = GPT2(dataclasses.replace(cfg, matmul_dtype=dtype), ctx=G.Context("cpu", 2), seed=1)
        assert model.matmul_dtype == picked
        losses[dtype] = model.graph(2, 16, "loss").run(idx[:, :-1], idx[:, 1:])
    assert losses["auto"] == losses[picked]
