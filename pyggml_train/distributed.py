"""Data-parallel ranks on MPI: who this process is, and gradient sums across processes.

One small object knows the rank, the world size and whether this process is the master
(rank 0, the only one that logs, draws the progress bar and writes metrics and
checkpoints), as nanoGPT's DDP setup and llm.c's multi-process runs do. Launched by
``mpirun``/``mpiexec`` it talks MPI through mpi4py; a plain single process never imports
mpi4py and every collective is a no-op.

Gradients are summed with MPI_Allreduce in place on the gradient accumulators, through
numpy views of their memory (Tensor.host_view), in buckets of at most BUCKET_BYTES: no
second copy of the gradients is ever made, only MPI's own bounded staging.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from . import ggml as G

# Environment variables by which MPI launchers tell a process its world size: Open MPI's
# mpirun, and PMI (MPICH/Intel MPI's Hydra, Slurm's srun --mpi=pmi2).
WORLD_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE")

# One MPI_Allreduce call sums at most this many bytes (PyTorch DDP's default bucket is
# 25 MB): large enough that per-call latency is negligible, small enough that MPI's
# internal staging for a large gradient (GPT-2's wte is 154 MB) stays bounded.
BUCKET_BYTES = 25 * 2**20


def launched_by_mpi(environ: dict[str, str] | None = None) -> bool:
    """True when an MPI launcher started this process as one of several ranks."""
    env = os.environ if environ is None else environ
    return any(int(env.get(v, "1") or "1") > 1 for v in WORLD_SIZE_VARS)


class Distributed:
    """This process's place among the ranks of a data-parallel run."""

    def __init__(self, comm: Any | None = None):
        """``comm``: an mpi4py communicator, or None for a single process without MPI."""
        self.comm = comm
        self.rank = comm.Get_rank() if comm is not None else 0
        self.world_size = comm.Get_size() if comm is not None else 1
        self.is_master = self.rank == 0
        self.grad_sync_calls = 0  # MPI calls that summed gradients (for measurements)
        self.grad_sync_bytes = 0  # bytes they summed

    @classmethod
    def from_environment(cls) -> Distributed:
        """MPI's COMM_WORLD under mpirun/mpiexec with more than one rank, else a single process."""
        if not launched_by_mpi():
            return cls(None)
        try:
            from mpi4py import MPI
        except ImportError:
            raise RuntimeError(
                "this process was started by an MPI launcher with several ranks, but mpi4py is "
                "not installed; install it with: pip install 'pyggml_train[mpi]'"
            ) from None
        return cls(MPI.COMM_WORLD)

    def __repr__(self) -> str:
        return f"Distributed(rank={self.rank}, world_size={self.world_size})"

    # -- collectives (no-ops for one process) -----------------------------------------------
    def allreduce_sum(self, tensors: Sequence[G.Tensor]) -> None:
        """Replace every tensor by its sum over the ranks, in place, BUCKET_BYTES at a time."""
        if self.comm is None:
            return
        from mpi4py import MPI

        for t in tensors:
            for bucket in _buckets(t):
                self.comm.Allreduce(MPI.IN_PLACE, bucket, op=MPI.SUM)
                self.grad_sync_calls += 1
                self.grad_sync_bytes += bucket.nbytes

    def sum(self, value: float) -> float:
        """The sum of a scalar over the ranks."""
        if self.comm is None:
            return value
        from mpi4py import MPI

        return float(self.comm.allreduce(float(value), op=MPI.SUM))

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.comm is not None:
            self.comm.Barrier()

    # -- ZeRO-1: a gradient to its owner, a parameter from it, moments to the master -----------
    def reduce_sum(self, tensor: G.Tensor, root: int) -> None:
        """Sum ``tensor`` over the ranks into root's copy, in place, in buckets."""
        if self.comm is None:
            return
        from mpi4py import MPI

        for bucket in _buckets(tensor):
            send = MPI.IN_PLACE if self.rank == root else bucket
            self.comm.Reduce(send, bucket if self.rank == root else None, op=MPI.SUM, root=root)
            self.grad_sync_calls += 1
            self.grad_sync_bytes += bucket.nbytes

    def broadcast(self, tensor: G.Tensor, root: int) -> None:
        """Overwrite every rank's ``tensor`` with root's, in place, in buckets."""
        if self.comm is None:
            return
        for bucket in _buckets(tensor):
            self.comm.Bcast(bucket, root=root)

    def to_master(self, array: np.ndarray | None, source: int) -> np.ndarray | None:
        """Source's ``array`` on rank 0 (None on the others); for checkpoints."""
        if self.comm is None or source == 0:
            return array if self.rank == 0 else None
        if self.rank == source:
            self.comm.send(array.shape, dest=0)
            self.comm.Send(np.ascontiguousarray(array), dest=0)
            return None
        if self.rank == 0:
            out = np.empty(self.comm.recv(source=source), dtype=np.float32)
            self.comm.Recv(out, source=source)
            return out
        return None

    # -- failures ------------------------------------------------------------------------------
    @contextmanager
    def abort_on_error(self, what: str) -> Iterator[None]:
        """An exception on one rank ends every rank, naming the rank, instead of leaving the
        others blocked in their next collective forever."""
        try:
            yield
        except BaseException as exc:
            if self.comm is None or isinstance(exc, SystemExit) and exc.code in (0, None):
                raise
            print(
                f"{what}: rank {self.rank} of {self.world_size} failed: "
                f"{type(exc).__name__}: {exc}; aborting all ranks",
                file=sys.stderr,
                flush=True,
            )
            self.comm.Abort(1)


def _buckets(tensor: G.Tensor) -> Iterator[np.ndarray]:
    """Consecutive pieces of at most BUCKET_BYTES of the tensor's own memory."""
    flat = tensor.host_view().reshape(-1)  # (n,)
    step = max(1, BUCKET_BYTES // flat.itemsize)
    for start in range(0, flat.size, step):
        yield flat[start : start + step]
