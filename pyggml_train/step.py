"""One optimizer step, owned here: accumulate micro-batches, all-reduce, clip, AdamW.

The trainer, GPT2.loss_and_grads, the benchmark and the MPI path all call this module;
nothing else sets the loss scale, resets the accumulators or wires AdamW to them.

A step over k micro-batches on each of N processes (ranks):

1. the backward seed (loss scale) is 1/(k N) and the accumulators are zeroed;
2. each micro-batch runs forward + backward, adding its gradient to the accumulators,
   which then hold this rank's share of the gradient of the global mean loss;
3. the accumulators are summed across ranks in place (nothing to do for N = 1), so every
   rank holds the gradient of the mean loss over all k N micro-batches, the gradient of
   one batch k N times larger;
4. the global gradient norm gives the clip factor min(1, clip / norm);
5. AdamW updates the parameters with the clipped gradient, identically on every rank.

Gradients are summed once per step, with the last micro-batch (as nanoGPT's DDP and llm.c
do), never per micro-batch.

Overlap (``overlap=True``, the default): when the train graph runs its backward as several
graphs (recompute.RecomputeStep, a SplitBackward), the sums of step 3 start during the last
micro-batch's backward, each parameter's as soon as the graph that finishes its gradient has
run, and a thread advances them with non-blocking MPI while the backward goes on (as PyTorch
DDP's buckets do). The same MPI calls sum the same buckets as without overlap, so the
results are bit-identical; only when they start changes. A whole-model backward is one ggml
call with nothing to overlap, so there the sums start after it.

ZeRO-1 (``zero=1``) shards the optimizer state: every parameter has one owner rank (whole
parameters, balanced by size, as PyTorch's ZeroRedundancyOptimizer does). Step 3 becomes a
reduce of each gradient to its owner (a reduce-scatter at parameter granularity), the norm
sums the owners' shares, each rank updates only what it owns, and the owners broadcast the
new parameters (an all-gather). Same traffic as the all-reduce; AdamW's moments, 8 bytes a
parameter, are held once across the ranks instead of on every rank.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from . import ggml as G
from .config import OPTIMIZERS, TrainConfig
from .optim import SGD, AdamW


class TrainGraph(Protocol):
    """A forward + backward graph of one micro-batch (model.StepGraph is one)."""

    graph: G.Graph  # set_loss_scale, reset_grads, grad_accumulator

    def run(self, idx: np.ndarray, targets: np.ndarray) -> float: ...


@runtime_checkable
class SplitBackward(Protocol):
    """A train graph whose backward runs as several graphs (recompute.RecomputeStep is one)."""

    def run_split(
        self, idx: np.ndarray, targets: np.ndarray, done: Callable[[list[str]], None] | None
    ) -> float:
        """run(), calling ``done(names)`` as the gradients of those parameters are final."""
        ...


class GradientSums(Protocol):
    """Sums over the ranks that run while the caller computes (distributed.BucketSums)."""

    def add(self, tensors: Sequence[G.Tensor], roots: Sequence[int] | None = None) -> None:
        """Start summing ``tensors`` in place: onto every rank, or onto ``roots[i]``."""
        ...

    def finish(self) -> None:
        """Wait until every added sum is done."""
        ...


class GradientSync(Protocol):
    """What a step needs from the ranks it runs on (pyggml_train/distributed.py)."""

    world_size: int

    def allreduce_sum(self, tensors: Sequence[G.Tensor]) -> None:
        """Replace every tensor by its sum over the ranks, in place."""
        ...

    def sum(self, value: float) -> float:
        """The sum of a scalar over the ranks."""
        ...

    # overlap only
    def start_sums(self) -> GradientSums:
        """Sums that advance in the background until their finish()."""
        ...

    # ZeRO-1 only
    rank: int

    def reduce_sum(self, tensor: G.Tensor, root: int) -> None:
        """Sum ``tensor`` over the ranks into root's copy, in place."""
        ...

    def broadcast(self, tensor: G.Tensor, root: int) -> None:
        """Overwrite every rank's ``tensor`` with root's, in place."""
        ...

    def to_master(self, array: np.ndarray | None, source: int) -> np.ndarray | None:
        """Source's ``array`` on rank 0 (None elsewhere); source passes it, others None."""
        ...


