"""Will a GPT-2 run fit in memory? A lower-bound estimate checked before anything is built.

A run larger than the machine fails either way: this check turns minutes of tokenizing and
an allocation failure (or the kernel's OOM killer, when overcommit lets a buffer through
that cannot be touched) into an immediate error with the estimate and the setting to lower.
The estimate counts only what a run certainly holds, so it never refuses a run that fits:
the binding still raises MemoryError for whatever it leaves out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import GPT2Config, TrainConfig

F32 = 4
# f32 values a training graph's compute buffers hold per token and per layer, in units of
# n_embd, after ggml's allocator reuses what it can: measured 19-20 on the CPU (fused
# attention), 18 for the one block a recomputing run holds; 16 is a floor below both
# (tests/reliability/test_memory.py checks the estimate against measured buffers).
ACTIVATIONS_PER_LAYER = 16
# per row of logits, over the vocabulary (measured 1.06 with the sparse loss); a recomputing
# run holds one chunk of loss_chunk_rows rows of them (loss.ChunkedLossHead)
LOGITS_PER_TOKEN = 1
# parameters, gradient accumulators, and AdamW's two moments
STATE_PER_PARAM = 4


@dataclass(frozen=True)
class Estimate:
    """Bytes a training run certainly needs, by what grows them."""

    state: int  # parameters, gradients, optimizer moments: grow with the model
    activations: int  # one micro-batch's compute buffers: grow with batch x block

    @property
    def total(self) -> int:
        return self.state + self.activations


def num_params(model: GPT2Config) -> int:
    """GPT-2's parameter count for ``model`` (vocab_size None counts no embedding rows)."""
    c, n_layer = model.n_embd, model.n_layer
    vocab = model.padded_vocab_size or model.vocab_size or 0
    per_block = 12 * c * c + 13 * c  # attention qkv + proj, MLP fc + proj, two LayerNorms
    return vocab * c + model.block_size * c + n_layer * per_block + 2 * c


def estimate_training(model: GPT2Config, train: TrainConfig) -> Estimate:
    """A lower bound of the bytes one process of a training run allocates."""
    tokens = train.batch_size * train.block_size
    vocab = model.padded_vocab_size or model.vocab_size or 0
    state = STATE_PER_PARAM * F32 * num_params(model)
    logits = LOGITS_PER_TOKEN * vocab
    if model.recompute != "blocks":  # every block's activations and all logits in one graph
        per_token = ACTIVATIONS_PER_LAYER * model.n_layer * model.n_embd + logits
        return Estimate(state=state, activations=F32 * tokens * per_token)
    # every block's input, and the larger graph of one block's and one head chunk's
    rows = min(tokens, model.loss_chunk_rows or tokens)
    if model.loss_kind != "sparse":  # only the sparse loss runs in chunks
        rows = tokens
    inputs = (model.n_layer + 1) * model.n_embd * tokens
    largest = max(ACTIVATIONS_PER_LAYER * model.n_embd * tokens, logits * rows)
    return Estimate(state=state, activations=F32 * (inputs + largest))


def available_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """What the kernel can give without swapping (MemAvailable), or None where unknown."""
    try:
        for line in meminfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key == "MemAvailable":
                return int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_training_fits(
    model: GPT2Config, train: TrainConfig, available: int | None = None
) -> Estimate:
    """Raise MemoryError if the run's estimate exceeds the available memory (of the host:
    a GPU's memory is checked by the binding when it allocates). Returns the estimate."""
    estimate = estimate_training(model, train)
    if train.device != "cpu":
        return estimate
    available = available_bytes() if available is None else available
    if available is None or estimate.total <= available:
        return estimate
    if estimate.activations >= estimate.state:
        lower = (
            f"activations ({_mb(estimate.activations)}) grow with batch_size x block_size "
            f"({train.batch_size} x {train.block_size}): lower --batch-size or --block-size, "
            "or --set recompute=blocks"
        )
    else:
        lower = (
            f"parameters and optimizer state ({_mb(estimate.state)}) grow with the model: "
            "lower --set n_layer=N or n_embd=N, or pick a smaller --preset"
        )
    raise MemoryError(
        f"this run needs at least {_mb(estimate.total)} and {_mb(available)} are available "
        f"(MemAvailable); {lower}"
    )


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"
