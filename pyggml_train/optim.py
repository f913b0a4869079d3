"""AdamW run as two ggml graphs over the gradient accumulators.

The backward graph leaves each parameter's gradient in a persistent accumulator; this
module never copies it to the host. A norm graph sums the squares of all accumulators
(one scalar comes back; pyggml_train/step.py turns it into the global-norm clip factor),
and an optimizer graph applies ggml's opt_step_adamw in place, with that factor as the
step's 8th hyperparameter (patch 0012: the step scales the gradient itself, so no scaled
copy is made). Both graphs are built once; a step only writes the two hyperparameter tensors.

ggml's step (ops.cpp, ggml_compute_forward_opt_step_adamw_f32), with t = steps done + 1::

    m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
    w = w (1 - lr wd) - lr (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

i.e. PyTorch's AdamW; the bias corrections enter as hparams[5:7] = 1/(1 - beta^t).
"""

from __future__ import annotations

import numpy as np

from . import ggml as G


def decays(param: G.Tensor) -> bool:
    """Weight decay applies to matrices (Linear weights, embeddings), not biases or LayerNorm."""
    return param.ndim >= 2


# The norm graph squares gradients in pieces of at most this many elements: its compute
# buffer holds one piece's squares, not a copy of the largest gradient (154 MB for GPT-2's wte).
SQUARES_CHUNK = 1 << 21


