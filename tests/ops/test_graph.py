"""Graph semantics: outputs survive compute, gradients accumulate, op nodes belong to one graph."""

import gc

import numpy as np
import pytest

import pyggml_train as pg
from pyggml_train import ggml as G


def test_every_output_keeps_its_value() -> None:
    # b and its reshape are outputs that later nodes consume: the allocator must not reuse them.
    ctx = pg.Context(threads=1)
    a = ctx.input((64,))
    b = G.scale(a, 3.0)
    r = G.reshape(b, (8, 8))
    e = G.sum(G.sqrt(G.sqr(G.exp(b))))
    g = ctx.graph([b, r, e])
    a.set(np.ones(64, np.float32))
    g.compute()
    np.testing.assert_array_equal(b.numpy(), np.full(64, 3.0, np.float32))
    np.testing.assert_array_equal(r.numpy(), np.full((8, 8), 3.0, np.float32))
    np.testing.assert_allclose(e.numpy(), 64 * np.exp(3.0), rtol=1e-6)


def test_gradients_accumulate_until_reset_and_follow_loss_scale() -> None:
    rng = np.random.default_rng(0)
    ctx = pg.Context(threads=1)
    x = ctx.input((4, 3))
    w = ctx.param((5, 3), init=rng.standard_normal((5, 3)))
    loss = G.sum(G.sqr(G.linear(x, w))).set_loss()
    g = ctx.graph(loss, backward=True)
    xv = rng.standard_normal((4, 3)).astype(np.float32)
    x.set(xv)
    want = 2 * (xv @ w.numpy().T).T @ xv  # d/dw sum((x w^T)^2)
    g.compute()
    np.testing.assert_allclose(g.grad(w), want, rtol=1e-5)
    g.compute()
    np.testing.assert_allclose(g.grad(w), 2 * want, rtol=1e-5)
    g.set_loss_scale(0.25)
    g.reset_grads()
    g.compute()
    np.testing.assert_allclose(g.grad(w), 0.25 * want, rtol=1e-5)


def test_op_node_is_free_again_when_its_graph_is_gone() -> None:
    ctx = pg.Context(threads=1)
    x = ctx.input((3,)).set(np.arange(3, dtype=np.float32))
    y = G.scale(x, 2.0)
    first = ctx.graph(G.sum(y))
    first.compute()
    with pytest.raises(ValueError, match="already belongs to another graph"):
        ctx.graph(G.sum(y))
    del first
    gc.collect()
    total = G.sum(y)
    second = ctx.graph([y, total])
    second.compute()
    np.testing.assert_array_equal(y.numpy(), [0.0, 2.0, 4.0])
    assert float(total.numpy()) == 6.0


def test_optimizer_graph_reads_the_persistent_gradient() -> None:
    # SGD in a second graph over the accumulator: w <- w - lr * grad.
    ctx = pg.Context(threads=1)
    w = ctx.param((3,), init=np.array([1.0, -2.0, 3.0]))
    loss = G.sum(G.sqr(w)).set_loss()
    train = ctx.graph(loss, backward=True)
    hp = ctx.tensor((2,)).set([0.1, 0.0])
    step = ctx.graph(G.opt_step_sgd(w, train.grad_accumulator(w), hp))
    train.compute()
    step.compute()
    np.testing.assert_allclose(w.numpy(), np.array([1.0, -2.0, 3.0]) * (1 - 0.2), rtol=1e-6)


def test_softmax_gradient_through_a_reshape_of_its_output() -> None:
    # The allocator runs SOFT_MAX_BACK in place over the softmax output when the incoming
    # gradient is a view; patch 0010 makes the CPU kernel safe for that.
    rng = np.random.default_rng(0)
    n, v = 6, 7
    wv = rng.standard_normal((n, v)).astype(np.float32)
    cv = rng.standard_normal((n, v)).astype(np.float32)
    ctx = pg.Context(threads=1)
    w = ctx.param((n, v), init=wv)
    c = ctx.constant(cv)
    loss = G.sum(G.mul(G.reshape(G.soft_max(w), (n * v,)), G.reshape(c, (n * v,)))).set_loss()
    g = ctx.graph(loss, backward=True)
    g.compute()
    x = wv.astype(np.float64)
    p = np.exp(x - x.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    want = p * (cv - (cv * p).sum(-1, keepdims=True))
    np.testing.assert_allclose(g.grad(w), want, rtol=0, atol=1e-6)


def test_an_intermediate_flagged_as_output_stays_readable() -> None:
    ctx = pg.Context(threads=1)
    a = ctx.input((32,))
    mid = G.exp(a).set_output()  # consumed below, then its memory would be reused
    out = G.sum(G.sqr(G.scale(mid, 2.0)))
    g = ctx.graph(out)
    a.set(np.linspace(-1, 1, 32))
    g.compute()
    np.testing.assert_allclose(mid.numpy(), np.exp(np.linspace(-1, 1, 32)), rtol=1e-6)
    np.testing.assert_allclose(
        out.numpy(), (4 * np.exp(np.linspace(-1, 1, 32)) ** 2).sum(), rtol=1e-5
    )
