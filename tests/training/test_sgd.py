"""SGD (ggml's opt_step_sgd) against numpy: decay on matrices only, clipping by alpha scaling;
the optimizer choice of the step (adamw, adam, sgd)."""

import numpy as np
import pytest

from pyggml_train import ggml as G
from pyggml_train.config import GPT2Config
from pyggml_train.gpt2 import GPT2
from pyggml_train.optim import SGD
from pyggml_train.step import OptimizerStep

WD = 0.1


class Quadratic:
    """loss = sum((x @ w.T + b)^2): a 2-D weight (decayed) and a bias (not decayed)."""

    def __init__(self, ctx):
        rng = np.random.default_rng(0)
        self.xv = rng.normal(size=(4, 3))
        self.init = {"w": rng.normal(size=(5, 3)), "b": rng.normal(size=(5,))}
        x = ctx.input((4, 3))
        self.params = {n: ctx.param(v.shape, name=n) for n, v in self.init.items()}
        loss = G.sum(G.sqr(G.linear(x, self.params["w"], self.params["b"]))).set_loss()
        self.graph = ctx.graph(loss, backward=True)
        x.set(self.xv)
        for n, v in self.init.items():
            self.params[n].set(v)

    def numpy_grads(self, p):
        dy = 2 * (self.xv @ p["w"].T + p["b"])  # (4, 5)
        return {"w": dy.T @ self.xv, "b": dy.sum(0)}

    def backward(self):
        self.graph.reset_grads()
        self.graph.compute()


@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_sgd_steps_match_numpy(scale):
    ctx = G.Context("cpu", threads=2)
    prob = Quadratic(ctx)
    grads = {n: prob.graph.grad_accumulator(p) for n, p in prob.params.items()}
    opt = SGD(ctx, prob.params, grads, weight_decay=WD)
    p = {n: v.copy() for n, v in prob.init.items()}  # float64 reference
    for lr in (0.01, 0.005, 0.02):
        prob.backward()
        g = prob.numpy_grads(p)
        assert opt.sum_of_squares() == pytest.approx(sum((x**2).sum() for x in g.values()), 1e-5)
        opt.update(lr, scale)
        for n in p:
            wd = WD if p[n].ndim == 2 else 0.0  # biases are not decayed
            p[n] = p[n] * (1 - lr * wd) - lr * scale * g[n]
        for n in p:
            np.testing.assert_allclose(prob.params[n].numpy(), p[n], rtol=1e-5, atol=1e-6)
    assert opt.state() == {"m": {}, "v": {}, "steps": 3}
    with pytest.raises(ValueError, match="grad_scale must be > 0"):
        opt.update(0.01, 0.0)


def gpt2_step(optimizer, weight_decay, grad_clip):
    cfg = GPT2Config(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8)
    model = GPT2(cfg, ctx=G.Context("cpu", threads=2), seed=3)
    step = OptimizerStep(
        model.ctx,
        model.params,
        model.graph(2, 8, "train"),
        weight_decay=weight_decay,
        grad_clip=grad_clip,
        optimizer=optimizer,
    )
    return model, step


def test_optimizer_step_runs_sgd_with_clipping():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 11, (2, 8)), rng.integers(0, 11, (2, 8))
    reference, _ = gpt2_step("adamw", 0.0, None)
    w0 = reference.state_dict()
    _, grads = reference.loss_and_grads(x, y)
    norm = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads.values()))
    model, step = gpt2_step("sgd", WD, 0.5)
    assert isinstance(step.optimizer, SGD)
    stats = step([(x, y)], 0.1)
    assert stats.grad_norm == pytest.approx(norm, rel=1e-5)
    scale = 0.5 / (norm + 1e-6)
    assert scale < 1  # the clip acts
    for name, w in model.state_dict().items():
        decay = WD if w.ndim >= 2 else 0.0
        expected = w0[name] * (1 - 0.1 * decay) - 0.1 * scale * grads[name]
        np.testing.assert_allclose(w, expected, rtol=1e-5, atol=1e-7, err_msg=name)


def test_adam_is_adamw_without_weight_decay():
    rng = np.random.default_rng(1)
    batch = [(rng.integers(0, 11, (2, 8)), rng.integers(0, 11, (2, 8)))]
    adam, adam_step = gpt2_step("adam", WD, 1.0)
    plain, plain_step = gpt2_step("adamw", 0.0, 1.0)
    assert adam_step.optimizer.weight_decay == 0.0
    adam_step(batch, 0.01)
    plain_step(batch, 0.01)
    for name, w in adam.state_dict().items():
        np.testing.assert_array_equal(w, plain.state_dict()[name])
    with pytest.raises(ValueError, match="optimizer must be one of"):
        gpt2_step("lbfgs", 0.0, None)
