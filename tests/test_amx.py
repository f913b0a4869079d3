"""bf16 MUL_MAT on AMX tiles (patch 0021) against float64 numpy, on a CPU that has them.

The tile path runs only where the CPU has AMX-BF16 (and Linux grants the tile state);
everywhere else these tests skip, naming the CPU. Its algorithm is checked on every CPU by
tests/cpp/test_amx_bf16_emulated (the same kernel source with the tile instructions
emulated in C); here the real instructions are checked: GPT-2-sized and edge-shaped
products, batched inputs, bit-identical results on 1, 2 and 3 threads, patch 0019's
record naming the tiles, a small mixed-precision model's gradients and loss curve, and
PYGGML_AMX=0 switching the path off.

A build with -DPYGGML_AMX_EMULATE=ON runs these tests on any CPU through the emulated
tiles (all but the GPT-2-sized products, too slow there): the whole path through ggml,
with C in place of the tile instructions.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gradcheck import FWD_RTOL, assert_close
from reference import gpt2_numpy as ref
from test_kernels import bf16_round, weight_product

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


def needs_amx() -> None:
    """Skip unless this CPU has AMX-BF16 tiles (a CPU feature, not an optional component:
    no install makes it appear) or the build emulates them. A CPU that has them but whose
    process may not use them is a failure, unless PYGGML_AMX=0 asked for that."""
    if K.amx_emulated() and os.environ.get("PYGGML_AMX") != "0":
        return
    if "amx_bf16" not in K.cpu_features():
        pytest.skip(f"needs AMX-BF16 tiles; this CPU ({cpu_model()}) has none")
    if os.environ.get("PYGGML_AMX") == "0":
        pytest.skip("PYGGML_AMX=0 switches the AMX path off in this process")
    assert "amx_bf16" in K.compiled_features(), "the CPU has AMX-BF16, the build no AMX GEMM"
    assert K.amx_usable(), "this CPU has AMX-BF16 but Linux refused the tile state"


def ran_bf16() -> dict[str, int]:
    return {
        s["kernel"]: s["macs"]
        for s in K.matmul_stats()
        if (s["op"], s["type"]) == ("mul_mat", "bf16")
    }


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
def test_bf16_product_on_tiles_against_float64(ms: tuple, n: int, k: int) -> None:
    needs_amx()
    if K.amx_emulated() and np.prod(ms) * n * k > 10**8:
        pytest.skip("a GPT-2-sized product takes minutes on the emulated tiles")
    rng = np.random.default_rng(n + k)
    w = rng.standard_normal((n, k)).astype(np.float32)  # (n, k)
    x = rng.standard_normal((*ms, k)).astype(np.float32)  # (..., m, k)
    results = [weight_product("bf16", w, x, threads) for threads in (1, 2, 3)]
    assert ran_bf16() == {"amx_bf16": int(np.prod(ms)) * n * k}
    # both operands rounded to bf16, products exact in f32: only the f32 accumulation errs
    want = bf16_round(x).astype(np.float64) @ bf16_round(w).T.astype(np.float64)
    assert_close(results[0], want, FWD_RTOL, "bf16 mul_mat on AMX tiles")
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0], "AMX product differs across thread counts")


def test_small_products_stay_on_tinyblas() -> None:
    needs_amx()
    rng = np.random.default_rng(7)
    w = rng.standard_normal((64, 16)).astype(np.float32)  # (N, K)
    weight_product("bf16", w, np.ones((40, 16), np.float32), 2)
    assert "amx_bf16" not in ran_bf16(), "K = 16 < 32 must not take the tile path"


CONFIG = GPT2Config(
    vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=64, matmul_dtype="bf16"
)


def test_small_model_gradients_on_tiles_match_the_f32_reference() -> None:
    needs_amx()
    params = {k: v.astype(np.float32) for k, v in init_params(CONFIG, 3).items()}
    model = GPT2(CONFIG, params=params, ctx=G.Context("cpu", threads=2))
    rng = np.random.default_rng(0)
    idx = rng.integers(0, CONFIG.vocab_size, (4, 17))
    K.reset_matmul_stats()
    loss, grads = model.loss_and_grads(idx[:, :-1], idx[:, 1:])
    summary = K.kernel_summary(K.matmul_stats(), K.this_cpu())
    assert any(line.startswith(f"mul_mat bf16: {K.BF16_AMX} 100%") for line in summary), summary
    f32_config = dataclasses.replace(CONFIG, matmul_dtype="f32")
    want_loss, want_grads = ref.loss_and_grads(params, idx[:, :-1], idx[:, 1:], f32_config)
    assert abs(loss - want_loss) <= 1e-2 * want_loss
    for name, want in want_grads.items():
        err = np.abs(grads[name] - want).max() / np.abs(want).max()
        assert err <= 3e-2, f"{name}: {err:.3g}"


def test_small_model_trains_on_tiles_like_f32() -> None:
    needs_amx()
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


def test_pyggml_amx_0_switches_the_tiles_off() -> None:
    """Runs on every CPU: with PYGGML_AMX=0 no bf16 product records the AMX kernel."""
    code = (
        "import numpy as np\n"
        "from pyggml_train import ggml as G, kernels as K\n"
        "ctx = G.Context('cpu', 2)\n"
        "w, x = ctx.input((64, 64)), ctx.input((64, 64))\n"
        "out = G.mul_mat(G.cast(w, 'bf16'), x)\n"
        "g = ctx.graph(out)\n"
        "w.set(np.ones((64, 64), np.float32)); x.set(np.ones((64, 64), np.float32))\n"
        "K.reset_matmul_stats(); g.compute()\n"
        "assert not K.amx_usable()\n"
        "assert K.this_cpu().bf16 != K.BF16_AMX\n"
        "assert all(s['kernel'] != 'amx_bf16' for s in K.matmul_stats())\n"
        "assert float(out.numpy()[0, 0]) == 64.0\n"
    )
    import pyggml_train

    root = str(Path(pyggml_train.__file__).resolve().parents[1])  # the copy the tests import
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYGGML_AMX": "0", "PYTHONPATH": path}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
