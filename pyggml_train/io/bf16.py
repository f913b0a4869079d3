"""bfloat16 as numpy has no such dtype: raw uint16 bit patterns, the top half of float32.

Files that store bf16 (safetensors' BF16, llm.c's version-5 checkpoints) are read by
widening, and written by rounding to nearest, ties to even, as torch's ``.to(bfloat16)``.
"""

from __future__ import annotations

import numpy as np


def bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    """Widen raw bfloat16 bit patterns (uint16) to float32 (exact)."""
    return (np.asarray(bits).astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), to nearest with ties to even; a NaN stays
    a (quiet) NaN instead of rounding into an infinity."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) >> 16
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    return np.where(nan, (u >> 16) | np.uint32(0x40), rounded).astype(np.uint16)
