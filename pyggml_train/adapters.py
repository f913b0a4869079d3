"""LoRA adapters as data beside a frozen base: what they are, apart from any model or file.

An adapter is named after the base's tensors (their Hugging Face names), so the same
object is trained by a model, written as GGUF or PEFT, read back, and merged, without any
of those places knowing the others. Orientation follows PEFT: ``A`` is (rank, in_features)
and ``B`` is (out_features, rank); the update of a weight W (out_features, in_features) is
``scale * B @ A`` with ``scale = alpha / rank``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class LoraConfig:
    """Which linear layers get an adapter, and how large and how strong it is."""

    rank: int = 16
    alpha: float = 32.0
    targets: tuple[str, ...] = ()  # module names or short aliases; empty = the family's default
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {self.rank}")
        if self.alpha <= 0:
            raise ValueError(f"LoRA alpha must be > 0, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


@dataclass
class LoraWeights:
    """Trained (or loaded) adapter matrices, keyed by the base weight's HF name."""

    config: LoraConfig
    a: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (rank, in_features)
    b: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (out_features, rank)

    def __post_init__(self) -> None:
        if self.a.keys() != self.b.keys():
            missing = sorted(self.a.keys() ^ self.b.keys())
            raise ValueError(f"LoRA A and B must name the same weights; unpaired: {missing}")
        for name, a in self.a.items():
            b = self.b[name]
            r = self.config.rank
            if a.ndim != 2 or b.ndim != 2 or a.shape[0] != r or b.shape[1] != r:
                raise ValueError(
                    f"LoRA {name}: A must be (rank={r}, in) and B (out, rank={r}); "
                    f"got A {a.shape}, B {b.shape}"
                )

    def delta(self, name: str) -> np.ndarray:
        """The update to add to the base weight ``name``: scale * B @ A, (out, in)."""
        return self.config.scale * (
            self.b[name].astype(np.float64) @ self.a[name].astype(np.float64)
        )