def square_sums(grad: G.Tensor) -> list[G.Tensor]:
    """Sums of squares () of consecutive row blocks of a contiguous ``grad``."""
    flat = G.reshape(grad, (grad.size // grad.shape[-1], grad.shape[-1]))  # (R, C)
    rows, cols = flat.shape
    step = max(1, SQUARES_CHUNK // cols)
    pieces = [
        G.view(flat, (min(step, rows - r0), cols), offset=r0 * cols) for r0 in range(0, rows, step)
    ]
    return [G.sum(G.sqr(p)) for p in pieces]


class SquaredNorm:
    """The squared global norm of gradient accumulators: one graph, built once, that both
    optimizers compute before their update (clipping and the non-finite check need it)."""

    def __init__(self, ctx: G.Context, grads: dict[str, G.Tensor]):
        squares = [part for g in grads.values() for part in square_sums(g)]  # each ()
        total = squares[0]
        for s in squares[1:]:
            total = total + s
        self._total = total  # ()
        self._graph = ctx.graph(total)

    def __call__(self) -> float:
        self._graph.compute()
        return max(float(self._total.numpy()), 0.0)


class AdamW:
    """AdamW over named parameters whose gradients sit in persistent accumulators."""

    def __init__(
        self,
        ctx: G.Context,
        params: dict[str, G.Tensor],
        grads: dict[str, G.Tensor],
        beta1: float = 0.9,
        beta2: float = 0.95,
        eps: float = 1e-8,
        weight_decay: float = 0.1,
    ):
        if set(params) != set(grads):
            raise ValueError("params and grads must have the same names")
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.weight_decay = weight_decay
        self.params = params
        self.steps = 0  # optimizer steps taken so far (t - 1 of the next step)
        self.m = {n: ctx.tensor(p.shape, name=f"adam_m:{n}") for n, p in params.items()}
        self.v = {n: ctx.tensor(p.shape, name=f"adam_v:{n}") for n, p in params.items()}
        ctx.allocate()  # one buffer for all moments, then zero them
        for t in [*self.m.values(), *self.v.values()]:
            t.fill(0.0)
        # [lr, beta1, beta2, eps, weight_decay, 1/(1-beta1^t), 1/(1-beta2^t), clip factor]
        self.hp_decay = ctx.input((8,), name="adamw_hparams_decay")  # (8,)
        self.hp_plain = ctx.input((8,), name="adamw_hparams_no_decay")  # (8,)

        self._squared_norm = SquaredNorm(ctx, grads)

        steps = []
        for name, p in params.items():
            hp = self.hp_decay if decays(p) else self.hp_plain
            steps.append(G.opt_step_adamw(p, grads[name], self.m[name], self.v[name], hp))
        self._step_graph = ctx.graph(steps)

    def sum_of_squares(self) -> float:
        """Sum of the squares of every accumulated gradient (the squared global norm)."""
        return self._squared_norm()

    def update(self, lr: float, grad_scale: float = 1.0) -> None:
        """One update with learning rate lr on the gradients times grad_scale (the clip)."""
        t = self.steps + 1
        common = [lr, self.beta1, self.beta2, self.eps]
        tail = [1.0 / (1.0 - self.beta1**t), 1.0 / (1.0 - self.beta2**t), grad_scale]
        self.hp_decay.set(np.array(common + [self.weight_decay] + tail, dtype=np.float32))
        self.hp_plain.set(np.array(common + [0.0] + tail, dtype=np.float32))
        self._step_graph.compute()
        self.steps = t

    # -- checkpoints -----------------------------------------------------------------------------
    def state(self) -> dict[str, object]:
        """{'m': {name: array}, 'v': {...}, 'steps': int}, arrays in device layout."""
        return {
            "m": {n: t.numpy() for n, t in self.m.items()},
            "v": {n: t.numpy() for n, t in self.v.items()},
            "steps": self.steps,
        }

    def set_state(self, state: dict[str, object]) -> None:
        """Restore what state() returned."""
        for key, tensors in (("m", self.m), ("v", self.v)):
            arrays = state[key]
            missing = sorted(set(tensors) - set(arrays))
            if missing:
                raise ValueError(f"optimizer state lacks {key} for {missing[:5]}")
            for name, t in tensors.items():
                t.set(arrays[name])
        self.steps = int(state["steps"])


class SGD:
    """Plain SGD (no momentum) through ggml's opt_step_sgd: ``w = w (1 - alpha wd) - alpha g``.

    Same protocol as :class:`AdamW` (sum_of_squares, update, state). The clip factor s needs
    no scaled copy of the gradient either: the step runs with alpha = lr s and decay wd / s,
    which is ``w (1 - lr wd) - lr s g``. Decay applies to matrices only, as in AdamW.
    """

    def __init__(
        self,
        ctx: G.Context,
        params: dict[str, G.Tensor],
        grads: dict[str, G.Tensor],
        weight_decay: float = 0.0,
    ):
        if set(params) != set(grads):
            raise ValueError("params and grads must have the same names")
        self.weight_decay = weight_decay
        self.params = params
        self.steps = 0
        self.hp_decay = ctx.input((2,), name="sgd_hparams_decay")  # (2,) [alpha, wd]
        self.hp_plain = ctx.input((2,), name="sgd_hparams_no_decay")  # (2,)
        self._squared_norm = SquaredNorm(ctx, grads)
        self._step_graph = ctx.graph(
            [
                G.opt_step_sgd(p, grads[n], self.hp_decay if decays(p) else self.hp_plain)
                for n, p in params.items()
            ]
        )

    def sum_of_squares(self) -> float:
        """Sum of the squares of every accumulated gradient (the squared global norm)."""
        return self._squared_norm()

    def update(self, lr: float, grad_scale: float = 1.0) -> None:
        """One step with learning rate lr on the gradients times grad_scale (the clip)."""
        if grad_scale <= 0:
            raise ValueError(f"grad_scale must be > 0, got {grad_scale}")
        alpha = lr * grad_scale
        self.hp_decay.set(np.array([alpha, self.weight_decay / grad_scale], dtype=np.float32))
        self.hp_plain.set(np.array([alpha, 0.0], dtype=np.float32))
        self._step_graph.compute()
        self.steps += 1

    def state(self) -> dict[str, object]:
        """{'m': {}, 'v': {}, 'steps': int}: SGD keeps no moments."""
        return {"m": {}, "v": {}, "steps": self.steps}

    def set_state(self, state: dict[str, object]) -> None:
        self.steps = int(state["steps"])
