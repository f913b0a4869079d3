"""The safetensors format, read and written by hand (no safetensors dependency).

Layout: an 8-byte little-endian header length N, N bytes of JSON mapping each tensor
name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the
data section) plus an optional ``"__metadata__"`` of string pairs, then the raw
little-endian tensor bytes. numpy has no bfloat16, so BF16 is widened to float32 on read
and rounded (to nearest even) from float32 on write.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np

from .atomic import atomic_open

_NUMPY_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
}
_NAMES = {dt: name for name, dt in _NUMPY_DTYPES.items()}
_BF16_ITEMSIZE = 2


def bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    """Widen raw bfloat16 bit patterns (uint16) to float32: bf16 is f32's top half."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (nearest, ties to even), returned as uint16 bit patterns."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) >> 16
    nan = np.isnan(x)
    # keep NaN a NaN: truncate and force a quiet-NaN mantissa bit instead of rounding
    rounded = np.where(nan, (u >> 16) | np.uint32(0x0040), rounded)
    return rounded.astype(np.uint16)


def _encode(array: np.ndarray, dtype: str | None) -> tuple[str, bytes]:
    """Pick the stored dtype name and the little-endian bytes for one tensor."""
    if dtype == "BF16":
        return "BF16", f32_to_bf16_bits(array).astype("<u2").tobytes()
    if dtype is not None:
        if dtype not in _NUMPY_DTYPES:
            raise ValueError(f"unsupported dtype {dtype!r}; use one of {[*_NUMPY_DTYPES, 'BF16']}")
        array = array.astype(_NUMPY_DTYPES[dtype])
    stored = np.dtype(array.dtype).newbyteorder("<")
    if stored not in _NAMES:
        raise ValueError(
            f"unsupported array dtype {array.dtype}; safetensors_io writes "
            f"{', '.join(str(d) for d in _NAMES)} (or BF16 from float32)"
        )
    return _NAMES[stored], np.ascontiguousarray(array, dtype=stored).tobytes()


def save_safetensors(
    path: str | Path,
    tensors: dict[str, np.ndarray],
    metadata: dict[str, str] | None = None,
    dtypes: dict[str, str] | None = None,
) -> None:
    """Write tensors (in dict order) to path, atomically.

    dtypes optionally maps a name to a stored dtype ("F32", "F16", "BF16", "I32", ...);
    by default each array's own dtype is kept.
    """
    path = Path(path)
    header: dict[str, object] = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError("safetensors __metadata__ must map str to str")
        header["__metadata__"] = dict(metadata)
    chunks = []
    offset = 0
    for name, array in tensors.items():
        array = np.asarray(array)
        dtype_name, data = _encode(array, (dtypes or {}).get(name))
        header[name] = {
            "dtype": dtype_name,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)  # data section starts 8-byte aligned
    with atomic_open(path) as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for data in chunks:
            f.write(data)


def _read_header(path: Path, size: int) -> tuple[dict[str, dict], int]:
    if size < 8:
        raise ValueError(
            f"{path} is {size} bytes, too short for a safetensors file (8-byte header)"
        )
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > size - 8:
            raise ValueError(
                f"{path}: header claims {n} bytes but the file has {size - 8} after the length; "
                "not a safetensors file, or truncated"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"{path}: header is not valid JSON ({exc}); not a safetensors file?"
        ) from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: header is {type(header).__name__}, expected a JSON object")
    return header, 8 + n


def load_safetensors(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read every tensor (F16 stays float16, BF16 becomes float32) and the metadata."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"safetensors file {path} not found")
    size = path.stat().st_size
    header, data_start = _read_header(path, size)
    metadata = header.pop("__metadata__", None) or {}
    raw = np.memmap(path, dtype=np.uint8, mode="r") if size > data_start else np.zeros(0, np.uint8)
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        dtype_name, shape = info.get("dtype"), tuple(info.get("shape", ()))
        begin, end = info.get("data_offsets", (0, -1))
        itemsize = _BF16_ITEMSIZE if dtype_name == "BF16" else None
        if dtype_name in _NUMPY_DTYPES:
            itemsize = _NUMPY_DTYPES[dtype_name].itemsize
        if itemsize is None:
            raise ValueError(
                f"{path}: tensor {name} has dtype {dtype_name!r}; supported: "
                f"{', '.join([*_NUMPY_DTYPES, 'BF16'])}"
            )
        if end - begin != math.prod(shape) * itemsize or begin < 0 or data_start + end > size:
            raise ValueError(
                f"{path}: tensor {name} ({dtype_name}, shape {list(shape)}) has data_offsets "
                f"[{begin}, {end}] that don't fit its size or the {size}-byte file (truncated?)"
            )
        chunk = raw[data_start + begin : data_start + end]
        if dtype_name == "BF16":
            tensors[name] = bf16_bits_to_f32(chunk.view("<u2")).reshape(shape)
        else:
            tensors[name] = chunk.view(_NUMPY_DTYPES[dtype_name]).reshape(shape).copy()
    del raw
    return tensors, metadata
