"""Data-parallel ranks on MPI: who this process is, and gradient sums across processes.

One small object knows the rank, the world size and whether this process is the master
(rank 0, the only one that logs, draws the progress bar and writes metrics and
checkpoints), as nanoGPT's DDP setup and llm.c's multi-process runs do. Launched by
``mpirun``/``mpiexec`` it talks MPI through mpi4py; a plain single process never imports
mpi4py and every collective is a no-op.

Gradients are summed with non-blocking MPI (MPI_Iallreduce; MPI_Ireduce to an owner under
ZeRO-1) in place on the gradient accumulators, through numpy views of their memory
(Tensor.host_view), in buckets of at most BUCKET_BYTES, at most IN_FLIGHT_BYTES at a time:
no second copy of the gradients is ever made, only MPI's own bounded staging. A sum can be
waited for at once (allreduce_sum, reduce_sum) or run behind the backward pass
(start_sums): the same calls on the same buckets either way, so the same bits.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections import deque
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

# Bytes of buckets being summed at once: a bucket waits for older ones to finish below this
# bound, which bounds MPI's staging (a non-blocking sum may stage its whole buffer) while
# the next bucket's sum already starts.
IN_FLIGHT_BYTES = 2 * BUCKET_BYTES

# Seconds the communication thread sleeps between MPI_Test calls: Open MPI advances a
# non-blocking collective only inside MPI calls, and a thread spinning in MPI_Wait would take
# a core from ggml's compute.
POLL_S = 2e-4


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
        self.last_sums: BucketSums | None = None  # the last gradient sum (its measurements)
        self.threads_ok = False  # may a thread call MPI while this one computes (not MPI)?
        if comm is not None:
            from mpi4py import MPI

            self.threads_ok = MPI.Query_thread() >= MPI.THREAD_SERIALIZED

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
        """Replace every tensor by its sum over the ranks, in place; returns when done."""
        if self.comm is None:
            return
        sums = self.start_sums(background=False)
        sums.add(tensors)
        sums.finish()

    def start_sums(self, background: bool = True) -> BucketSums:
        """Gradient sums to start as tensors are added and to wait for with finish(): with
        ``background`` a thread advances them while this one computes (when MPI allows
        threads), else finish() starts and waits for them all."""
        self.last_sums = BucketSums(self, background and self.threads_ok)
        return self.last_sums

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
        """Sum ``tensor`` over the ranks into root's copy, in place; returns when done."""
        if self.comm is None:
            return
        sums = self.start_sums(background=False)
        sums.add([tensor], [root])
        sums.finish()

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


class BucketSums:
    """Sums over the ranks of gradient buckets, started with non-blocking MPI in the order
    they are added, at most IN_FLIGHT_BYTES at a time.

    With ``background`` a thread starts each bucket as soon as it is added and polls MPI
    (MPI_Test every POLL_S) so that the sums advance while the caller computes the rest of
    the backward pass with the GIL released; the caller touches neither MPI nor the added
    tensors until finish(). Without it, finish() starts them and waits. A bucket's sum is
    one MPI call on the same memory either way, so both give the same bits.
    """

    def __init__(self, dist: Distributed, background: bool):
        self._dist = dist
        self._todo: queue.SimpleQueue[tuple[np.ndarray, int | None] | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self.calls = 0  # MPI calls made
        self.bytes = 0  # bytes they summed
        self.peak_in_flight = 0  # most bytes being summed at one time
        self.added: list[int] = []  # bytes of each add(), in order
        self.started_early = 0  # bytes MPI had started summing before finish() was called
        self.done_early = 0  # bytes whose sum had completed before finish() was called
        self._finishing = False
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="gradient-sums", daemon=True)
            self._thread.start()

    def add(self, tensors: Sequence[G.Tensor], roots: Sequence[int] | None = None) -> None:
        """Sum ``tensors`` over the ranks in place: onto every rank, or onto ``roots[i]``."""
        self.added.append(sum(t.size * t.itemsize for t in tensors))
        for i, t in enumerate(tensors):
            root = None if roots is None else roots[i]
            for bucket in _buckets(t):
                self._todo.put((bucket, root))

    def finish(self) -> None:
        """Wait until every added sum is done (then the tensors hold them)."""
        self._finishing = True
        self._todo.put(None)
        if self._thread is None:
            self._run()
        else:
            self._thread.join()
        self._dist.grad_sync_calls += self.calls
        self._dist.grad_sync_bytes += self.bytes
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        from mpi4py import MPI

        comm, rank = self._dist.comm, self._dist.rank
        in_flight: deque[tuple[Any, int]] = deque()  # (request, bytes), oldest first
        poll = self._thread is not None

        def retire(wait: bool) -> None:
            """Drop finished requests from the front; with ``wait``, the oldest at least."""
            while in_flight:
                request, nbytes = in_flight[0]
                if wait and not poll:
                    request.Wait()
                elif wait:
                    while not request.Test():
                        time.sleep(POLL_S)
                elif not request.Test():
                    return
                in_flight.popleft()
                if not self._finishing:
                    self.done_early += nbytes
                wait = False

        try:
            while True:
                if in_flight and poll:  # advance the sums while waiting for the next bucket
                    try:
                        item = self._todo.get(timeout=POLL_S)
                    except queue.Empty:
                        retire(wait=False)
                        continue
                else:
                    item = self._todo.get()
                if item is None:
                    break
                bucket, root = item
                while in_flight and sum(n for _, n in in_flight) + bucket.nbytes > IN_FLIGHT_BYTES:
                    retire(wait=True)
                if root is None:
                    request = comm.Iallreduce(MPI.IN_PLACE, bucket, op=MPI.SUM)
                elif rank == root:
                    request = comm.Ireduce(MPI.IN_PLACE, bucket, op=MPI.SUM, root=root)
                else:
                    request = comm.Ireduce(bucket, None, op=MPI.SUM, root=root)
                in_flight.append((request, bucket.nbytes))
                self.calls += 1
                self.bytes += bucket.nbytes
                if not self._finishing:
                    self.started_early += bucket.nbytes
                self.peak_in_flight = max(self.peak_in_flight, sum(n for _, n in in_flight))
            while in_flight:
                retire(wait=True)
        except BaseException as exc:  # re-raised by finish() on the caller's thread
            self._error = exc


def _buckets(tensor: G.Tensor) -> Iterator[np.ndarray]:
    """Consecutive pieces of at most BUCKET_BYTES of the tensor's own memory."""
    flat = tensor.host_view().reshape(-1)  # (n,)
    step = max(1, BUCKET_BYTES // flat.itemsize)
    for start in range(0, flat.size, step):
        yield flat[start : start + step]
