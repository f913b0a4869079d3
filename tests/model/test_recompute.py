"""Activation recomputation (GPT2Config.recompute = 'blocks', recompute.py): the loss and
every gradient equal those of the whole-model graph bit for bit on the CPU, over several
accumulated micro-batches, with and without dropout, f32 or bf16 matmuls; the step
protocol drives it as any train graph. And the two graph features it rests on:
accumulators shared by graphs, and compute buffers shared by graphs (G.Arena)."""

import dataclasses

import numpy as np
import pytest

import pyggml_train as pg
from pyggml_train import ggml as G
from pyggml_train.config import GPT2Config
from pyggml_train.gpt2 import GPT2
from pyggml_train.hf_gpt2 import init_params
from pyggml_train.recompute import RecomputeStep
from pyggml_train.step import OptimizerStep, accumulate

BASE = GPT2Config(vocab_size=41, block_size=16, n_layer=3, n_head=2, n_embd=32)


def batches(k: int, b: int = 3, t: int = 12) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    return [tuple(rng.integers(0, BASE.vocab_size, (2, b, t))) for _ in range(k)]


def grads_of(config: GPT2Config, k: int) -> tuple[float, dict[str, np.ndarray]]:
    params = init_params(config, 3)
    model = GPT2(config, params=params, ctx=G.Context("cpu", threads=2), seed=5)
    step = model.graph(3, 12, "train")
    assert isinstance(step, RecomputeStep) == (config.recompute == "blocks")
    loss = accumulate(step, batches(k))
    return loss, {name: step.graph.grad(p) for name, p in model.params.items()}


@pytest.mark.parametrize(
    "options",
    [
        dict(attention="fused"),
        dict(attention="unfused", loss_kind="dense"),
        dict(attention="fused", dropout=0.2),
        dict(attention="fused", padded_vocab_size=48, matmul_dtype="bf16"),
    ],
)
def test_gradients_equal_the_whole_graph_bit_for_bit(options: dict) -> None:
    config = dataclasses.replace(BASE, **options)
    want_loss, want = grads_of(config, k=3)
    loss, got = grads_of(dataclasses.replace(config, recompute="blocks"), k=3)
    assert loss == want_loss
    for name, value in want.items():
        assert np.abs(value).max() > 0, name  # every parameter got a gradient
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_training_steps_match_the_whole_graph() -> None:
    losses = {}
    for recompute in ("none", "blocks"):
        config = dataclasses.replace(BASE, recompute=recompute, dropout=0.1)
        model = GPT2(config, params=init_params(config, 3), ctx=G.Context("cpu", threads=2))
        step = OptimizerStep(model.ctx, model.params, model.graph(3, 12, "train"))
        losses[recompute] = [step(batches(2), 1e-3).loss for _ in range(3)]
    assert losses["blocks"] == losses["none"]


def test_shared_accumulators_and_arena() -> None:
    ctx = pg.Context(threads=1)
    w = ctx.param((3,), init=np.array([1.0, 2.0, 3.0]))
    x = ctx.input((3,))
    acc = ctx.tensor((3,))
    arena = G.Arena()
    # two graphs adding into one accumulator: d/dw sum(w * x) = x, and d/dw sum(w * w) = 2w
    g1 = ctx.graph(G.sum(G.mul(w, x)).set_loss(), True, grad_accs={w: acc}, arena=arena)
    g2 = ctx.graph(G.sum(G.mul(w, w)).set_loss(), True, grad_accs={w: acc}, arena=arena)
    assert g1.grad_accumulator(w) is not None
    x.set(np.array([0.5, -1.0, 4.0]))
    g1.reset_grads()
    g1.compute()
    g2.compute()
    g1.compute()  # the arena hands its buffers back and forth
    np.testing.assert_array_equal(acc.numpy(), 2 * np.array([0.5, -1.0, 4.0]) + [2.0, 4.0, 6.0])
    with pytest.raises(ValueError, match="grad_accs.*f32 leaf of its shape"):
        ctx.graph(G.sum(G.mul(w, x)).set_loss(), True, grad_accs={w: ctx.tensor((4,))})
