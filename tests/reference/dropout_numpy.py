"""The dropout mask of patch 0018, written in numpy from its definition (docs/ops/dropout.md).

Element i (row-major logical index) of a tensor is kept when
``(mix64(key + (i + 1) * GAMMA) >> 32) >= floor(p * 2**32)``, with
``key = mix64(mix64(seed << 32 | stream) ^ counter)`` and ``mix64`` splitmix64's output
function. Kept values are scaled by ``1 / (1 - p)`` in f32.
"""

from __future__ import annotations

import numpy as np

GAMMA = 0x9E3779B97F4A7C15
_M64 = (1 << 64) - 1


def _mix64_int(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _mix64(z: np.ndarray) -> np.ndarray:
    """The same on uint64 arrays (numpy's uint64 products wrap modulo 2**64)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def threshold(p: float) -> int:
    """Keep when the 32-bit hash is >= this: P(keep) = 1 - p to within 2**-32."""
    return min(int(float(np.float32(p)) * 2.0**32), 2**32 - 1)


def scale(p: float) -> np.float32:
    """1 / (1 - p) computed in double from the f32 p, rounded to f32 (as the op does)."""
    return np.float32(1.0 / (1.0 - float(np.float32(p))))


def keep_mask(shape: tuple[int, ...], seed: int, counter: int, p: float, stream: int = 0):
    """Boolean mask of the elements dropout keeps, in numpy shape order."""
    key = _mix64_int(_mix64_int(((seed & 0xFFFFFFFF) << 32) | (stream & 0xFFFFFFFF)) ^ counter)
    n = int(np.prod(shape))
    i = np.arange(1, n + 1, dtype=np.uint64)
    h = _mix64(np.uint64(key) + i * np.uint64(GAMMA))
    return ((h >> np.uint64(32)) >= np.uint64(threshold(p))).reshape(shape)


def dropout(x: np.ndarray, seed: int, counter: int, p: float, stream: int = 0) -> np.ndarray:
    """f32 result of the op: x * (kept ? 1 / (1 - p) : 0)."""
    x = np.asarray(x, dtype=np.float32)
    factor = np.where(keep_mask(x.shape, seed, counter, p, stream), scale(p), np.float32(0))
    return x * factor
