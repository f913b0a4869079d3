"""The loss head: mean cross-entropy of a model's padded logits against next-token targets,
in three formulations (docs/training.md compares their memory and speed)."""

from __future__ import annotations

import numpy as np

from . import ggml as G
from .config import LOSS_KINDS


def vocab_logits(logits: G.Tensor, vocab_size: int) -> G.Tensor:
    """The (N, V) real-vocabulary columns of padded logits (N, Vp), as a contiguous copy."""
    n, vp = logits.shape
    if vp == vocab_size:
        return logits
    return G.cont(G.view(logits, (n, vocab_size)))  # (N, V)


class LossHead:
    """Mean cross-entropy of the padded logits (N, Vp) over the first V columns against
    next-token targets.

    ``sparse``: ggml_cross_entropy_loss_sparse (patch 0007) with the targets (N,) i32; the
    padded columns stay out of its softmax, so the logits need no cut-off copy.
    ``dense``: ggml's cross_entropy_loss with a one-hot (N, V) f32 label input, as large
    as the logits. ``gather``: -mean(log(softmax(logits)[n, target_n])) via get_rows on
    the flattened probabilities, fed with the flat indices n*V + target_n (N,) i32.
    docs/training.md compares their memory and speed.
    """

    def __init__(self, ctx: G.Context, logits: G.Tensor, vocab_size: int, kind: str):
        n, v = logits.shape[0], vocab_size
        self.kind, self.rows, self.vocab = kind, n, v
        if kind == "sparse":
            self.labels = ctx.input((n,), dtype="i32", name="targets")  # (N,)
            self.loss = G.cross_entropy_loss_sparse(logits, self.labels, n_classes=v)  # ()
            return
        logits = vocab_logits(logits, v)  # (N, V)
        if kind == "dense":
            self.labels = ctx.input((n, v), name="labels")  # (N, V) one-hot
            self.loss = G.cross_entropy_loss(logits, self.labels)  # ()
        elif kind == "gather":
            if n * v >= 2**31:
                raise ValueError(f"gather loss: N*V = {n * v} overflows the i32 flat index")
            self.labels = ctx.input((n,), dtype="i32", name="flat_targets")  # (N,)
            probs = G.reshape(G.soft_max(logits), (n * v, 1))  # (N*V, 1)
            picked = G.get_rows(probs, self.labels)  # (N, 1)
            self.loss = G.sum(G.log(picked)) * (-1.0 / n)  # ()
        else:
            raise ValueError(f"loss kind must be one of {LOSS_KINDS}, got {kind!r}")

    def set_targets(self, targets: np.ndarray) -> None:
        flat = np.asarray(targets).reshape(-1)  # (N,)
        if flat.size != self.rows:
            raise ValueError(f"targets have {flat.size} entries, the graph expects {self.rows}")
        if flat.min() < 0 or flat.max() >= self.vocab:
            raise ValueError(
                f"targets must lie in [0, {self.vocab}), got [{flat.min()}, {flat.max()}]"
            )
        if self.kind == "sparse":
            self.labels.set(flat)
        elif self.kind == "dense":
            onehot = np.zeros((self.rows, self.vocab), dtype=np.float32)  # (N, V)
            onehot[np.arange(self.rows), flat] = 1.0
            self.labels.set(onehot)
        else:
            self.labels.set(np.arange(self.rows, dtype=np.int64) * self.vocab + flat)
