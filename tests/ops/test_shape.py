"""numpy order <-> ggml ``ne`` order: pinned once here so no other code has to guess.

ggml lists dimensions innermost first; the Python API speaks numpy order. A mistake in the
conversion would transpose data silently, so every permutation is checked against numpy.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import pyggml_train as pg
from pyggml_train import ggml as G
from pyggml_train.shape import from_ne, to_ggml_axes, to_ne


def test_numpy_2x3_is_ne_3_2_1_1() -> None:
    assert to_ne((2, 3)) == [3, 2, 1, 1]
    ctx = pg.Context(threads=1)
    t = ctx.tensor((2, 3))
    assert list(t._h.ne) == [3, 2, 1, 1]
    assert t.shape == (2, 3)
    # row-major: the last numpy axis is dense (4-byte f32 elements)
    assert t.strides == (12, 4)


@pytest.mark.parametrize(
    ("shape", "ne"),
    [
        ((), [1, 1, 1, 1]),
        ((7,), [7, 1, 1, 1]),
        ((2, 3, 4), [4, 3, 2, 1]),
        ((5, 2, 3, 4), [4, 3, 2, 5]),
    ],
)
def test_to_ne_and_back(shape: tuple[int, ...], ne: list[int]) -> None:
    assert to_ne(shape) == ne
    assert from_ne(ne, len(shape)) == shape


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="at most 4"):
        to_ne((1, 2, 3, 4, 5))
    with pytest.raises(ValueError, match=">= 1"):
        to_ne((3, 0))
    with pytest.raises(ValueError, match="non-trivial"):
        from_ne([3, 2, 1, 1], 1)
    with pytest.raises(ValueError, match="permutation"):
        to_ggml_axes((0, 0))


def test_reading_back_in_numpy_order() -> None:
    ctx = pg.Context(threads=1)
    values = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    t = ctx.input((2, 3, 4)).set(values)
    ctx.allocate()
    np.testing.assert_array_equal(t.numpy(), values)
    # ggml's innermost dimension is numpy's last axis: element ne-index (i0, i1, i2) sits at
    # byte offset i0*nb0 + i1*nb1 + i2*nb2, i.e. numpy values[i2, i1, i0].
    nb = list(t._h.nb)
    flat = values.reshape(-1)
    assert flat[(3 * nb[0] + 2 * nb[1] + 1 * nb[2]) // 4] == values[1, 2, 3]


def _all_permutations() -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    shapes = {2: (2, 3), 3: (2, 3, 5), 4: (2, 3, 5, 7)}
    return [(shapes[n], axes) for n in (2, 3, 4) for axes in itertools.permutations(range(n))]


def test_permute_matches_numpy_transpose_for_every_permutation() -> None:
    cases = _all_permutations()
    assert len(cases) == 2 + 6 + 24
    ctx = pg.Context(threads=1)
    rng = np.random.default_rng(0)
    outs, leaves, values = [], [], []
    for shape, axes in cases:
        x = rng.standard_normal(shape).astype(np.float32)
        leaf = ctx.input(shape)
        out = G.cont(G.permute(leaf, axes))
        out._h.set_output()
        leaves.append(leaf)
        values.append(x)
        outs.append(out)
    graph = ctx.graph(outs)
    for leaf, x in zip(leaves, values, strict=False):
        leaf.set(x)
    graph.compute()
    for (shape, axes), out, x in zip(cases, outs, values, strict=False):
        want = np.transpose(x, axes)
        assert out.shape == want.shape, (shape, axes)
        np.testing.assert_array_equal(out.numpy(), want, err_msg=f"shape {shape} axes {axes}")


@pytest.mark.parametrize("axes", list(itertools.permutations(range(4))))
def test_to_ggml_axes_is_consistent_with_strides(axes: tuple[int, ...]) -> None:
    # The permuted view's numpy strides must be the source's strides reordered by axes,
    # exactly what numpy.transpose does to strides.
    ctx = pg.Context(threads=1)
    x = ctx.tensor((2, 3, 5, 7))
    v = G.permute(x, axes)
    want = np.transpose(np.empty((2, 3, 5, 7), np.float32), axes)
    assert v.shape == want.shape
    assert v.strides == want.strides


def test_transpose_view_and_reshape_shapes() -> None:
    ctx = pg.Context(threads=1)
    x = ctx.input((4, 6))
    t = G.transpose(x)
    r = G.reshape(x, (2, -1, 3))
    v = G.view(x, (2, 6), offset=2 * 6)
    outs = [G.cont(t), G.cont(r), G.cont(v)]
    for o in outs:
        o._h.set_output()
    g = ctx.graph(outs)
    xv = np.arange(24, dtype=np.float32).reshape(4, 6)
    x.set(xv)
    g.compute()
    np.testing.assert_array_equal(outs[0].numpy(), xv.T)
    np.testing.assert_array_equal(outs[1].numpy(), xv.reshape(2, 4, 3))
    np.testing.assert_array_equal(outs[2].numpy(), xv[2:4])


def test_view_offsets_and_strides_count_elements_of_any_width() -> None:
    """The same element offset and strides pick the same entries from 4-byte f32 and 2-byte
    bf16 data: rows 1..2, columns 1..3 of a (4, 6) matrix, summed per row by a matmul."""
    ctx = pg.Context(threads=1)
    x, ones = ctx.input((4, 6)), ctx.input((1, 3))
    outs = []
    for data in (x, G.cast(x, "bf16")):
        v = G.view(data, (2, 3), offset=7, strides=(6, 1))
        assert v.strides == (6 * data.itemsize, data.itemsize)  # bytes, as numpy's
        outs.append(G.mul_mat(G.cont(v), ones))  # (1, 2) row sums
    for o in outs:
        o.set_output()
    g = ctx.graph(outs)
    xv = np.arange(24, dtype=np.float32).reshape(4, 6)  # small integers: exact in bf16
    x.set(xv)
    ones.set(np.ones((1, 3), dtype=np.float32))
    g.compute()
    for o in outs:
        np.testing.assert_array_equal(o.numpy(), xv[1:3, 1:4].sum(axis=1)[None])
