"""The dropout op (patch 0018): mask statistics, the numpy reference of the same mask in the
forward and the backward pass, finite differences, and what makes a mask change or repeat."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers.gradcheck import forward, gradcheck
from reference import dropout_numpy as ref

import pyggml_train as pg
from pyggml_train import ggml as G


def run(x: np.ndarray, state: tuple[int, int], p: float, stream: int = 0, threads: int = 2):
    return forward(lambda a, s: G.dropout(a, s, p, stream), [x, np.array(state, np.int32)], threads)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_kept_fraction_is_one_minus_p_and_kept_values_are_scaled(p: float) -> None:
    n = 1 << 20
    y = run(np.ones((256, n // 256), np.float32), (7, 0), p)
    kept = y != 0
    # the kept count is Binomial(n, 1 - p): within 5 standard deviations
    sd = math.sqrt(n * p * (1 - p))
    assert abs(kept.sum() - n * (1 - p)) < 5 * sd, (kept.mean(), 1 - p)
    # every kept value is 1/(1-p), computed from p as the op receives it, an f32
    assert np.all(y[kept] == ref.scale(p))
    assert ref.scale(p) == pytest.approx(1 / (1 - p), rel=1e-6)
    # every row gets its share too: the hash does not favour positions
    row_sd = math.sqrt(y.shape[1] * p * (1 - p))
    assert np.all(np.abs(kept.sum(axis=1) - y.shape[1] * (1 - p)) < 6 * row_sd)


def test_masks_of_neighbouring_counters_and_streams_are_independent() -> None:
    p, shape = 0.5, (512, 512)
    masks = {
        key: ref.keep_mask(shape, *key)
        for key in [(1, 0, p, 0), (1, 1, p, 0), (1, 0, p, 1), (2, 0, p, 0)]
    }
    base = masks[(1, 0, p, 0)]
    for key, mask in masks.items():
        if mask is base:
            continue
        both = np.mean(base & mask)  # (1 - p)^2 = 0.25 for independent masks
        assert abs(both - 0.25) < 5 * math.sqrt(0.25 * 0.75 / base.size), (key, both)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.37, 0.999])
def test_forward_equals_the_numpy_mask_bit_for_bit(p: float) -> None:
    x = np.random.default_rng(0).standard_normal((3, 5, 67)).astype(np.float32)
    got = run(x, (1234, 99), p, stream=5)
    np.testing.assert_array_equal(got, ref.dropout(x, 1234, 99, p, stream=5))


def test_mask_follows_the_state_and_stream_and_not_the_threads() -> None:
    x = np.random.default_rng(1).standard_normal((64, 129)).astype(np.float32)
    a = run(x, (3, 10), 0.5, threads=1)
    np.testing.assert_array_equal(a, run(x, (3, 10), 0.5, threads=2))
    for state, stream in [((3, 11), 0), ((4, 10), 0), ((3, 10), 1)]:
        b = run(x, state, 0.5, stream)
        np.testing.assert_array_equal(b, ref.dropout(x, *state, 0.5, stream))
        assert not np.array_equal(a != 0, b != 0)


def test_one_graph_draws_a_new_mask_when_the_counter_changes() -> None:
    ctx = pg.Context(threads=2)
    x = ctx.input((40, 33))
    state = ctx.input((2,), "i32")
    out = G.dropout(x, state, 0.3, 2)
    graph = ctx.graph(out)
    value = np.random.default_rng(2).standard_normal((40, 33)).astype(np.float32)
    x.set(value)
    for counter in (0, 1, 0):
        state.set(np.array([77, counter], np.int32))
        graph.compute()
        np.testing.assert_array_equal(out.numpy(), ref.dropout(value, 77, counter, 0.3, 2))


def test_strided_input_draws_the_mask_of_its_logical_index() -> None:
    x = np.random.default_rng(3).standard_normal((6, 4, 10)).astype(np.float32)
    got = forward(
        lambda a, s: G.dropout(G.permute(a, (1, 0, 2)), s, 0.4),  # (4, 6, 10) view
        [x, np.array([5, 6], np.int32)],
    )
    np.testing.assert_array_equal(got, ref.dropout(x.transpose(1, 0, 2), 5, 6, 0.4))


@pytest.mark.parametrize("p", [0.2, 0.75])
def test_backward_equals_the_numpy_mask_and_finite_differences(p: float) -> None:
    x = np.random.default_rng(4).standard_normal((5, 9, 31))
    state = np.array([2024, 3], np.int32)
    mask = ref.keep_mask(x.shape, 2024, 3, p, 1)
    factor = np.where(mask, float(ref.scale(p)), 0.0)
    result = gradcheck(
        lambda a, s: G.dropout(a, s, p, 1),
        lambda a, s: a * factor,  # float64 forward of the same mask
        [x, state],
        ref_grad=lambda d, a, s: [d * factor],
        wrt=[0],
        threads=2,
    )
    # the gradient is the weights times the same mask, exactly: dropout of the weights
    weights = result.ref_grads[0] / np.where(mask, float(ref.scale(p)), 1.0)
    np.testing.assert_array_equal(
        result.grads[0], ref.dropout(weights.astype(np.float32), 2024, 3, p, 1)
    )


def test_nan_in_a_dropped_element_still_shows() -> None:
    x = np.full((1, 64), np.nan, np.float32)
    assert np.isnan(run(x, (0, 0), 0.5)).all()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda ctx: (ctx.input((4,)), ctx.input((2,)), 0.1), "i32 tensor of shape \\(2,\\)"),
        (lambda ctx: (ctx.input((4,)), ctx.input((3,), "i32"), 0.1), "shape \\(2,\\)"),
        (lambda ctx: (ctx.input((4,)), ctx.input((2,), "i32"), 1.0), "p must be in"),
        (lambda ctx: (ctx.input((4,)), ctx.input((2,), "i32"), -0.1), "p must be in"),
    ],
)
def test_bad_arguments_raise(make, message: str) -> None:
    x, state, p = make(pg.Context(threads=1))
    with pytest.raises(ValueError, match=message):
        G.dropout(x, state, p)
