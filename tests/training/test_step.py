"""The step protocol (pyggml_train/step.py) against the float64 numpy GPT-2 and AdamW.

Tolerances: gradients of an accumulated step to 1e-4 of each gradient's largest magnitude
(f32 against float64, as tests/model/test_gpt2.py); parameters after one step to 1e-5 relative
(1e-6 absolute); two ranks against one process: losses to 1e-5 relative, parameters
after 5 steps to 1e-5 absolute.
"""

import threading

import numpy as np
import pytest
from reference import gpt2_numpy as ref

from pyggml_train import ggml as G
from pyggml_train.config import GPT2Config
from pyggml_train.gpt2 import GPT2
from pyggml_train.hf_gpt2 import init_params
from pyggml_train.optim import decays
from pyggml_train.step import OptimizerStep, accumulate, clip_factor

CFG = GPT2Config(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8)
BETA1, BETA2, EPS, WD = 0.9, 0.95, 1e-8, 0.1


def data(rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, CFG.vocab_size, (rows, 8)), rng.integers(0, CFG.vocab_size, (rows, 8))


def f32_params(seed: int = 3) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float32) for k, v in init_params(CFG, seed).items()}


def numpy_step(params, grads, lr, clip):
    """First AdamW step (t = 1, zero moments) after global-norm clipping, in float64."""
    norm = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads.values()))
    factor = min(1.0, clip / (norm + 1e-6))
    out = {}
    for n, w in params.items():
        g = grads[n] * factor
        m, v = (1 - BETA1) * g, (1 - BETA2) * g * g
        m_hat, v_hat = m / (1 - BETA1), v / (1 - BETA2)
        wd = WD if w.ndim >= 2 else 0.0
        out[n] = w - lr * wd * w - lr * m_hat / (np.sqrt(v_hat) + EPS)
    return out, norm


@pytest.mark.slow
def test_k_micro_batches_give_the_gradient_of_one_k_times_larger_batch():
    params = f32_params()
    x, y = data(6)
    want_loss, want = ref.loss_and_grads(params, x, y, CFG)  # one batch of 6, float64
    for micro in (2, 3, 6):
        model = GPT2(CFG, params=params, ctx=G.Context("cpu", threads=2))
        train = model.graph(micro, 8, "train")
        parts = [(x[i : i + micro], y[i : i + micro]) for i in range(0, 6, micro)]
        loss = accumulate(train, parts)
        assert loss == pytest.approx(want_loss, rel=1e-5)
        for name, g in want.items():
            got = model.layout[name].from_device(train.graph.grad(model.params[name]))
            err = np.abs(got - g).max()
            assert err <= 1e-4 * np.abs(g).max(), f"{name} with {6 // micro} micro-batches"


@pytest.mark.parametrize("clip", [1e-3, 1.0, 1e3])  # always, sometimes, never clipped
def test_step_clips_to_the_numpy_global_norm_then_applies_adamw(clip):
    params = f32_params()
    x, y = data(4)
    _, grads = ref.loss_and_grads(params, x, y, CFG)
    want, want_norm = numpy_step(params, grads, lr=1e-2, clip=clip)
    model = GPT2(CFG, params=params, ctx=G.Context("cpu", threads=2))
    step = OptimizerStep(
        model.ctx, model.params, model.graph(2, 8, "train"), BETA1, BETA2, EPS, WD, clip
    )
    stats = step([(x[:2], y[:2]), (x[2:], y[2:])], lr=1e-2)
    assert stats.grad_norm == pytest.approx(want_norm, rel=1e-5)
    assert clip_factor(stats.grad_norm, clip) == pytest.approx(min(1.0, clip / want_norm), 1e-5)
    for name, w in model.state_dict().items():
        np.testing.assert_allclose(w, want[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert all(decays(p) == (p.ndim >= 2) for p in model.params.values())


class ThreadRanks:
    """Sums tensors across threads that stand in for ranks: a real GradientSync, in process.

    Each rank adds its arrays into a shared float64 total between two barriers, then reads
    the total back, so the ranks see one sum, as after an MPI all-reduce."""

    def __init__(self, world_size: int):
        self.world_size = world_size
        self._barrier = threading.Barrier(world_size)
        self._lock = threading.Lock()
        self._totals: list[np.ndarray] = []

    def _allreduce(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        if self._barrier.wait() == 0:
            self._totals = [np.zeros(a.shape) for a in arrays]
        self._barrier.wait()
        with self._lock:
            for total, a in zip(self._totals, arrays, strict=True):
                total += a
        self._barrier.wait()
        out = [t.copy() for t in self._totals]
        self._barrier.wait()
        return out

    def allreduce_sum(self, tensors):
        for t, total in zip(tensors, self._allreduce([t.numpy() for t in tensors]), strict=True):
            t.set(total.astype(np.float32))

    def sum(self, value):
        return float(self._allreduce([np.array(value)])[0])


def _train(rows: int, batches, sync=None, rank: int = 0, out=None):
    model = GPT2(CFG, params=f32_params(), ctx=G.Context("cpu", threads=1))
    step = OptimizerStep(model.ctx, model.params, model.graph(rows, 8, "train"), sync=sync)
    mine = slice(rank * rows, (rank + 1) * rows)  # this rank's rows of the global batch
    losses = [step([(x[mine], y[mine])], 1e-2).loss for x, y in batches]
    result = (losses, model.state_dict())
    if out is not None:
        out[rank] = result
    return result


def test_two_ranks_at_half_the_batch_match_one_process_at_the_whole_batch():
    batches = [data(4, seed) for seed in range(5)]
    want_losses, want_params = _train(4, batches)
    ranks = ThreadRanks(2)
    results: dict[int, tuple] = {}
    threads = [
        threading.Thread(target=_train, args=(2, batches, ranks, r, results)) for r in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for rank in range(2):
        losses, params = results[rank]
        np.testing.assert_allclose(losses, want_losses, rtol=1e-5)
        for name, w in want_params.items():
            # absolute: AdamW divides by sqrt(v), so a weight whose gradient is ~0 moves by
            # lr * g / (|g| + eps) and inherits the summation order's relative error in g
            np.testing.assert_allclose(params[name], w, rtol=0, atol=1e-5, err_msg=name)


def test_a_step_without_micro_batches_is_an_error():
    model = GPT2(CFG, ctx=G.Context("cpu", threads=1))
    with pytest.raises(ValueError, match="at least one micro-batch"):
        accumulate(model.graph(2, 8, "train"), [])
