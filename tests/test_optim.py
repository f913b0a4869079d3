"""AdamW, clipping and accumulation against numpy written here from the formulas."""

import numpy as np
import pytest

from pyggml_train import ggml as G
from pyggml_train.config import GPT2Config
from pyggml_train.gpt2 import GPT2
from pyggml_train.optim import AdamW
from pyggml_train.train import accumulate

BETA1, BETA2, EPS, WD = 0.9, 0.95, 1e-8, 0.1


def numpy_adamw(w, g, m, v, t, lr, wd):
    """One float64 AdamW step (decoupled decay, bias-corrected moments)."""
    m = BETA1 * m + (1 - BETA1) * g
    v = BETA2 * v + (1 - BETA2) * g * g
    m_hat, v_hat = m / (1 - BETA1**t), v / (1 - BETA2**t)
    return w - lr * wd * w - lr * m_hat / (np.sqrt(v_hat) + EPS), m, v


class Quadratic:
    """loss = sum((x @ w.T + b)^2): a 2-D weight (decayed) and a bias (not decayed)."""

    def __init__(self, ctx, seed=0):
        rng = np.random.default_rng(seed)
        self.xv = rng.normal(size=(4, 3))
        self.init = {"w": rng.normal(size=(5, 3)), "b": rng.normal(size=(5,))}
        self.x = ctx.input((4, 3))
        self.params = {n: ctx.param(v.shape, name=n) for n, v in self.init.items()}
        loss = G.sum(G.sqr(G.linear(self.x, self.params["w"], self.params["b"]))).set_loss()
        self.graph = ctx.graph(loss, backward=True)
        self.x.set(self.xv)
        for n, v in self.init.items():
            self.params[n].set(v)

    def numpy_grads(self, p):
        dy = 2 * (self.xv @ p["w"].T + p["b"])  # (4, 5)
        return {"w": dy.T @ self.xv, "b": dy.sum(0)}

    def backward(self):
        self.graph.reset_grads()
        self.graph.compute()


def run_steps(clip, lrs):
    ctx = G.Context("cpu", threads=2)
    prob = Quadratic(ctx)
    grads = {n: prob.graph.grad_accumulator(p) for n, p in prob.params.items()}
    opt = AdamW(ctx, prob.params, grads, BETA1, BETA2, EPS, WD, grad_clip=clip)
    p = {n: v.copy() for n, v in prob.init.items()}
    m = {n: np.zeros_like(v) for n, v in p.items()}
    v = {n: np.zeros_like(x) for n, x in p.items()}
    for t, lr in enumerate(lrs, start=1):
        prob.backward()
        g = prob.numpy_grads(p)
        norm = np.sqrt(sum((x**2).sum() for x in g.values()))
        assert opt.step(lr) == pytest.approx(norm, rel=1e-5)
        factor = min(1.0, clip / (norm + 1e-6)) if clip is not None else 1.0
        for n in p:
            wd = WD if p[n].ndim == 2 else 0.0
            p[n], m[n], v[n] = numpy_adamw(p[n], g[n] * factor, m[n], v[n], t, lr, wd)
        for n in p:
            np.testing.assert_allclose(prob.params[n].numpy(), p[n], rtol=1e-5, atol=1e-6)
    return opt, p


def test_one_adamw_step():
    run_steps(clip=None, lrs=[0.01])


def test_several_steps_with_decay_mask_and_bias_correction():
    run_steps(clip=None, lrs=[0.01, 0.02, 0.015, 0.005, 0.03])


def test_global_norm_clipping():
    # the quadratic's gradient norm is > 1, so clip=1 scales every step down
    run_steps(clip=1.0, lrs=[0.01, 0.02, 0.01])


def test_state_export_and_import_continue_identically():
    ctx = G.Context("cpu", threads=2)
    prob = Quadratic(ctx)
    grads = {n: prob.graph.grad_accumulator(p) for n, p in prob.params.items()}
    opt = AdamW(ctx, prob.params, grads, BETA1, BETA2, EPS, WD, grad_clip=1.0)
    for _ in range(2):
        prob.backward()
        opt.step(0.01)
    state = opt.state()
    saved = {n: p.numpy() for n, p in prob.params.items()}
    prob.backward()
    opt.step(0.01)
    expected = {n: p.numpy() for n, p in prob.params.items()}

    other_ctx = G.Context("cpu", threads=2)
    other = Quadratic(other_ctx)
    for n, value in saved.items():
        other.params[n].set(value)
    other_grads = {n: other.graph.grad_accumulator(p) for n, p in other.params.items()}
    opt2 = AdamW(other_ctx, other.params, other_grads, BETA1, BETA2, EPS, WD, grad_clip=1.0)
    opt2.set_state(state)
    assert opt2.steps == 2
    other.backward()
    opt2.step(0.01)
    for n, value in expected.items():
        np.testing.assert_array_equal(other.params[n].numpy(), value)


def test_accumulating_k_micro_batches_equals_one_k_times_larger_batch():
    cfg = GPT2Config(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 11, (6, 8)), rng.integers(0, 11, (6, 8))
    models, updated = [], []
    for micro in (2, 6):  # 3 micro-batches of 2 rows, then one batch of 6
        model = GPT2(cfg, ctx=G.Context("cpu", threads=2), seed=3)
        step = model.graph(micro, 8, "train")
        parts = [(x[i : i + micro], y[i : i + micro]) for i in range(0, 6, micro)]
        loss = accumulate(step, parts)
        grads = {n: step.graph.grad(p) for n, p in model.params.items()}
        acc = {n: step.graph.grad_accumulator(p) for n, p in model.params.items()}
        AdamW(model.ctx, model.params, acc, grad_clip=1.0).step(1e-2)
        models.append((loss, grads))
        updated.append(model.state_dict())
    (loss_k, grads_k), (loss_1, grads_1) = models
    assert loss_k == pytest.approx(loss_1, rel=1e-6)
    for name, g in grads_1.items():
        np.testing.assert_allclose(grads_k[name], g, rtol=1e-4, atol=1e-5 * np.abs(g).max())
    for name, w in updated[1].items():
        np.testing.assert_allclose(updated[0][name], w, rtol=1e-5, atol=1e-6)
