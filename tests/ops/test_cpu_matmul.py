"""The CPU's large f32 products against float64 numpy, on 1, 2 and 3 threads.

Patch 0011 runs MUL_MAT and OUT_PROD with every side >= 16 on a BLAS sgemm, each ggml thread
taking whole batches when they divide evenly among the threads and a band of rows of every
batch otherwise. The product tests in test_ops_*.py use small shapes that stay on ggml's own
kernels; the shapes here take the sgemm path on up to 3 threads (at least 32^3
multiply-adds per thread; on a build without BLAS they test ggml's kernels), with the
layouts it must map onto sgemm's operands: block-broadcast batches, strided rows, permuted
attention views, and out_prod's transposed second operand (which the MUL_MAT backward
feeds it).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.gradcheck import FWD_RTOL, assert_close, forward, gradcheck
from reference import ops_numpy as ref

from pyggml_train import ggml as G

THREADS = [1, 2, 3]


def randn(*shape: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize(
    ("sa", "sb"),
    [
        ((72, 48), (45, 48)),  # odd row count: uneven row bands
        ((3, 40, 48), (3, 33, 48)),  # 3 batches: whole batches on 1 and 3 threads, rows on 2
        ((2, 40, 48), (6, 33, 48)),  # a batch of a serves 3 of b
        ((2, 1, 24, 48), (2, 3, 20, 48)),  # broadcast over dim 2 only
        ((1, 2, 24, 32), (3, 4, 20, 32)),  # over dims 2 and 3
    ],
)
def test_mul_mat(sa: tuple, sb: tuple, threads: int) -> None:
    a, b = randn(*sa, seed=1), randn(*sb, seed=2)
    got = forward(G.mul_mat, [a, b], threads)
    assert_close(got, ref.mul_mat(a.astype(np.float64), b.astype(np.float64)), FWD_RTOL, "mul_mat")


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize(
    ("sa", "sb"),
    [
        ((48, 72), (48, 45)),
        ((3, 48, 40), (3, 48, 33)),
        ((1, 2, 48, 24), (3, 4, 48, 20)),  # a broadcast over dims 2 and 3
    ],
)
def test_out_prod(sa: tuple, sb: tuple, threads: int) -> None:
    a, b = randn(*sa, seed=3), randn(*sb, seed=4)
    got = forward(G.out_prod, [a, b], threads)
    assert_close(
        got, ref.out_prod(a.astype(np.float64), b.astype(np.float64)), FWD_RTOL, "out_prod"
    )


@pytest.mark.parametrize("threads", THREADS)
def test_out_prod_transposed_second_operand(threads: int) -> None:
    """out_prod(a, transpose(g)) is how the MUL_MAT backward gets d src1 without a copy."""
    a, g = randn(2, 48, 40, seed=5), randn(2, 36, 48, seed=6)
    got = forward(lambda x, y: G.out_prod(x, G.transpose(y)), [a, g], threads)
    want = ref.out_prod(a.astype(np.float64), np.swapaxes(g, -1, -2).astype(np.float64))
    assert_close(got, want, FWD_RTOL, "out_prod with a transposed operand")


@pytest.mark.parametrize("threads", THREADS)
def test_mul_mat_strided_rows(threads: int) -> None:
    """Column slices of wider matrices: dense rows with a longer row stride."""

    def build(a: G.Tensor, b: G.Tensor) -> G.Tensor:
        va = G.view(a, (64, 48), offset=3, strides=(56, 1))
        vb = G.view(b, (36, 48), offset=5, strides=(56, 1))
        return G.mul_mat(va, vb)

    a, b = randn(64, 56, seed=7), randn(36, 56, seed=8)
    got = forward(build, [a, b], threads)
    want = ref.mul_mat(a[:, 3:51].astype(np.float64), b[:, 5:53].astype(np.float64))
    assert_close(got, want, FWD_RTOL, "mul_mat of strided rows")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("sa", "sb"), [((48, 40), (45, 40)), ((2, 24, 32), (6, 20, 32))])
def test_mul_mat_gradients(sa: tuple, sb: tuple, threads: int) -> None:
    """Both gradients go through out_prod (one with a transposed operand) on the sgemm."""
    gradcheck(
        G.mul_mat,
        ref.mul_mat,
        [randn(*sa, seed=9), randn(*sb, seed=10)],
        ref.mul_mat_grad,
        threads=threads,
    )


@pytest.mark.parametrize("threads", [1, 2])
def test_attention_gradients_with_permuted_views(threads: int) -> None:
    """q @ k^T and att @ v on (B, T, H, hs) views permuted to (B, H, T, hs), as GPT-2 does."""
    B, T, H, hs = 2, 32, 3, 16  # noqa: N806

    def fwd(q, k, v):
        qp, kp, vp = (t.transpose(0, 2, 1, 3) for t in (q, k, v))
        return (qp @ np.swapaxes(kp, -1, -2)) @ vp

    def grad(d, q, k, v):
        qp, kp, vp = (t.transpose(0, 2, 1, 3) for t in (q, k, v))
        s = qp @ np.swapaxes(kp, -1, -2)
        ds = d @ np.swapaxes(vp, -1, -2)
        dv = np.swapaxes(s, -1, -2) @ d
        return [
            (ds @ kp).transpose(0, 2, 1, 3),
            (np.swapaxes(ds, -1, -2) @ qp).transpose(0, 2, 1, 3),
            dv.transpose(0, 2, 1, 3),
        ]

    def build(q, k, v):
        qp, kp, vp = (G.permute(t, (0, 2, 1, 3)) for t in (q, k, v))
        s = G.mul_mat(kp, qp)  # (B, H, T, T)
        return G.mul_mat(G.cont(G.transpose(vp)), s)  # (B, H, T, hs)

    inputs = [randn(B, T, H, hs, seed=s) * 0.5 for s in (11, 12, 13)]
    gradcheck(build, fwd, inputs, grad, threads=threads)


@pytest.mark.parametrize(
    ("name", "build", "sa", "sb"),
    [
        ("mul_mat", G.mul_mat, (96, 256), (1000, 256)),  # 1000 rows: bands cut near 500, 333
        ("out_prod", G.out_prod, (256, 96), (256, 1000)),
        (
            "out_prod of a transpose",
            lambda a, g: G.out_prod(a, G.transpose(g)),
            (256, 96),
            (1000, 256),
        ),
    ],
)
def test_row_bands_bit_identical_for_any_thread_count(
    name: str, build, sa: tuple, sb: tuple
) -> None:
    """A product split into row bands sums every element in the same order as the unsplit
    one (patch 0011 puts band edges on the sgemm kernel's tile grain), so the thread count
    cannot change a single bit."""
    a, b = randn(*sa, seed=14), randn(*sb, seed=15)
    one = forward(build, [a, b], 1)
    for threads in (2, 3, 4):
        np.testing.assert_array_equal(
            forward(build, [a, b], threads), one, err_msg=f"{name}, {threads} threads"
        )
