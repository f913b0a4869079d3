"""llm.c's GPT-2 checkpoint (``gpt2_124M.bin``, ``gpt2_124M_bf16.bin``): a 256 x int32
header, then every parameter in llm.c's order, each kind stacked over the layers: float32
(version 3) or bfloat16 (version 5, rounded to nearest even as torch does).

Header: [0] magic 20240326, [1] version 3 (fp32) or 5 (bf16), [2] max_seq_len, [3] vocab_size,
[4] num_layers, [5] num_heads, [6] channels, [7] padded_vocab_size. Linear weights are
PyTorch's (out, in), i.e. our Conv1D weights transposed; wte has padded_vocab_size rows.
llm.c's checkpoint carries no tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_open
from ..config import GPT2Config
from ..hf_gpt2 import PREFIX, param_shapes
from .bf16 import bf16_bits_to_f32, f32_to_bf16_bits

MODEL_MAGIC = 20240326
VERSIONS = {"f32": 3, "bf16": 5}  # dtype -> llm.c's header version
LLMC_DTYPES = tuple(VERSIONS)
MODEL_HEADER_INTS = 256
VOCAB_ALIGN = 128  # llm.c pads the vocabulary to a multiple of 128 (50257 -> 50304)
# llm.c's parameter order: (our name after "transformer." with {i} per layer, transposed)
ORDER: tuple[tuple[str, bool], ...] = (
    ("wte.weight", False),
    ("wpe.weight", False),
    ("h.{i}.ln_1.weight", False),
    ("h.{i}.ln_1.bias", False),
    ("h.{i}.attn.c_attn.weight", True),
    ("h.{i}.attn.c_attn.bias", False),
    ("h.{i}.attn.c_proj.weight", True),
    ("h.{i}.attn.c_proj.bias", False),
    ("h.{i}.ln_2.weight", False),
    ("h.{i}.ln_2.bias", False),
    ("h.{i}.mlp.c_fc.weight", True),
    ("h.{i}.mlp.c_fc.bias", False),
    ("h.{i}.mlp.c_proj.weight", True),
    ("h.{i}.mlp.c_proj.bias", False),
    ("ln_f.weight", False),
    ("ln_f.bias", False),
)


def padded_vocab(config: GPT2Config) -> int:
    v = config.require_vocab_size()
    return config.padded_vocab_size or -(-v // VOCAB_ALIGN) * VOCAB_ALIGN


def _names(pattern: str, n_layer: int) -> list[str]:
    return (
        [PREFIX + pattern.format(i=i) for i in range(n_layer)]
        if "{i}" in pattern
        else [PREFIX + pattern]
    )


def save_llmc(
    path: str | Path, params: dict[str, np.ndarray], config: GPT2Config, dtype: str = "f32"
) -> Path:
    """Write params as an llm.c checkpoint of ``dtype`` ('f32' or 'bf16'), atomically."""
    if dtype not in VERSIONS:
        raise ValueError(f"llm.c checkpoints hold one of {LLMC_DTYPES}, not {dtype!r}")
    path = Path(path)
    shapes = param_shapes(config)
    for name, shape in shapes.items():
        if name not in params or params[name].shape != shape:
            got = params[name].shape if name in params else "missing"
            raise ValueError(f"parameter {name}: expected shape {shape}, got {got}")
    v, vp = config.require_vocab_size(), padded_vocab(config)
    header = np.zeros(MODEL_HEADER_INTS, dtype="<i4")
    header[:8] = [MODEL_MAGIC, VERSIONS[dtype], config.block_size, v, config.n_layer, config.n_head,
                  config.n_embd, vp]  # fmt: skip
    with atomic_open(path) as f:
        f.write(header.tobytes())
        for pattern, transposed in ORDER:
            for name in _names(pattern, config.n_layer):
                value = np.asarray(params[name], dtype="<f4")
                if transposed:
                    value = value.T
                if name == PREFIX + "wte.weight":
                    value = np.concatenate([value, np.zeros((vp - v, value.shape[1]), "<f4")])
                if dtype == "bf16":
                    value = f32_to_bf16_bits(value).astype("<u2")
                f.write(np.ascontiguousarray(value).tobytes())
    return path


def load_llmc(path: str | Path) -> tuple[dict[str, np.ndarray], GPT2Config]:
    """Weights (float32, HF layout, padding rows dropped) and config of an llm.c checkpoint
    (fp32, or bf16 widened)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"llm.c checkpoint {path} not found")
    raw = np.fromfile(path, dtype="<u1")
    if raw.size < MODEL_HEADER_INTS * 4:
        raise ValueError(f"{path}: {raw.size} bytes, shorter than llm.c's 1024-byte header")
    header = raw[: MODEL_HEADER_INTS * 4].view("<i4")
    if header[0] != MODEL_MAGIC:
        raise ValueError(
            f"{path}: magic {header[0]}, expected llm.c's {MODEL_MAGIC}; not an llm.c .bin"
        )
    dtypes = {version: dtype for dtype, version in VERSIONS.items()}
    if header[1] not in dtypes:
        raise ValueError(
            f"{path}: llm.c version {header[1]}; the versions that load are "
            + ", ".join(f"{version} ({dtype})" for version, dtype in dtypes.items())
        )
    itemsize = 4 if dtypes[int(header[1])] == "f32" else 2
    max_t, v, n_layer, n_head, c, vp = (int(x) for x in header[2:8])
    if vp < v:
        raise ValueError(f"{path}: padded vocab {vp} < vocab {v} in the header")
    config = GPT2Config(
        vocab_size=v, block_size=max_t, n_layer=n_layer, n_head=n_head, n_embd=c,
        padded_vocab_size=vp if vp != v else None,
    )  # fmt: skip
    shapes = param_shapes(config)
    data = raw[MODEL_HEADER_INTS * 4 :]
    expected = itemsize * (sum(int(np.prod(s)) for s in shapes.values()) + (vp - v) * c)
    if data.size != expected:
        raise ValueError(
            f"{path}: {data.size} parameter bytes, expected {expected} for the header's sizes "
            f"({config}, padded vocab {vp}); truncated?"
        )
    values = data.view("<f4") if itemsize == 4 else bf16_bits_to_f32(data.view("<u2"))
    params: dict[str, np.ndarray] = {}
    offset = 0
    for pattern, transposed in ORDER:
        for name in _names(pattern, n_layer):
            shape = shapes[name]
            if name == PREFIX + "wte.weight":
                shape = (vp, c)  # padded rows are stored, then dropped
            stored = shape[::-1] if transposed else shape
            n = int(np.prod(stored))
            value = values[offset : offset + n].reshape(stored)
            offset += n
            if transposed:
                value = value.T
            elif name == PREFIX + "wte.weight":
                value = value[:v]
            params[name] = np.array(value)  # a copy, owning its memory
    return {name: params[name] for name in shapes}, config
