"""Activation recomputation (``recompute="blocks"``): a training step that keeps only each
transformer block's input, and recomputes the block inside the backward pass.

A whole-model backward graph keeps every activation of every block alive until the
backward pass reaches it. Here one micro-batch runs as several graphs instead, all adding
into one set of gradient accumulators and sharing one set of compute buffers (G.Arena):

1. forward: embeddings and every block, copying each block's input x_i (B, T, C) into a
   persistent slot (and the last block's output x_n);
2. head: ln_f, the LM head and the loss from x_n, backward to the head's parameters and to
   dL/dx_n;
3. block i = n-1 .. 0: the block again from x_i, with the loss sum(block(x_i) * dL/dx_{i+1})
   whose gradients are the block's parameter gradients and dL/dx_i;
4. embeddings: again from the token ids, loss sum(x_0 * dL/dx_0), for wte and wpe.

Each graph holds one block's activations, so the peak is the largest of the head's and
one block's instead of all blocks', for one extra forward pass of the blocks. The ops and
the order in which gradient contributions add up are those of the whole-model graph, so
on the CPU the gradients are bit-identical to it (tests/model/test_recompute.py), bf16 matmuls
included.
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
from .loss import LossHead


class Recomputable(Protocol):
    """What recomputation reads of a model (model.Model, which builds us, has it all)."""

    net: Any  # with embed(), blocks and head(), as gpt2.GPT2Net
    ctx: G.Context
    params: dict[str, G.Tensor]
    matmul_dtype: str
    fused_attention: bool
    dropout_rng: Any
    arena: G.Arena | None  # None: every graph its own buffers
    vocab_size: int
    loss_kind: str


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
        g = Build(ctx, model.params, model.matmul_dtype, model.fused_attention, self.dropout_state)
        arena = model.arena
        self.params = model.params
        self.accs = {p: ctx.tensor(p.shape, name=f"grad_acc:{n}") for n, p in model.params.items()}
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

        # 2. head
        logits = net.head(g, self.slots[n])  # (B, T, Vp)
        logits = G.reshape(logits, (batch * seq, logits.shape[-1]))  # (N, Vp)
        self.head = LossHead(ctx, logits, model.vocab_size, model.loss_kind)
        self.head.loss.set_loss()
        accs = {**self.accs, self.slots[n]: self.dx[n % 2]}
        self.head_graph = ctx.graph(self.head.loss, True, grad_accs=accs, arena=arena)

        # 3. blocks, recomputed from their inputs
        self.block_graphs = []
        for i, block in enumerate(blocks):
            y = block(g, self.slots[i])  # (B, T, C)
            loss = G.sum(G.mul(y, self.dx[(i + 1) % 2])).set_loss()
            accs = {**self.accs, self.slots[i]: self.dx[i % 2]}
            self.block_graphs.append(ctx.graph(loss, True, grad_accs=accs, arena=arena))

        # 4. embeddings
        loss = G.sum(G.mul(net.embed(g, self.idx), self.dx[0])).set_loss()
        self.embed_graph = ctx.graph(loss, True, grad_accs=self.accs, arena=arena)
        self._graphs = [self.head_graph, *self.block_graphs, self.embed_graph]
        self.finished = finished_after(
            [self.head_graph, *reversed(self.block_graphs), self.embed_graph], list(self.params)
        )

    # -- the train-graph protocol ---------------------------------------------------------------
    def set_loss_scale(self, scale: float) -> None:
        """Seed of the loss's backward; the other graphs start from the gradient it gives."""
        self.head_graph.set_loss_scale(scale)

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
        self.head_graph.compute()
        loss = float(self.head.loss.numpy())  # before another graph reuses the buffers
        report(next(backward))
        for i in reversed(range(n)):
            self.dx[i % 2].fill(0.0)
            self.block_graphs[i].compute()
            report(next(backward))
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
