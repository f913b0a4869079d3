"""Learning-rate schedule: linear warmup, then cosine decay to a floor.

Steps are 0-based optimizer steps (the first update is step 0):
- warmup, 0 <= step < warmup_steps: ``max_lr * (step + 1) / warmup_steps``, so step 0
  already moves the weights and step warmup_steps - 1 reaches max_lr;
- decay, warmup_steps <= step < max_steps: ``min_lr + (max_lr - min_lr) * (1 + cos(pi * p)) / 2``
  with ``p = (step - warmup_steps) / (max_steps - warmup_steps)``, starting at max_lr;
- step >= max_steps: min_lr (so resuming past the end, or extra steps, stay at the floor).
"""

from __future__ import annotations

import math


def lr_at(step: int, max_lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """Learning rate for optimizer step `step` (0-based); see the module docstring."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if not 0 <= warmup_steps <= max_steps:
        raise ValueError(f"need 0 <= warmup_steps <= max_steps, got {warmup_steps}, {max_steps}")
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / (max_steps - warmup_steps)  # in [0, 1)
    return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
