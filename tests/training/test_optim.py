"""AdamW and the global-norm clip of a step against numpy written here from the formulas."""

import numpy as np
import pytest

from pyggml_train import ggml as G
from pyggml_train.step import OptimizerStep

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
        self.loss = G.sum(G.sqr(G.linear(self.x, self.params["w"], self.params["b"]))).set_loss()
        self.graph = ctx.graph(self.loss, backward=True)
        for n, v in self.init.items():
            self.params[n].set(v)

    def run(self, x, _targets):
        """The train-graph interface of step.py: one micro-batch forward + backward."""
        self.x.set(x)
        self.graph.compute()
        return float(self.loss.numpy())

    def numpy_grads(self, p):
        dy = 2 * (self.xv @ p["w"].T + p["b"])  # (4, 5)
        return {"w": dy.T @ self.xv, "b": dy.sum(0)}

    def batches(self):
        return [(self.xv, None)]


def run_steps(clip, lrs):
    ctx = G.Context("cpu", threads=2)
    prob = Quadratic(ctx)
    step = OptimizerStep(ctx, prob.params, prob, BETA1, BETA2, EPS, WD, grad_clip=clip)
    p = {n: v.copy() for n, v in prob.init.items()}
    m = {n: np.zeros_like(v) for n, v in p.items()}
    v = {n: np.zeros_like(x) for n, x in p.items()}
    for t, lr in enumerate(lrs, start=1):
        g = prob.numpy_grads(p)
        norm = np.sqrt(sum((x**2).sum() for x in g.values()))
        assert step(prob.batches(), lr).grad_norm == pytest.approx(norm, rel=1e-5)
        factor = min(1.0, clip / (norm + 1e-6)) if clip is not None else 1.0
        for n in p:
            wd = WD if p[n].ndim == 2 else 0.0
            p[n], m[n], v[n] = numpy_adamw(p[n], g[n] * factor, m[n], v[n], t, lr, wd)
        for n in p:
            np.testing.assert_allclose(prob.params[n].numpy(), p[n], rtol=1e-5, atol=1e-6)
    return step, p


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
    step = OptimizerStep(ctx, prob.params, prob, BETA1, BETA2, EPS, WD, grad_clip=1.0)
    for _ in range(2):
        step(prob.batches(), 0.01)
    state = step.optimizer.state()
    saved = {n: p.numpy() for n, p in prob.params.items()}
    step(prob.batches(), 0.01)
    expected = {n: p.numpy() for n, p in prob.params.items()}

    other_ctx = G.Context("cpu", threads=2)
    other = Quadratic(other_ctx)
    for n, value in saved.items():
        other.params[n].set(value)
    step2 = OptimizerStep(other_ctx, other.params, other, BETA1, BETA2, EPS, WD, grad_clip=1.0)
    step2.optimizer.set_state(state)
    assert step2.optimizer.steps == 2
    step2(other.batches(), 0.01)
    for n, value in expected.items():
        np.testing.assert_array_equal(other.params[n].numpy(), value)
