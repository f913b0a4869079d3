"""safetensors files through the ``safetensors`` package's numpy API, with our errors.

numpy has no bfloat16, so BF16 tensors (common in HF files) are widened to float32 on
read; the package's numpy API cannot hand them over, so a file holding any is read
whole through ``safetensors.deserialize``. Writes are atomic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import safetensors
import safetensors.numpy

from ..atomic import atomic_open
from .bf16 import bf16_bits_to_f32

# dtypes numpy holds, plus BF16 (widened); F8_* and the like are refused by name
_READABLE = ("F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL")
_HEADER_LEN = 8  # the little-endian u64 header length every safetensors file starts with


def save_safetensors(
    path: str | Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None
) -> None:
    """Write tensors (each array keeps its dtype) and str -> str metadata to path, atomically."""
    path = Path(path)
    # np.require, not ascontiguousarray, which turns a 0-d array into shape (1,)
    arrays = {name: np.require(value, requirements="C") for name, value in tensors.items()}
    with atomic_open(path) as f:
        f.write(safetensors.numpy.save(arrays, metadata=metadata))


def load_safetensors(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read every tensor (F16 stays float16, BF16 becomes float32) and the metadata."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"safetensors file {path} not found")
    size = path.stat().st_size
    if size < _HEADER_LEN:
        raise ValueError(
            f"{path} is {size} bytes, too short for a safetensors file (8-byte header)"
        )
    try:
        with safetensors.safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
            slices = {name: f.get_slice(name) for name in f.keys()}
            dtypes = {name: s.get_dtype() for name, s in slices.items()}
            unsupported = sorted({dt for dt in dtypes.values() if dt not in _READABLE})
            if unsupported:
                raise ValueError(
                    f"{path}: tensor dtype {', '.join(unsupported)} is not supported; "
                    f"supported: {', '.join(_READABLE)}"
                )
            tensors = {  # the header's shape: the package reads a 0-d tensor as (1,)
                name: f.get_tensor(name).reshape(slices[name].get_shape())
                for name, dt in dtypes.items()
                if dt != "BF16"
            }
        if "BF16" in dtypes.values():
            for name, info in safetensors.deserialize(path.read_bytes()):
                if info["dtype"] == "BF16":
                    bits = np.frombuffer(info["data"], dtype="<u2")
                    tensors[name] = bf16_bits_to_f32(bits).reshape(info["shape"])
    except safetensors.SafetensorError as exc:
        raise ValueError(
            f"{path} is not a readable safetensors file (truncated, or another format?): {exc}"
        ) from None
    return {name: tensors[name] for name in dtypes}, metadata
