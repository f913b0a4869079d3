"""Benchmark configurations: model size, batch and context for one training step."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchConfig:
    name: str
    n_layer: int
    n_embd: int
    n_head: int
    vocab_size: int
    block_size: int  # T
    batch_size: int  # B

    @property
    def tokens_per_step(self) -> int:
        return self.block_size * self.batch_size

    def gpt2_config(self, **fields):
        """The GPT2Config of this shape. A large vocabulary is padded to a multiple of 64
        rows (50257 -> 50304): the padded logits are never seen by the loss, and the
        lm_head matmuls take the fast sgemm path. ``fields``: other GPT2Config fields."""
        from pyggml_train.config import GPT2Config

        padded = -(-self.vocab_size // 64) * 64 if self.vocab_size > 1024 else None
        return GPT2Config(
            vocab_size=self.vocab_size,
            block_size=self.block_size,
            n_layer=self.n_layer,
            n_head=self.n_head,
            n_embd=self.n_embd,
            padded_vocab_size=padded,
            **fields,
        )

    def n_params(self) -> int:
        """Parameters of a GPT-2 of this shape (tied lm_head)."""
        c, v, t = self.n_embd, self.vocab_size, self.block_size
        per_block = 12 * c * c + 13 * c
        return v * c + t * c + self.n_layer * per_block + 2 * c

    def flops_per_step(self) -> float:
        """Matmul FLOPs of forward + backward (6 per parameter-token, plus attention)."""
        b, t, c, n = self.batch_size, self.block_size, self.n_embd, self.n_layer
        dense = 6.0 * (self.n_params() - t * c) * b * t
        attention = 6.0 * 2 * n * b * t * t * c  # QK^T and AV, forward x3 for backward
        return dense + attention

    def with_block_size(self, t: int) -> BenchConfig:
        return BenchConfig(
            self.name + f"-T{t}",
            self.n_layer,
            self.n_embd,
            self.n_head,
            self.vocab_size,
            t,
            self.batch_size,
        )


CONFIGS = {
    "A": BenchConfig("A char-tiny", 4, 128, 4, 65, 128, 16),
    "B": BenchConfig("B small-bpe", 6, 384, 6, 50257, 256, 8),
    "C": BenchConfig("C gpt2-124M", 12, 768, 12, 50257, 256, 4),
    "smoke": BenchConfig("smoke", 2, 64, 2, 65, 32, 2),
    # activation recomputation (issue 10): long context, where activations dominate memory
    "C1024": BenchConfig("C gpt2-124M-T1024", 12, 768, 12, 50257, 1024, 4),
    # the first GPU's row (scripts/gpu_check.sh): GPT-2 124M at T=1024, B=8
    "C1024B8": BenchConfig("C gpt2-124M-T1024-B8", 12, 768, 12, 50257, 1024, 8),
    "M": BenchConfig("M gpt2-medium-T1024", 24, 1024, 16, 50257, 1024, 1),
    "L": BenchConfig("L gpt2-large-T1024", 36, 1280, 20, 50257, 1024, 1),
}
