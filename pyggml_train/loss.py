"""The loss head: mean cross-entropy of a model's padded logits against next-token targets,
in three formulations (docs/training.md compares their memory and speed), and the sparse
one over row chunks of the hidden states, so that no (N, Vp) logits tensor exists."""

from __future__ import annotations

from collections.abc import Callable

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
        flat = checked_targets(targets, self.rows, self.vocab)  # (N,)
        if self.kind == "sparse":
            self.labels.set(flat)
        elif self.kind == "dense":
            onehot = np.zeros((self.rows, self.vocab), dtype=np.float32)  # (N, V)
            onehot[np.arange(self.rows), flat] = 1.0
            self.labels.set(onehot)
        else:
            self.labels.set(np.arange(self.rows, dtype=np.int64) * self.vocab + flat)


def checked_targets(targets: np.ndarray, rows: int, vocab: int) -> np.ndarray:
    """``targets`` flattened to (rows,), or ValueError if their count or a value is wrong."""
    flat = np.asarray(targets).reshape(-1)  # (N,)
    if flat.size != rows:
        raise ValueError(f"targets have {flat.size} entries, the graph expects {rows}")
    if flat.min() < 0 or flat.max() >= vocab:
        raise ValueError(f"targets must lie in [0, {vocab}), got [{flat.min()}, {flat.max()}]")
    return flat


def row_chunks(rows: int, chunk_rows: int) -> list[tuple[int, int]]:
    """(first row, row count) of consecutive chunks of at most ``chunk_rows`` rows."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    return [(r0, min(chunk_rows, rows - r0)) for r0 in range(0, rows, chunk_rows)]


class ChunkedLossHead:
    """The sparse cross-entropy of the LM head over row chunks of the hidden states.

    ``hidden`` (N, C) are the rows the head reads (the last block's output); ``head`` maps
    a (n, C) view of them to the padded logits (n, Vp) (the final norm and the LM head
    product, e.g. ``GPT2Net.head``). Chunk k's loss ``losses[k]`` is the mean over its
    rows; the mean over all N rows, ``loss``, is the sum of ``weights[k] * losses[k]``,
    weights[k] = n_k / N. A graph that holds one chunk's logits at a time (a forward graph
    summing the chunks, whose allocator frees each chunk's logits before the next; or one graph per
    chunk for a backward, recompute.py) never holds the (N, Vp) logits: 824 MB for GPT-2
    at B*T = 4096, against 103 MB for a chunk of 512 rows.

    Each row's logits, softmax and gradient are the unchunked head's; what a chunk changes
    is the order of the sums over rows (the loss, and the head's weight gradients, added
    up chunk by chunk) and the gradient's scale, seed_k / n_k instead of seed / N (one
    rounding). docs/training.md states the measured difference.
    """

    def __init__(
        self,
        ctx: G.Context,
        hidden: G.Tensor,
        head: Callable[[G.Tensor], G.Tensor],
        vocab_size: int,
        chunk_rows: int,
    ):
        n, c = hidden.shape  # (N, C)
        self.rows, self.vocab = n, vocab_size
        self.labels = ctx.input((n,), dtype="i32", name="targets")  # (N,)
        self.chunks = row_chunks(n, chunk_rows)
        self.weights = [rows / n for _, rows in self.chunks]
        self.losses = []  # each ()
        for r0, rows in self.chunks:
            x = G.view(hidden, (rows, c), offset=r0 * c)  # (n_k, C)
            logits = head(x)  # (n_k, Vp)
            targets = G.view(self.labels, (rows,), offset=r0)  # (n_k,)
            self.losses.append(G.cross_entropy_loss_sparse(logits, targets, n_classes=vocab_size))
        # the mean over all rows () for a forward graph, summed in chunk order, so the
        # graph computes (and frees) one chunk's logits after another
        total = self.losses[0] * self.weights[0]
        for loss, weight in zip(self.losses[1:], self.weights[1:], strict=True):
            total = total + loss * weight
        self.loss = total

    def set_targets(self, targets: np.ndarray) -> None:
        self.labels.set(checked_targets(targets, self.rows, self.vocab))