Batch = tuple[np.ndarray, np.ndarray]  # inputs (B, T), targets (B, T)


def accumulate(
    train: TrainGraph,
    batches: Sequence[Batch],
    world_size: int = 1,
    done: Callable[[list[str]], None] | None = None,
) -> float:
    """Zero the accumulators and add the gradients of ``batches`` into them; the mean loss.

    The backward seed is 1/(k * world_size) for k micro-batches, so once the ranks' sums
    are added the accumulators hold the gradient of the mean loss over the global batch.
    ``done`` (a SplitBackward ``train`` only) hears which gradients are final during the last
    micro-batch.
    """
    if not batches:
        raise ValueError("a step needs at least one micro-batch, got none")
    k = len(batches)
    train.graph.set_loss_scale(1.0 / (k * world_size))
    train.graph.reset_grads()
    total = sum(train.run(x, y) for x, y in batches[:-1])
    x, y = batches[-1]
    last = train.run(x, y) if done is None else train.run_split(x, y, done)
    return (total + last) / k


def clip_factor(norm: float, grad_clip: float | None) -> float:
    """The factor that scales a gradient of global norm ``norm`` down to ``grad_clip``."""
    if grad_clip is None or norm <= grad_clip:
        return 1.0
    return grad_clip / (norm + 1e-6)


@dataclass
class StepStats:
    """What one optimizer step reports."""

    loss: float  # mean loss over the global batch (all micro-batches of all ranks)
    grad_norm: float  # global gradient norm before clipping
    accumulate_s: float  # forward + backward of this rank's micro-batches
    # summing gradients (and the loss) over the ranks after the backward: with overlap, only
    # what the backward did not hide; 0 for one process
    sync_s: float
    update_s: float  # gradient norm + AdamW (+ the parameter broadcast under ZeRO-1)
    updated: bool = True  # False: the loss or the norm was NaN/Inf and the weights were kept


def shard_owners(sizes: dict[str, int], world_size: int) -> dict[str, int]:
    """Owner rank of each parameter: largest first to the least loaded rank (ties: lowest)."""
    if len(sizes) < world_size:
        raise ValueError(
            f"ZeRO-1 gives every rank whole parameters: {len(sizes)} parameters cannot be "
            f"shared by {world_size} ranks; use fewer ranks or zero=0"
        )
    load = [0] * world_size
    owners = {}
    for name in sorted(sizes, key=lambda n: (-sizes[n], n)):
        rank = min(range(world_size), key=lambda r: (load[r], r))
        owners[name] = rank
        load[rank] += sizes[name]
    return owners


