"""The one place where numpy shapes meet ggml's ``ne``.

ggml stores dimensions innermost-first in four slots (``ne``); the Python API uses
numpy order everywhere. numpy ``(2, 3)`` is ggml ``ne = [3, 2, 1, 1]``.
"""

from __future__ import annotations

MAX_DIMS = 4


def to_ne(shape: tuple[int, ...]) -> list[int]:
    """numpy shape -> ggml ne (4 entries, innermost first)."""
    shape = tuple(int(d) for d in shape)
    if len(shape) > MAX_DIMS:
        raise ValueError(f"ggml tensors have at most {MAX_DIMS} dimensions, got shape {shape}")
    if any(d < 1 for d in shape):
        raise ValueError(f"every dimension must be >= 1, got shape {shape}")
    return list(reversed(shape)) + [1] * (MAX_DIMS - len(shape))


def from_ne(ne: list[int] | tuple[int, ...], ndim: int) -> tuple[int, ...]:
    """ggml ne -> numpy shape with ``ndim`` dimensions (the dropped slots must be 1)."""
    if any(d != 1 for d in ne[ndim:]):
        raise ValueError(f"ne {list(ne)} has more than {ndim} non-trivial dimensions")
    return tuple(int(d) for d in reversed(ne[:ndim]))


def to_ggml_axes(axes: tuple[int, ...]) -> list[int]:
    """numpy ``transpose`` axes -> ggml ``permute`` axes (4 entries).

    numpy: ``out.shape[i] == a.shape[axes[i]]``. ggml: source dim ``s`` moves to
    position ``ggml_axes[s]``. With both padded to 4-D, numpy axis ``p`` is ggml dim
    ``3 - p``.
    """
    n = len(axes)
    if sorted(axes) != list(range(n)):
        raise ValueError(f"axes {axes} are not a permutation of 0..{n - 1}")
    lead = MAX_DIMS - n
    full = list(range(lead)) + [lead + a for a in axes]
    ggml_axes = [0] * MAX_DIMS
    for i, src in enumerate(full):
        ggml_axes[3 - src] = 3 - i
    return ggml_axes
