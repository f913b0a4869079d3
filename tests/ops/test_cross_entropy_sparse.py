"""GGML_OP_CROSS_ENTROPY_LOSS_SPARSE (our patch): loss and gradient vs float64 numpy."""

import numpy as np
import pytest

import pyggml_train as pg
from pyggml_train import ggml as G

RTOL = 1e-5  # f32 kernel vs float64 reference, relative to the largest value


def reference(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean -log softmax[target] over rows with target >= 0, and its gradient."""
    x = logits.astype(np.float64)
    shifted = x - x.max(-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    counted = targets >= 0
    safe = np.where(counted, targets, 0)
    picked = np.take_along_axis(logp, safe[..., None], -1)[..., 0]
    n = counted.sum()
    loss = -(picked * counted).sum() / n
    onehot = np.zeros_like(logp)
    np.put_along_axis(onehot, safe[..., None], 1.0, -1)
    grad = (np.exp(logp) - onehot) * counted[..., None] / n
    return float(loss), grad


@pytest.mark.parametrize("shape", [(7, 13), (3, 5, 33), (2, 64, 300)])
@pytest.mark.parametrize("threads", [1, 2])
def test_loss_and_gradient_match_numpy(shape: tuple[int, ...], threads: int) -> None:
    rng = np.random.default_rng(len(shape) + threads)
    logits = (3 * rng.standard_normal(shape)).astype(np.float32)
    targets = rng.integers(0, shape[-1], shape[:-1]).astype(np.int32)
    targets.flat[0] = -1  # ignored row
    ctx = pg.Context(threads=threads)
    x = ctx.param(shape, init=logits)
    t = ctx.input(shape[:-1], "i32").set(targets)
    loss = G.cross_entropy_loss_sparse(x, t).set_loss()
    g = ctx.graph(loss, backward=True)
    g.compute()
    want_loss, want_grad = reference(logits, targets)
    assert abs(float(loss.numpy()) - want_loss) <= RTOL * abs(want_loss)
    err = np.abs(g.grad(x) - want_grad).max() / np.abs(want_grad).max()
    assert err <= RTOL


def test_reference_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((4, 6))
    targets = np.array([2, -1, 5, 0])
    _, grad = reference(logits, targets)
    h = 1e-6
    for idx in np.ndindex(logits.shape):
        up, down = logits.copy(), logits.copy()
        up[idx] += h
        down[idx] -= h
        fd = (reference(up, targets)[0] - reference(down, targets)[0]) / (2 * h)
        assert abs(fd - grad[idx]) <= 1e-8


def test_target_shape_is_checked() -> None:
    ctx = pg.Context(threads=1)
    x = ctx.param((4, 6))
    with pytest.raises(ValueError, match=r"targets \(5,\) must have shape \(4,\)"):
        G.cross_entropy_loss_sparse(x, ctx.input((5,), "i32"))
    with pytest.raises(TypeError, match="i32"):
        G.cross_entropy_loss_sparse(x, ctx.input((4,)))


@pytest.mark.parametrize("threads", [1, 2])
def test_padded_columns_are_not_classes(threads: int) -> None:
    """n_classes: a padded vocabulary's extra columns stay out of the softmax, get zero grad."""
    n, v, vp = 37, 301, 320
    rng = np.random.default_rng(3)
    logits = (3 * rng.standard_normal((n, vp))).astype(np.float32)
    logits[:, v:] = 50.0  # would dominate the softmax if they counted
    targets = rng.integers(0, v, n).astype(np.int32)
    targets[4] = -1
    ctx = pg.Context(threads=threads)
    x = ctx.param((n, vp), init=logits)
    t = ctx.input((n,), "i32").set(targets)
    loss = G.cross_entropy_loss_sparse(x, t, n_classes=v).set_loss()
    g = ctx.graph(loss, backward=True)
    g.compute()
    want_loss, want_grad = reference(logits[:, :v], targets)
    assert abs(float(loss.numpy()) - want_loss) <= RTOL * abs(want_loss)
    grad = g.grad(x)
    np.testing.assert_array_equal(grad[:, v:], 0.0)
    assert np.abs(grad[:, :v] - want_grad).max() <= RTOL * np.abs(want_grad).max()


def test_n_classes_is_checked() -> None:
    ctx = pg.Context(threads=1)
    x, t = ctx.param((4, 6)), ctx.input((4,), "i32")
    for bad in (0, 7):
        with pytest.raises(ValueError, match=rf"n_classes must be in \[1, 6\].*got {bad}"):
            G.cross_entropy_loss_sparse(x, t, n_classes=bad)


@pytest.mark.parametrize("reshapes", [0, 1, 2])
def test_backward_runs_in_place_over_reshaped_logits(reshapes: int) -> None:
    """The loss's backward reuses the logits' buffer even when the logits reach it through
    reshapes (patch 0020: ggml's allocator now lets an in-place op take over the memory
    behind a view), and the gradients are those of the graph without reshapes."""
    n, c, v = 256, 16, 1000
    rng = np.random.default_rng(7)
    x0, w0 = rng.normal(size=(n, c)), rng.normal(size=(v, c)) * 0.3
    targets = rng.integers(0, v, n).astype(np.int32)

    ctx = pg.Context(threads=2)
    x, w = ctx.param((n, c), init=x0), ctx.param((v, c), init=w0)
    logits = G.linear(x, w)  # (N, V), the product's own buffer
    for i in range(reshapes):  # views of it: (4, N/4, V), then back to (N, V)
        logits = G.reshape(logits, (4, n // 4, v) if i % 2 == 0 else (n, v))
    shape = logits.shape[:-1]
    t = ctx.input(shape, dtype="i32")
    graph = ctx.graph(G.cross_entropy_loss_sparse(logits, t).set_loss(), True)
    t.set(targets.reshape(shape))
    graph.reset_grads()
    graph.compute()

    logits_bytes = n * v * 4
    assert logits_bytes <= graph.compute_buffer_bytes < 1.1 * logits_bytes
    _, dlogits = reference(x0.astype(np.float32) @ w0.astype(np.float32).T, targets)
    np.testing.assert_allclose(graph.grad(w), dlogits.T @ x0, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(graph.grad(x), dlogits @ w0, rtol=1e-4, atol=1e-6)
