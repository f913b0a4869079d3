"""bf16 mixed precision (GPT2Config.matmul_dtype='bf16'): Linear and LM-head matmuls on bf16
casts of f32 master weights; their backward products on bf16-rounded operands where the
packed bf16 GEMM runs (AMX tiles or AVX512-BF16, patch 0021), else in f32; gradient
accumulators, optimizer and everything else in f32.

Stated distance: over a 120-step training run the bf16 loss curve stays within
LOSS_CURVE_ATOL (nats) of the f32 curve at every step, from the same initialization and
batches; gradients agree with f32 to GRAD_REL of each gradient's largest magnitude.
"""

import dataclasses

import numpy as np
import pytest
from reference import gpt2_numpy as ref

from pyggml_train import ggml as G
from pyggml_train.config import GPT2Config
from pyggml_train.gpt2 import GPT2
from pyggml_train.hf_gpt2 import init_params
from pyggml_train.step import OptimizerStep

LOSS_CURVE_ATOL = 0.01
GRAD_REL = 3e-2
CONFIG = GPT2Config(vocab_size=29, block_size=16, n_layer=2, n_head=2, n_embd=32)


def _batches(steps: int, b: int = 8, t: int = 16) -> list[tuple[np.ndarray, np.ndarray]]:
    """A learnable stream: each token is (3 * previous + 1) mod V, from random starts."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(steps):
        seq = np.empty((b, t + 1), dtype=np.int64)
        seq[:, 0] = rng.integers(0, CONFIG.vocab_size, b)
        for j in range(1, t + 1):
            seq[:, j] = (3 * seq[:, j - 1] + 1) % CONFIG.vocab_size
        out.append((seq[:, :-1], seq[:, 1:]))
    return out


def _loss_curve(matmul_dtype: str, steps: int) -> list[float]:
    config = dataclasses.replace(CONFIG, matmul_dtype=matmul_dtype)
    model = GPT2(config, ctx=G.Context("cpu", threads=2), seed=5)
    step = OptimizerStep(model.ctx, model.params, model.graph(8, 16, "train"), weight_decay=0.0)
    return [step([batch], 3e-3).loss for batch in _batches(steps)]


@pytest.mark.slow
def test_loss_curve_stays_within_the_stated_distance_of_f32() -> None:
    f32 = np.array(_loss_curve("f32", 120))
    bf16 = np.array(_loss_curve("bf16", 120))
    assert f32[-1] < 0.25 * f32[0], "the run must learn for the comparison to mean anything"
    gap = np.abs(bf16 - f32)
    assert gap.max() <= LOSS_CURVE_ATOL, f"largest gap {gap.max():.4f} at step {gap.argmax()}"


def test_gradients_match_the_f32_reference() -> None:
    params = {k: v.astype(np.float32) for k, v in init_params(CONFIG, 3).items()}
    config = dataclasses.replace(CONFIG, matmul_dtype="bf16")
    model = GPT2(config, params=params, ctx=G.Context("cpu", threads=2))
    idx, targets = _batches(1)[0]
    loss, grads = model.loss_and_grads(idx, targets)
    want_loss, want_grads = ref.loss_and_grads(params, idx, targets, CONFIG)
    assert abs(loss - want_loss) <= 1e-2 * want_loss
    for name, want in want_grads.items():
        err = np.abs(grads[name] - want).max() / np.abs(want).max()
        assert err <= GRAD_REL, f"{name}: {err:.3g}"


def test_matmul_dtype_is_checked() -> None:
    with pytest.raises(ValueError, match="matmul_dtype must be one of"):
        dataclasses.replace(CONFIG, matmul_dtype="f16")


def test_weight_gradients_go_straight_into_the_master_accumulators() -> None:
    """A bf16 train graph is the f32 one plus one cast per matmul weight (patch 0015): each
    cast weight's gradient is added into its f32 master's accumulator by the product itself,
    with no weight-sized temporary and no extra ADD per weight."""
    ops = {}
    for dtype in ("f32", "bf16"):
        model = GPT2(dataclasses.replace(CONFIG, matmul_dtype=dtype), ctx=G.Context("cpu", 1))
        names = model.graph(8, 16, "train").graph.op_names
        ops[dtype] = {op: names.count(op) for op in set(names) - {"RESHAPE", "VIEW"}}
    weights = 4 * CONFIG.n_layer + 1  # qkv, attention proj, fc, mlp proj per block; lm_head
    assert ops["bf16"].pop("CPY") == weights
    assert ops["bf16"] == ops["f32"]
