"""Bad input raises a Python exception that says what was expected and what was given.

ggml reports misuse with GGML_ASSERT -> abort(), which would kill the interpreter (and
pytest with it). Every case therefore runs in its own subprocess: the test passes only if
that process exits normally after printing the expected exception, so a crash fails one test
instead of ending the run. The subprocesses are started together to keep the file fast.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers.env import child_env

import pyggml_train

pytestmark = pytest.mark.slow  # each case runs in its own interpreter

# The package under test, wherever it was imported from (a dev build or an installed copy).
PACKAGE_ROOT = Path(pyggml_train.__file__).resolve().parents[1]
TIMEOUT_S = 60

PRELUDE = """
import numpy as np
import pyggml_train as pg
from pyggml_train import ggml as G
ctx = pg.Context(threads=1)
"""

HARNESS = """
try:
{body}
except Exception as e:
    print("RAISED", *[c.__name__ for c in type(e).__mro__])
    print("MESSAGE", e)
else:
    print("NO EXCEPTION")
"""

# name -> (code, expected exception, regexes the message must match)
CASES: dict[str, tuple[str, str, list[str]]] = {
    "add_shapes": (
        "G.add(ctx.input((3, 4)), ctx.input((5, 4)))",
        "ValueError",
        [r"add", r"\(3, 4\)", r"\(5, 4\)", r"broadcast"],
    ),
    "mul_mat_inner_dims": (
        "G.mul_mat(ctx.input((3, 4)), ctx.input((2, 5)))",
        "ValueError",
        [r"mul_mat", r"last dimensions must match", r"\(3, 4\)", r"\(2, 5\)"],
    ),
    "mul_mat_batch": (
        "G.mul_mat(ctx.input((2, 3, 4)), ctx.input((3, 5, 4)))",
        "ValueError",
        [r"batch dimensions", r"\(2, 3, 4\)", r"\(3, 5, 4\)", r"divide"],
    ),
    "matmul_shapes": (
        "ctx.input((3, 4)) @ ctx.input((5, 6))",
        "ValueError",
        [r"\(3, 4\)|\(6, 5\)", r"must match"],
    ),
    "linear_shapes": (
        "G.linear(ctx.input((2, 4)), ctx.param((3, 5)))",
        "ValueError",
        [r"\(2, 4\)", r"\(3, 5\)", r"\(out, in\)"],
    ),
    "op_on_i32": (
        "G.add(ctx.tensor((3,), 'i32'), ctx.input((3,)))",
        "TypeError",
        [r"f32", r"i32", r"\(3,\)"],
    ),
    "mul_mat_transposed_second_operand": (
        # ggml's CPU mul_mat needs b's last axis dense; with 2 threads an abort inside a
        # worker thread cannot be turned into an exception, so this must fail at build time
        "ctx.threads = 2\n"
        "a, b = ctx.input((64, 70)), ctx.input((70, 48))\n"
        "y = G.mul_mat(a, G.transpose(b))\n"
        "g = ctx.graph(y)\n"
        "a.set(np.ones((64, 70), np.float32))\n"
        "b.set(np.ones((70, 48), np.float32))\n"
        "g.compute()",
        "ValueError",
        [r"mul_mat", r"\(48, 70\)", r"cont\(\)"],
    ),
    "get_rows_float_indices": (
        "G.get_rows(ctx.input((5, 4)), ctx.input((3,)))",
        "TypeError",
        [r"indices must be i32", r"f32"],
    ),
    "set_wrong_dtype": (
        "ctx.input((3,), 'i32').set(np.array([0.5, 1.5, 2.5]))",
        "TypeError",
        [r"dtype mismatch", r"float64", r"i32", r"integers"],
    ),
    "set_wrong_shape": (
        "ctx.input((3, 4)).set(np.zeros((2, 2), np.float32))",
        "ValueError",
        [r"shape mismatch", r"\(3, 4\)", r"\(2, 2\)"],
    ),
    "reshape_non_contiguous": (
        "G.reshape(G.transpose(ctx.input((3, 4))), (12,))",
        "ValueError",
        [r"reshape needs a contiguous tensor", r"\(4, 3\)", r"cont\(\)"],
    ),
    "gelu_non_contiguous": (
        "G.gelu(G.transpose(ctx.input((3, 4))))",
        "ValueError",
        [r"gelu needs a contiguous tensor", r"cont\(\)"],
    ),
    "reshape_size": (
        "G.reshape(ctx.input((3, 4)), (5, 2))",
        "ValueError",
        [r"reshape", r"12 elements", r"10 elements"],
    ),
    "no_backward_op": (
        "p = ctx.param((3,))\nctx.graph(G.sum(G.clamp(p, -1.0, 1.0)).set_loss(), backward=True)",
        "ValueError",
        [r"no backward pass for op CLAMP", r"\(3,\)"],
    ),
    "device_not_built": (
        "pg.Context('cuda')",
        "ValueError",
        [r"device 'cuda' is not available", r"available devices: .*CPU", r"GGML_CUDA=ON"],
    ),
    "bad_thread_count": (
        "pg.Context('cpu', threads=-1)",
        "ValueError",
        [r"threads must be >= 1", r"-1"],
    ),
    "set_op_result": (
        "x = ctx.input((3,))\nG.scale(x, 2.0).set(np.zeros(3, np.float32))",
        "ValueError",
        [r"cannot set data", r"result of op SCALE", r"param/input/constant"],
    ),
    "read_unallocated_op_result": (
        "x = ctx.input((3,)).set(np.ones(3, np.float32))\nG.scale(x, 2.0).numpy()",
        "ValueError",
        [r"has no memory yet", r"\(3,\)", r"[Cc]ompute a graph"],
    ),
    "loss_not_scalar": (
        "G.scale(ctx.param((3, 2)), 2.0).set_loss()",
        "ValueError",
        [r"loss must be an f32 scalar", r"\(3, 2\)", r"sum\(\) or mean\(\)"],
    ),
    "backward_without_param": (
        "ctx.graph(G.sum(ctx.input((3,))).set_loss(), backward=True)",
        "ValueError",
        [r"no tensor in the graph is a parameter"],
    ),
    "backward_without_loss": (
        "ctx.graph(G.sum(ctx.param((3,))), backward=True)",
        "ValueError",
        [r"no output is flagged as the loss", r"set_loss"],
    ),
    "op_node_in_second_graph": (
        "x = ctx.input((3,)).set(np.ones(3, np.float32))\n"
        "y = G.scale(x, 2.0)\n"
        "first = ctx.graph(G.sum(y))\n"
        "ctx.graph(G.sum(y))",
        "ValueError",
        [r"already belongs to another graph", r"build the expression again"],
    ),
    "grad_of_non_param": (
        "p = ctx.param((3,))\nx = ctx.input((3,))\n"
        "g = ctx.graph(G.sum(G.mul(p, x)).set_loss(), backward=True)\ng.grad(x)",
        "ValueError",
        [r"not a parameter of this graph", r"\(3,\)"],
    ),
    "grad_without_backward": (
        "p = ctx.param((3,))\nctx.graph(G.sum(p)).grad(p)",
        "ValueError",
        [r"built without backward=True"],
    ),
    "different_contexts": (
        "other = pg.Context(threads=1)\nG.add(ctx.input((3,)), other.input((3,)))",
        "ValueError",
        [r"different Contexts"],
    ),
    "too_many_dims": (
        "ctx.input((1, 2, 3, 4, 5))",
        "ValueError",
        [r"at most 4 dimensions", r"\(1, 2, 3, 4, 5\)"],
    ),
    "bad_permutation": (
        "G.permute(ctx.input((2, 3)), (0, 0))",
        "ValueError",
        [r"not a permutation", r"\(0, 0\)"],
    ),
    "view_out_of_bounds": (
        "G.view(ctx.input((3, 4)), (3, 4), offset=4)",
        "ValueError",
        [r"out of bounds", r"\(3, 4\)"],
    ),
    "soft_max_mask_shape": (
        "G.soft_max(ctx.input((2, 5, 5)), ctx.input((4, 4)))",
        "ValueError",
        [r"mask \(4, 4\) does not broadcast", r"\(2, 5, 5\)"],
    ),
    "cross_entropy_shapes": (
        "G.cross_entropy_loss(ctx.input((3, 7)), ctx.input((3, 6)))",
        "ValueError",
        [r"\(3, 7\)", r"\(3, 6\)", r"same shape"],
    ),
    "adamw_hparams_size": (
        "p = ctx.param((3,))\n"
        "G.opt_step_adamw(p, ctx.input((3,)), ctx.tensor((3,)), ctx.tensor((3,)), ctx.input((5,)))",
        "ValueError",
        [r"7 or 8 elements", r"\(5,\)"],
    ),
    # issue 13: an embedding lookup with a token id outside the table aborted the process
    # from a compute thread (OpenMP, 2 threads: norm makes the graph multi-threaded)
    "get_rows_id_out_of_range": (
        "c2 = pg.Context(threads=2)\n"
        "idx = c2.input((400,), 'i32')\n"
        "g = c2.graph(G.norm(G.get_rows(c2.param((5, 64), init=np.ones((5, 64))), idx)))\n"
        "a = np.zeros(400, np.int32); a[123] = 7\n"
        "idx.set(a)\n"
        "g.compute()",
        "ValueError",
        [r"get_rows", r"\(5, 64\)", r"index 7 at position \(123,\)", r"\[0, 5\)", r"tokenizer"],
    ),
    "cross_entropy_label_out_of_range": (
        "lg, tg = ctx.input((4, 5)), ctx.input((4,), 'i32')\n"
        "g = ctx.graph(G.cross_entropy_loss_sparse(lg, tg))\n"
        "lg.set(np.zeros((4, 5)))\n"
        "tg.set(np.array([0, -1, 9, 2]))\n"
        "g.compute()",
        "ValueError",
        [r"cross_entropy_loss_sparse", r"5 classes", r"index 9 at position \(2,\)", r"< 5"],
    ),
    "set_rows_index_out_of_range": (
        "dst, rows, idx = ctx.input((4, 3)), ctx.input((2, 3)), ctx.input((2,), 'i32')\n"
        "g = ctx.graph(G.set_rows(dst, rows, idx))\n"
        "idx.set(np.array([1, 4]))\n"
        "g.compute()",
        "ValueError",
        [r"set_rows", r"4 rows", r"index 4 at position \(1,\)"],
    ),
    "get_rows_computed_indices": (
        "idx = ctx.input((3,), 'i32')\n"
        "G.get_rows(ctx.input((5, 2)), G.get_rows(ctx.input((5, 3), 'i32'), idx))",
        "ValueError",
        [r"get_rows: the indices must be an input tensor or a view of one", r"GET_ROWS"],
    ),
    "clamp_keeps_its_input": (  # ggml_clamp is in place; G.clamp must not change its input
        "x = ctx.input((4,)).set(np.array([-2.0, -0.5, 0.5, 2.0]))\n"
        "g = ctx.graph(G.clamp(x, -1, 1)); g.compute()\n"
        "np.testing.assert_array_equal(x.numpy(), [-2.0, -0.5, 0.5, 2.0])\n"
        "raise ValueError('clamp kept its input')",
        "ValueError",
        [r"clamp kept its input"],
    ),
    "unary_transposed_column": (  # a transposed (n, 1) view passed the contiguous-rows check
        "G.log(G.transpose(ctx.input((1, 3))))",
        "ValueError",
        [r"log needs its operand's last axis dense", r"cont\(\)"],
    ),
    # patch 0017: an assert that still fires inside a compute thread (here with the
    # index check turned off) raises, the process lives on and the graph works again
    "compute_thread_assert_raises": (
        "c2 = pg.Context(threads=2)\n"
        "idx = c2.input((400,), 'i32')\n"
        "out = G.norm(G.get_rows(c2.param((5, 64), init=np.arange(320.0).reshape(5, 64)), idx))\n"
        "g = c2.graph(out)\n"
        "idx.set(np.full(400, 7))\n"
        "for _ in range(2):\n"
        "    try:\n"
        "        g._g.compute(2, False)\n"
        "    except RuntimeError as e:\n"
        "        msg = str(e)\n"
        "idx.set(np.arange(400) % 5)\n"
        "g.compute()\n"
        "row = np.arange(320.0).reshape(5, 64)[1]\n"
        "ref = (row - row.mean()) / np.sqrt(row.var() + 1e-5)\n"
        "np.testing.assert_allclose(out.numpy()[6], ref, rtol=1e-5)\n"
        "raise ValueError(msg)",
        "ValueError",
        [
            r"graph compute failed in op GET_ROWS",
            r"GGML_ASSERT\(i01 >= 0 && i01 < ne01\)",
            r"process is intact",
        ],
    ),
    "linear_scalar_input": (  # raised IndexError (found by the fuzzer)
        "G.linear(G.sum(ctx.input((3, 4))), ctx.input((5, 4)))",
        "ValueError",
        [r"linear", r"do not fit"],
    ),
    "cross_entropy_sparse_scalar_logits": (
        "G.cross_entropy_loss_sparse(G.sum(ctx.input((3, 4))), ctx.input((), 'i32'))",
        "ValueError",
        [r"logits need a class axis"],
    ),
    "norm_back_shapes": (
        "G.norm_back(ctx.input((3, 4)), ctx.input((3, 5)))",
        "ValueError",
        [r"norm_back", r"\(3, 4\)", r"\(3, 5\)", r"same shape"],
    ),
}


def _script(code: str) -> str:
    return PRELUDE + HARNESS.format(body=textwrap.indent(code, "    "))


@pytest.fixture(scope="module")
def results() -> dict[str, subprocess.CompletedProcess]:
    """Run every case in its own interpreter, all at once."""
    env = child_env(OMP_NUM_THREADS="1")
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", _script(code)],
            cwd=PACKAGE_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (code, _, _) in CASES.items()
    }
    out = {}
    for name, p in procs.items():
        try:
            stdout, stderr = p.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            p.kill()
            stdout, stderr = p.communicate()
        out[name] = subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_raises_clear_exception(
    name: str, results: dict[str, subprocess.CompletedProcess]
) -> None:
    _, exc, patterns = CASES[name]
    r = results[name]
    assert r.returncode == 0, (
        f"the interpreter died (return code {r.returncode}):\n{r.stdout}\n{r.stderr[-2000:]}"
    )
    raised = (
        r.stdout.split("RAISED ", 1)[1].split("\n", 1)[0].split() if "RAISED " in r.stdout else []
    )
    # the class or one of its bases (the binding raises subclasses such as GgmlValueError)
    assert exc in raised, f"expected {exc}, got:\n{r.stdout}\n{r.stderr[-2000:]}"
    message = r.stdout.split("MESSAGE ", 1)[1]
    for pattern in patterns:
        assert re.search(pattern, message), f"message lacks {pattern!r}: {message}"


def test_harness_detects_a_crash() -> None:
    """The subprocess check is not vacuous: a real abort shows up as a bad return code."""
    r = subprocess.run(
        [sys.executable, "-c", "import os; os.abort()"], capture_output=True, timeout=TIMEOUT_S
    )
    assert r.returncode != 0
