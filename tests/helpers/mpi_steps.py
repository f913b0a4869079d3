"""Optimizer steps of a small model on the MPI ranks this script runs on, with the gradient
sums overlapped with the backward and not, and one process at the global batch: what
tests/distributed/test_overlap.py compares.

    mpiexec -n 2 python tests/helpers/mpi_steps.py OUT_DIR FAMILY RECOMPUTE ZERO ACCUM

FAMILY 'gpt2' or 'llama' (untied LM head); RECOMPUTE 'blocks' (the backward split that the
overlap needs) or 'none'; ZERO 0 or 1; ACCUM micro-batches per rank and step. Every rank
writes ``OUT_DIR/{overlap,blocking}_rank{R}.npz`` (the weights after the steps and
``_losses``); rank 0 also writes ``single.npz`` (one process, ACCUM micro-batches of all
ranks' rows each) and ``sums.json``, what the last overlapped step's gradient sums measured.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from pyggml_train import ggml as G
from pyggml_train.config import GPT2Config, LlamaConfig
from pyggml_train.distributed import Distributed
from pyggml_train.gpt2 import GPT2
from pyggml_train.llama import Llama
from pyggml_train.model import Model
from pyggml_train.step import OptimizerStep

B, T, VOCAB, STEPS, LR = 2, 16, 64, 4, 1e-3  # B rows per rank and micro-batch


def new_model(family: str, recompute: str) -> Model:
    ctx = G.Context("cpu", threads=1)
    shape = dict(vocab_size=VOCAB, block_size=T, n_layer=3, n_embd=32, recompute=recompute)
    if family == "gpt2":
        return GPT2(GPT2Config(n_head=2, **shape), ctx=ctx, seed=3)
    config = LlamaConfig(n_head=4, n_kv_head=2, d_ff=64, tie_embeddings=False, **shape)
    return Llama(config, ctx=ctx, seed=3)


def global_batches(world: int, accum: int) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Per step, ``accum`` micro-batches of ``B * world`` rows: every rank's rows."""
    rng = np.random.default_rng(11)
    steps = []
    for _ in range(STEPS):
        tokens = rng.integers(0, VOCAB, (accum, B * world, T + 1))
        steps.append([(t[:, :-1], t[:, 1:]) for t in tokens])
    return steps


def train(
    family: str, recompute: str, steps: list, dist: Distributed | None, zero: int, overlap: bool
) -> dict:
    """The weights after ``steps`` (this rank's rows of each micro-batch) and the losses."""
    model = new_model(family, recompute)
    rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    rows = steps[0][0][0].shape[0] // world
    step = OptimizerStep(
        model.ctx, model.params, model.graph(rows, T, "train"), sync=dist, zero=zero,
        overlap=overlap,
    )  # fmt: skip
    mine = slice(rank * rows, (rank + 1) * rows)
    losses = [step([(x[mine], y[mine]) for x, y in batches], LR).loss for batches in steps]
    return {**model.state_dict(), "_losses": np.array(losses)}


def main() -> None:
    out, family, recompute = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    zero, accum = int(sys.argv[4]), int(sys.argv[5])
    dist = Distributed.from_environment()
    steps = global_batches(dist.world_size, accum)
    for name, overlap in (("overlap", True), ("blocking", False)):
        weights = train(family, recompute, steps, dist, zero, overlap)
        np.savez(out / f"{name}_rank{dist.rank}.npz", **weights)
        if overlap and dist.is_master:
            sums = dist.last_sums
            measured = {
                k: getattr(sums, k)
                for k in ("calls", "bytes", "added", "started_early", "peak_in_flight")
            }
            (out / "sums.json").write_text(json.dumps(measured))
    if dist.is_master:
        np.savez(out / "single.npz", **train(family, recompute, steps, None, 0, False))


if __name__ == "__main__":
    main()
