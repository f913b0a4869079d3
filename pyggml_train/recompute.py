"""Activation recomputation (``recompute="blocks"``): a training step that keeps only each
transformer block's input, and recomputes the block inside the backward pass.

A whole-model backward graph keeps every activation of every block alive until the
backward pass reaches it. Here one micro-batch runs as several graphs instead, all adding
into one set of gradient accumulators and sharing one set of compute buffers (G.Arena):

1. forward: embeddings and every block, copying each block's input x_i (B, T, C) into a
   persistent slot (and the last block's output x_n);
2. head: ln_f, the LM head and the loss from x_n, backward to the head's parameters and to
   dL/dx_n; with the sparse loss, one such graph per row chunk of x_n
   (loss.ChunkedLossHead), so no (B*T, Vp) logits exist, only one chunk's;
3. block i = n-1 .. 0: the block again from x_i, with the loss sum(block(x_i) * dL/dx_{i+1})
   whose gradients are the block's parameter gradients and dL/dx_i;
4. embeddings: again from the token ids, loss sum(x_0 * dL/dx_0), for wte and wpe (when
   they train: LoRA freezes them).

Each graph holds one block's activations, so the peak is the largest of the head's and
one block's instead of all blocks', for one extra forward pass of the blocks. The ops and
the order in which gradient contributions add up are those of the whole-model graph, so
on the CPU the gradients are bit-identical to it (tests/model/test_recompute.py), bf16 matmuls
included, when the head is one chunk (B*T <= the model's ``loss_chunk_rows``, or 0); in
chunks, the head's sums over rows add up chunk by chunk (loss.ChunkedLossHead).
Dropout masks are the same in the forward and the recomputation: every graph reads one
dropout state.

Since the backward runs graph by graph, a parameter's gradient is final once the last graph
that adds to it has run (block i's after block i's graph; a tied wte's after the
embeddings'). ``run_split`` says so after each graph, so that a data-parallel step can start
summing those gradients over the ranks while the backward goes on (step.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from . import ggml as G
from .layers import Build
from .loss import ChunkedLossHead, LossHead


class Recomputable(Protocol):
    """What recomputation reads of a model (model.Model, which builds us, has it all)."""

    net: Any  # with embed(), blocks and head(), as gpt2.GPT2Net
    ctx: G.Context
    trainable: dict[str, G.Tensor]  # the parameters that get gradients

    def builder(self, dropout_state: G.Tensor | None = None) -> Build: ...

    dropout_rng: Any
    arena: G.Arena | None  # None: every graph its own buffers
    vocab_size: int
    loss_kind: str
    loss_chunk_rows: int  # rows per chunk of the sparse loss head; 0: one chunk


class RecomputeStep:
    """A train graph (contract A, step.TrainGraph) for one (B, T): ``run(idx, targets)``
    and ``graph`` with set_loss_scale, reset_grads, grad_accumulator and grad."""

    def __init__(self, model: Recomputable, batch: int, seq: int):
        net, ctx = model.net, model.ctx
        for need in ("embed", "blocks", "head"):
            if not hasattr(net, need):
                raise ValueError(
                    f"recompute='blocks' needs a net with embed(), blocks and head() (as "
                    f"gpt2.GPT2Net); {type(net).__name__} has no {need}: use recompute='none'"
                )
        self.graph = self  # the step protocol calls graph.set_loss_scale() etc.
        self.dropout_rng = model.dropout_rng
        self.idx = ctx.input((batch, seq), dtype="i32", name="idx")  # (B, T)
        self.dropout_state = ctx.input((2,), "i32", name="dropout_state")
        g = model.builder(self.dropout_state)
        arena = model.arena
        self.accs = {
            p: ctx.tensor(p.shape, name=f"grad_acc:{n}") for n, p in model.trainable.items()
        }
        blocks = net.blocks
        n = len(blocks)

        # 1. forward: the block inputs x_0 .. x_n into persistent slots
        x = net.embed(g, self.idx)  # (B, T, C)
        self.slots = [ctx.param(x.shape, name=f"block_input:{i}") for i in range(n + 1)]
        copies = [G.cpy(x, self.slots[0])]
        for i, block in enumerate(blocks):
            x = block(g, x)  # (B, T, C)
            copies.append(G.cpy(x, self.slots[i + 1]))
        self.forward = ctx.graph(copies, arena=arena)

        # dL/dx_i, alternating between two buffers: block i reads dL/dx_{i+1} from one and
        # writes dL/dx_i, as the accumulator of its input slot, into the other
        self.dx = [ctx.tensor(x.shape, name=f"block_input_grad:{k}") for k in range(2)]

        # 2. head: one graph per row chunk of x_n with the sparse loss, else one graph
        rows = batch * seq
        accs = {**self.accs, self.slots[n]: self.dx[n % 2]}
        self.head: ChunkedLossHead | LossHead
        if model.loss_kind == "sparse":
            hidden = G.reshape(self.slots[n], (rows, x.shape[-1]))  # (N, C)
            chunk = model.loss_chunk_rows or rows
            self.head = ChunkedLossHead(
                ctx, hidden, lambda h: net.head(g, h), model.vocab_size, chunk
            )
            self.losses, self.loss_weights = self.head.losses, self.head.weights
        else:
            logits = net.head(g, self.slots[n])  # (B, T, Vp)
            logits = G.reshape(logits, (rows, logits.shape[-1]))  # (N, Vp)
            self.head = LossHead(ctx, logits, model.vocab_size, model.loss_kind)
            self.losses, self.loss_weights = [self.head.loss], [1.0]
        self.head_graphs = [
            ctx.graph(loss.set_loss(), True, grad_accs=accs, arena=arena) for loss in self.losses
        ]

        # 3. blocks, recomputed from their inputs
        self.block_graphs = []
        for i, block in enumerate(blocks):
            y = block(g, self.slots[i])  # (B, T, C)
            loss = G.sum(G.mul(y, self.dx[(i + 1) % 2])).set_loss()
            accs = {**self.accs, self.slots[i]: self.dx[i % 2]}
            self.block_graphs.append(ctx.graph(loss, True, grad_accs=accs, arena=arena))

        # 4. embeddings, when they train (LoRA freezes them)
        g = model.builder(self.dropout_state)
        x = net.embed(g, self.idx)  # (B, T, C)
        self.embed_graph = None
        if g.used & set(model.trainable):
            loss = G.sum(G.mul(x, self.dx[0])).set_loss()
            self.embed_graph = ctx.graph(loss, True, grad_accs=self.accs, arena=arena)
        embed = [self.embed_graph] if self.embed_graph is not None else []
        self._graphs = [*self.head_graphs, *self.block_graphs, *embed]
        self.finished = finished_after(
            [*self.head_graphs, *reversed(self.block_graphs), *embed], list(model.trainable)
        )

    # -- the train-graph protocol ---------------------------------------------------------------
    def set_loss_scale(self, scale: float) -> None:
        """Seed of the loss's backward (each head chunk's, by its share of the rows); the
        other graphs start from the gradient the head gives."""
        for graph, weight in zip(self.head_graphs, self.loss_weights, strict=True):
            graph.set_loss_scale(scale * weight)

    def reset_grads(self) -> None:
        for graph in self._graphs:  # each zeroes its accumulators and writes its loss seed
            graph.reset_grads()

    def grad_accumulator(self, param: G.Tensor) -> G.Tensor:
        return self.accs[param]

    def grad(self, param: G.Tensor) -> np.ndarray:
        return self.accs[param].numpy()

    def run(self, idx: np.ndarray, targets: np.ndarray) -> float:
        """Forward + backward of one micro-batch into the accumulators; its loss."""
        return self.run_split(idx, targets, None)

    def run_split(
        self,
        idx: np.ndarray,
        targets: np.ndarray,
        done: Callable[[list[str]], None] | None,
    ) -> float:
        """run(), calling ``done(names)`` after each backward graph with the parameters whose
        gradients no later graph of this micro-batch adds to (:attr:`finished`)."""
        report = done or (lambda names: None)
        backward = iter(self.finished)
        self.idx.set(np.asarray(idx, dtype=np.int32))
        self.head.set_targets(targets)
        self.dropout_rng.draw(self.dropout_state)
        self.forward.compute()
        n = len(self.block_graphs)
        self.dx[n % 2].fill(0.0)
        loss = 0.0
        chunks = zip(self.head_graphs, self.losses, self.loss_weights, strict=True)
        for graph, chunk_loss, weight in chunks:
            graph.compute()
            loss += weight * float(chunk_loss.numpy())  # before another graph reuses the buffers
            report(next(backward))
        for i in reversed(range(n)):
            self.dx[i % 2].fill(0.0)
            self.block_graphs[i].compute()
            report(next(backward))
        if self.embed_graph is not None:
            self.embed_graph.compute()
            report(next(backward))
        return loss


def finished_after(graphs: list[G.Graph], names: list[str]) -> list[list[str]]:
    """For graphs run in this order, the parameters (of ``names``, in that order) whose
    gradients each one is the last to add to; a parameter no graph names (a name longer
    than ggml keeps) is finished after the last graph."""
    last = {}
    for k, graph in enumerate(graphs):
        for name in graph.param_names:
            last[name] = k
    groups: list[list[str]] = [[] for _ in graphs]
    for name in names:
        groups[last.get(name, len(graphs) - 1)].append(name)
    return groups
