"""The packed bf16 GEMM against float64 numpy: bf16 MUL_MAT (patch 0021) and the backward's
OUT_PROD (patch 0021), on AMX tiles where the CPU has them, else on AVX512-BF16 registers
(patch 0021) where the build targets them.

Where neither engine runs (e.g. AMD Zen 3: no AVX512-BF16, no AMX), these tests skip,
naming the CPU. The tile algorithm is checked on every CPU by
tests/cpp/test_amx_bf16_emulated (the same kernel source with the tile instructions
emulated in C); here the engine this process runs is checked through ggml: GPT-2-sized and
edge-shaped products, batched inputs, the backward's OUT_PROD with contiguous and
transposed operands, bit-identical results on 1, 2 and 3 threads, patch 0019's record
naming the engine, f32 graphs staying off it, a small mixed-precision model's gradients and
loss curve, and PYGGML_AMX=0 / PYGGML_BF16_GEMM=0 switching the tiles / the GEMM off.

A build with -DPYGGML_AMX_EMULATE=ON runs these tests on any CPU through the emulated
tiles (all but the GPT-2-sized products, too slow there): the whole tile path through
ggml, with C in place of the tile instructions.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.env import child_env
from helpers.gradcheck import FWD_RTOL, assert_close
from helpers.matmul import bf16_round, ran, weight_product
from reference import gpt2_numpy as ref

from pyggml_train import ggml as G
from pyggml_train import kernels as K
from pyggml_train.config import GPT2Config
from pyggml_train.gpt2 import GPT2
from pyggml_train.hf_gpt2 import init_params
from pyggml_train.step import OptimizerStep


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown"


def needs_gemm() -> str:
    """The engine of the packed bf16 GEMM in this process ("amx_bf16" or "avx512_bf16");
    skips where there is none (a CPU feature, not an optional component: no install makes
    it appear). A CPU with AMX-BF16 whose process may not use the tiles is a failure, unless
    PYGGML_AMX=0 asked for that."""
    engine = K.bf16_gemm_engine()
    if os.environ.get("PYGGML_BF16_GEMM") == "0":
        pytest.skip("PYGGML_BF16_GEMM=0 switches the packed bf16 GEMM off in this process")
    if "amx_bf16" in K.cpu_features() and os.environ.get("PYGGML_AMX") != "0":
        assert "amx_bf16" in K.compiled_features(), "the CPU has AMX-BF16, the build no AMX GEMM"
        assert K.amx_usable(), "this CPU has AMX-BF16 but Linux refused the tile state"
    if not engine:
        pytest.skip(
            f"needs AMX-BF16 tiles or a build targeting AVX512-BF16; this CPU ({cpu_model()})"
            " and build have neither"
        )
    return engine


def too_slow(macs: int) -> bool:
    """A GPT-2-sized product takes minutes on emulated tiles."""
    return K.bf16_gemm_engine() == "amx_bf16" and K.amx_emulated() and macs > 10**8


# (batch dims + m, n, k): GPT-2 124M's products at B*T = 512 (qkv, MLP up, MLP down, the
# padded vocabulary), then sides off the 16/32 tile grid, then src1 with batch dims.
@pytest.mark.parametrize(
    ("ms", "n", "k"),
    [
        ((512,), 2304, 768),
        ((256,), 3072, 768),
        ((256,), 768, 3072),
        ((128,), 50304, 768),
        ((33,), 50, 45),
        ((100,), 70, 130),
        ((47,), 97, 257),
        ((3, 40), 64, 96),
        ((2, 3, 17), 33, 64),
    ],
)
def test_bf16_product_against_float64(ms: tuple, n: int, k: int) -> None:
    engine = needs_gemm()
    if too_slow(int(np.prod(ms)) * n * k):
        pytest.skip("a GPT-2-sized product takes minutes on the emulated tiles")
    rng = np.random.default_rng(n + k)
    w = rng.standard_normal((n, k)).astype(np.float32)  # (n, k)
    x = rng.standard_normal((*ms, k)).astype(np.float32)  # (..., m, k)
    results = [weight_product("bf16", w, x, threads) for threads in (1, 2, 3)]
    assert ran("mul_mat", "bf16") == {engine: int(np.prod(ms)) * n * k}
    # both operands rounded to bf16, products exact in f32: only the f32 accumulation errs
    want = bf16_round(x).astype(np.float64) @ bf16_round(w).T.astype(np.float64)
    assert_close(results[0], want, FWD_RTOL, f"bf16 mul_mat on {engine}")
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0], "packed product differs across thread counts")


def out_product(
    a: np.ndarray, b: np.ndarray, threads: int, allow_bf16: bool, b_t: bool
) -> np.ndarray:
    """``b^T @ a`` for a (k, n) and b (k, m) through ggml's OUT_PROD, with patch 0019's record
    reset first; b_t passes b as a transposed view of its (m, k) copy, as the MUL_MAT
    backward passes the gradient for the input gradient."""
    ctx = G.Context("cpu", threads)
    at = ctx.input(a.shape)
    bt = ctx.input(b.T.shape if b_t else b.shape)
    out = G.out_prod(at, G.transpose(bt) if b_t else bt, allow_bf16=allow_bf16)
    graph = ctx.graph(out)
    at.set(a)
    bt.set(np.ascontiguousarray(b.T) if b_t else b)
    K.reset_matmul_stats()
    graph.compute()
    return out.numpy()


# (k, n, m): out = b^T @ a with a (k, n), b (k, m). GPT-2 124M's backward at B*T = 256: the
# weight gradients of the MLP (k = tokens) and the input gradients of the MLP and the
# padded vocabulary (k = the forward's outputs); then sides off the 16/32 tile grid.
OUT_PROD_SHAPES = [
    (256, 768, 3072),
    (3072, 768, 256),
    (50304, 768, 128),
    (45, 50, 33),
    (130, 70, 100),
    (257, 97, 47),
]


@pytest.mark.parametrize("b_t", [False, True], ids=["b", "b-transposed"])
@pytest.mark.parametrize(("k", "n", "m"), OUT_PROD_SHAPES)
def test_bf16_out_prod_against_float64(k: int, n: int, m: int, b_t: bool) -> None:
    engine = needs_gemm()
    if too_slow(k * n * m):
        pytest.skip("a GPT-2-sized product takes minutes on the emulated tiles")
    rng = np.random.default_rng(k + n + m)
    a = rng.standard_normal((k, n)).astype(np.float32)
    b = rng.standard_normal((k, m)).astype(np.float32)
    results = [out_product(a, b, threads, True, b_t) for threads in (1, 2, 3)]
    assert ran("out_prod", "f32") == {engine: k * n * m}
    want = bf16_round(b).T.astype(np.float64) @ bf16_round(a).astype(np.float64)
    assert_close(results[0], want, FWD_RTOL, f"bf16 out_prod on {engine}")
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0], "packed out_prod differs across thread counts")


def test_out_prod_without_allow_bf16_stays_f32() -> None:
    """An OUT_PROD that its graph did not allow bf16 (every f32 graph) keeps f32 operands."""
    engine = needs_gemm()
    rng = np.random.default_rng(3)
    a = rng.standard_normal((64, 48)).astype(np.float32)
    b = rng.standard_normal((64, 40)).astype(np.float32)
    got = out_product(a, b, 2, False, False)
    assert engine not in ran("out_prod", "f32")
    assert_close(got, b.T.astype(np.float64) @ a.astype(np.float64), FWD_RTOL, "f32 out_prod")
    assert np.abs(got - bf16_round(b).T @ bf16_round(a)).max() > 0, "operands were rounded"


def test_small_products_stay_on_tinyblas() -> None:
    engine = needs_gemm()
    rng = np.random.default_rng(7)
    w = rng.standard_normal((64, 16)).astype(np.float32)  # (N, K)
    weight_product("bf16", w, np.ones((40, 16), np.float32), 2)
    assert engine not in ran("mul_mat", "bf16"), "K = 16 < 32 must not take the packed GEMM"


CONFIG = GPT2Config(
    vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=64, matmul_dtype="bf16"
)


def test_small_model_gradients_on_the_gemm_match_the_f32_reference() -> None:
    engine = needs_gemm()
    params = {k: v.astype(np.float32) for k, v in init_params(CONFIG, 3).items()}
    model = GPT2(CONFIG, params=params, ctx=G.Context("cpu", threads=2))
    rng = np.random.default_rng(0)
    idx = rng.integers(0, CONFIG.vocab_size, (4, 17))
    K.reset_matmul_stats()
    loss, grads = model.loss_and_grads(idx[:, :-1], idx[:, 1:])
    summary = K.kernel_summary(K.matmul_stats(), K.this_cpu())
    # every weight product on the GEMM: the forward's, and the backward's (patch 0021)
    name = K.kernel_name(engine, "bf16", K.this_cpu())
    assert f"mul_mat bf16: {name} 100%" in summary, summary
    assert f"out_prod f32: {name} 100%" in summary, summary
    f32_config = dataclasses.replace(CONFIG, matmul_dtype="f32")
    want_loss, want_grads = ref.loss_and_grads(params, idx[:, :-1], idx[:, 1:], f32_config)
    assert abs(loss - want_loss) <= 1e-2 * want_loss
    for name, want in want_grads.items():
        err = np.abs(grads[name] - want).max() / np.abs(want).max()
        assert err <= 3e-2, f"{name}: {err:.3g}"


def test_small_model_step_is_bit_identical_on_1_2_and_3_threads() -> None:
    """A whole bf16 training step (forward, backward on the GEMM, AdamW) gives the same
    loss and weights, bit for bit, whatever the thread count."""
    needs_gemm()
    params = {k: v.astype(np.float32) for k, v in init_params(CONFIG, 4).items()}
    batch = np.random.default_rng(4).integers(0, CONFIG.vocab_size, (8, 17))
    results = []
    for threads in (1, 2, 3):
        model = GPT2(CONFIG, params=params, ctx=G.Context("cpu", threads=threads))
        step = OptimizerStep(model.ctx, model.params, model.graph(8, 16, "train"))
        loss = step([(batch[:, :-1], batch[:, 1:])], 3e-3).loss
        results.append((loss, {name: p.numpy() for name, p in model.params.items()}))
    for loss, weights in results[1:]:
        assert loss == results[0][0]
        for name, w in weights.items():
            np.testing.assert_array_equal(w, results[0][1][name], f"{name} differs across threads")


def test_f32_model_backward_stays_off_the_gemm() -> None:
    """Only a bf16 forward product lets its backward round to bf16: an f32 model's
    products all stay f32."""
    engine = needs_gemm()
    config = dataclasses.replace(CONFIG, matmul_dtype="f32")
    model = GPT2(config, ctx=G.Context("cpu", threads=2), seed=2)
    idx = np.random.default_rng(2).integers(0, config.vocab_size, (4, 17))
    K.reset_matmul_stats()
    model.loss_and_grads(idx[:, :-1], idx[:, 1:])
    assert all(s["kernel"] != engine for s in K.matmul_stats()), K.matmul_stats()


@pytest.mark.slow
def test_small_model_trains_on_the_gemm_like_f32() -> None:
    needs_gemm()
    rng = np.random.default_rng(1)
    batches = [rng.integers(0, CONFIG.vocab_size, (8, 17)) for _ in range(20)]
    curves = {}
    for dtype in ("f32", "bf16"):
        model = GPT2(
            dataclasses.replace(CONFIG, matmul_dtype=dtype), ctx=G.Context("cpu", 2), seed=5
        )
        step = OptimizerStep(model.ctx, model.params, model.graph(8, 16, "train"))
        curves[dtype] = np.array([step([(b[:, :-1], b[:, 1:])], 3e-3).loss for b in batches])
    assert np.abs(curves["bf16"] - curves["f32"]).max() <= 0.01


def run_switched_off(var: str, code: str) -> None:
    """Runs ``code`` in a child process with environment variable ``var`` = "0" (the engine is
    decided once per process), importing the same pyggml_train as the tests."""
    subprocess.run(
        [sys.executable, "-c", code], env=child_env(**{var: "0"}), check=True, timeout=120
    )


PRODUCTS = (
    "import numpy as np\n"
    "from pyggml_train import ggml as G, kernels as K\n"
    "ctx = G.Context('cpu', 2)\n"
    "w, x = ctx.input((64, 64)), ctx.input((64, 64))\n"
    "out = G.mul_mat(G.cast(w, 'bf16'), x)\n"
    "grad = G.out_prod(w, x, allow_bf16=True)\n"
    "g = ctx.graph([out, grad])\n"
    "rng = np.random.default_rng(0)\n"
    "wv, xv = rng.standard_normal((2, 64, 64)).astype(np.float32)\n"
    "w.set(wv); x.set(xv)\n"
    "K.reset_matmul_stats(); g.compute()\n"
    "kernels = {s['kernel'] for s in K.matmul_stats()}\n"
)


@pytest.mark.slow
def test_pyggml_amx_0_switches_the_tiles_off() -> None:
    """Runs on every CPU: with PYGGML_AMX=0 no product records the AMX kernel."""
    run_switched_off(
        "PYGGML_AMX",
        PRODUCTS + "assert not K.amx_usable()\n"
        "assert K.this_cpu().bf16 != K.BF16_AMX\n"
        "assert 'amx_bf16' not in kernels, kernels\n",
    )


@pytest.mark.slow
def test_pyggml_bf16_gemm_0_switches_the_gemm_off() -> None:
    """Runs on every CPU: with PYGGML_BF16_GEMM=0 neither engine runs; the bf16 product
    goes to tinyBLAS and the OUT_PROD keeps its f32 operands (an exact f32 product)."""
    run_switched_off(
        "PYGGML_BF16_GEMM",
        PRODUCTS + "assert K.bf16_gemm_engine() == ''\n"
        "assert not {'amx_bf16', 'avx512_bf16'} & kernels, kernels\n"
        "want = xv.astype(np.float64).T @ wv.astype(np.float64)\n"
        "assert np.abs(grad.numpy() - want).max() <= 1e-5 * np.abs(want).max()\n",
    )