class OptimizerStep:
    """The optimizer step of one model: its train graph, its optimizer, its ranks.

    ``optimizer``: 'adamw'; 'adam' (AdamW without weight decay); 'sgd' (optim.SGD, which
    takes only weight_decay). ``overlap``: sum gradients behind the backward where the train
    graph splits it and there are several ranks (see the module docstring).
    """

    def __init__(
        self,
        ctx: G.Context,
        params: dict[str, G.Tensor],
        train: TrainGraph,
        beta1: float = 0.9,
        beta2: float = 0.95,
        eps: float = 1e-8,
        weight_decay: float = 0.1,
        grad_clip: float | None = 1.0,
        sync: GradientSync | None = None,
        optimizer: str = "adamw",
        zero: int = 0,
        overlap: bool = True,
    ):
        self.train = train
        self.sync = sync
        self.world_size = sync.world_size if sync is not None else 1
        self.grad_clip = grad_clip
        self.overlaps = overlap and self.world_size > 1 and isinstance(train, SplitBackward)
        self.params = params
        self.grads = {n: train.graph.grad_accumulator(p) for n, p in params.items()}
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if zero not in (0, 1):
            raise ValueError(f"zero must be 0 or 1, got {zero}")
        # ZeRO-1 needs several ranks; on one process it is the plain step
        self.owners: dict[str, int] | None = None
        mine = params
        if zero == 1 and sync is not None and self.world_size > 1:
            self.owners = shard_owners({n: p.size for n, p in params.items()}, self.world_size)
            mine = {n: p for n, p in params.items() if self.owners[n] == sync.rank}
        my_grads = {n: self.grads[n] for n in mine}
        self.optimizer: AdamW | SGD
        if optimizer == "sgd":
            self.optimizer = SGD(ctx, mine, my_grads, weight_decay)
        else:
            decay = 0.0 if optimizer == "adam" else weight_decay
            self.optimizer = AdamW(ctx, mine, my_grads, beta1, beta2, eps, decay)

    @classmethod
    def for_run(
        cls,
        ctx: G.Context,
        params: dict[str, G.Tensor],
        train: TrainGraph,
        config: TrainConfig,
        sync: GradientSync | None = None,
    ) -> OptimizerStep:
        """The step a TrainConfig describes (optimizer, its hyperparameters, clipping, ZeRO)."""
        c = config
        return cls(ctx, params, train, c.beta1, c.beta2, c.eps, c.weight_decay, c.grad_clip,
                   sync, c.optimizer, c.zero, c.overlap)  # fmt: skip

    @property
    def optimizer_state_bytes(self) -> int:
        """Bytes of optimizer state (AdamW's two moments) this rank holds."""
        if not isinstance(self.optimizer, AdamW):
            return 0
        return sum(8 * p.size for p in self.optimizer.params.values())

    # -- checkpoints -----------------------------------------------------------------------------
    def state(self) -> dict[str, object]:
        """The optimizer's moments and step count (device layout), as optim.AdamW.state().
        Under ZeRO-1 every rank must call it: the master gathers the shards and gets them
        all; the other ranks get no moments."""
        if self.owners is None:
            return self.optimizer.state()
        state: dict[str, object] = {"m": {}, "v": {}, "steps": self.optimizer.steps}
        if isinstance(self.optimizer, AdamW):
            for group, moments in (("m", self.optimizer.m), ("v", self.optimizer.v)):
                for name, owner in self.owners.items():
                    mine = moments[name].numpy() if name in moments else None
                    array = self.sync.to_master(mine, owner)
                    if array is not None:
                        state[group][name] = array
        return state

    def set_state(self, state: dict[str, object]) -> None:
        """Restore what state() returned (under ZeRO-1 each rank takes its own shard)."""
        self.optimizer.set_state(state)

    # -- the step --------------------------------------------------------------------------------
    def __call__(self, batches: Sequence[Batch], lr: float) -> StepStats:
        """Accumulate ``batches`` (this rank's micro-batches), sum over ranks, clip, update."""
        t0 = time.perf_counter()
        sums = self.sync.start_sums() if self.overlaps else None
        done = None
        if sums is not None:
            owners = self.owners

            def done(names: list[str]) -> None:
                mine = [n for n in names if n in self.grads]  # the model's trained parameters
                roots = None if owners is None else [owners[n] for n in mine]
                sums.add([self.grads[n] for n in mine], roots)

        loss = accumulate(self.train, batches, self.world_size, done)
        t1 = time.perf_counter()
        if sums is not None:
            sums.finish()
        elif self.sync is not None and self.owners is None:
            self.sync.allreduce_sum(list(self.grads.values()))
        elif self.owners is not None:
            for name, owner in self.owners.items():
                self.sync.reduce_sum(self.grads[name], owner)
        if self.sync is not None:
            loss = self.sync.sum(loss) / self.world_size
        t2 = time.perf_counter()
        squares = self.optimizer.sum_of_squares()
        if self.owners is not None:
            squares = self.sync.sum(squares)  # each rank holds the summed gradients it owns
        norm = math.sqrt(squares)
        # a NaN/Inf gradient would make every weight NaN: leave the update to the caller's
        # policy (train.py stops or skips); every rank sees the same summed loss and norm
        updated = math.isfinite(loss) and math.isfinite(norm)
        if updated:
            self.optimizer.update(lr, clip_factor(norm, self.grad_clip))
            if self.owners is not None:
                for name, owner in self.owners.items():
                    self.sync.broadcast(self.params[name], owner)
        t3 = time.perf_counter()
        return StepStats(loss, norm, t1 - t0, t2 - t1, t3 - t2, updated)
