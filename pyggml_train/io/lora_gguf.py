"""LoRA adapters as llama.cpp loads them (``--lora``, ``--lora-scaled``): a GGUF whose
``general.type`` is ``adapter``, with ``adapter.type`` ``lora``, ``adapter.lora.alpha``
and, for each adapted weight, ``<base GGUF tensor>.lora_a`` and ``.lora_b``.

Facts carried over from llama.cpp's adapter loader: the architecture must equal the
base's; A is stored with ggml ne = {in, rank} and B with ne = {rank, out}, i.e. numpy
(rank, in) and (out, rank), PEFT's orientation, for every weight (GPT-2's Conv1D too: the
GGUF base is (out, in)); the scale is alpha / rank, rank read off B. The tensor names are
those our base export writes (gguf.py, gguf_llama.py), and where that export reorders the
rows of a ``llama`` q_proj/k_proj for ggml's rope, B's rows move the same way.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from ..adapters import LoraConfig, LoraWeights
from ..atomic import atomic_path
from ..config import GPT2Config, LlamaConfig
from . import gguf as gpt2_gguf
from . import gguf_llama
from .lora import adaptable_weights, check_adapter

ADAPTER_TYPE = "lora"
SUFFIX_A, SUFFIX_B = ".lora_a", ".lora_b"  # after the base tensor's name
# our own keys: what LoraConfig holds beyond llama.cpp's alpha (absent from other files)
TARGETS_KEY = "pyggml_train.lora.targets"
DROPOUT_KEY = "pyggml_train.lora.dropout"
DTYPES = {"f32": np.float32, "f16": np.float16}


def architecture(config: GPT2Config | LlamaConfig) -> str:
    """The GGUF architecture our base export writes for ``config``."""
    if isinstance(config, LlamaConfig):
        return gguf.MODEL_ARCH_NAMES[gguf_llama.ARCHS[config.model_type]]
    return gpt2_gguf.ARCH_NAME


def base_tensor_name(name: str, config: GPT2Config | LlamaConfig) -> str:
    """The GGUF tensor our base export writes for the HF weight ``name``."""
    if isinstance(config, LlamaConfig):
        return gguf_llama.gguf_name(name)
    return gpt2_gguf.gguf_name(name)[0]


def _row_heads(name: str, config: GPT2Config | LlamaConfig) -> int | None:
    """Heads whose rows the base export reorders for this weight (llama q/k), else None."""
    if isinstance(config, LlamaConfig) and config.model_type == "llama":
        if ".q_proj." in name:
            return config.n_head
        if ".k_proj." in name:
            return config.n_kv_head
    return None


def save_gguf_lora(
    path: str | Path,
    lora: LoraWeights,
    config: GPT2Config | LlamaConfig,
    dtype: str = "f32",
) -> Path:
    """Write ``lora`` as a GGUF adapter llama.cpp applies to our GGUF export of the base
    ``config`` describes; atomically."""
    path = Path(path)
    if dtype not in DTYPES:
        raise ValueError(f"GGUF adapter dtype must be one of {list(DTYPES)}, got {dtype!r}")
    check_adapter(lora, config, str(path))
    with atomic_path(path) as tmp:
        w = gguf.GGUFWriter(tmp, architecture(config))
        w.add_type(gguf.GGUFType.ADAPTER)
        w.add_name(path.stem)
        w.add_string(gguf.Keys.Adapter.TYPE, ADAPTER_TYPE)
        w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, lora.config.alpha)
        w.add_string(TARGETS_KEY, ",".join(lora.config.targets))  # GGUF drops an empty array
        w.add_float32(DROPOUT_KEY, lora.config.dropout)
        for name in sorted(lora.a):
            a = np.asarray(lora.a[name], dtype=np.float32)  # (rank, in)
            b = np.asarray(lora.b[name], dtype=np.float32)  # (out, rank)
            if (heads := _row_heads(name, config)) is not None:
                b = gguf_llama.pair_rows(b, heads)  # W's rows moved, so B @ A's rows move
            base = base_tensor_name(name, config)
            w.add_tensor(base + SUFFIX_A, np.ascontiguousarray(a.astype(DTYPES[dtype])))
            w.add_tensor(base + SUFFIX_B, np.ascontiguousarray(b.astype(DTYPES[dtype])))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return path


def _field(reader: gguf.GGUFReader, key: str):
    field = reader.get_field(key)
    return None if field is None else field.contents()


def load_gguf_lora(path: str | Path, config: GPT2Config | LlamaConfig) -> LoraWeights:
    """The adapter in a llama.cpp LoRA GGUF (ours, or llama.cpp's converter's) for the base
    ``config`` describes, under HF names and row order, float32."""
    path = Path(path)
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError, IndexError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{path} is not a readable GGUF file: {type(exc).__name__}: {exc}"
        ) from None
    kind = _field(reader, gguf.Keys.General.TYPE)
    adapter_type = _field(reader, gguf.Keys.Adapter.TYPE)
    if kind != gguf.GGUFType.ADAPTER or adapter_type != ADAPTER_TYPE:
        raise ValueError(
            f"{path}: general.type is {kind!r} and adapter.type {adapter_type!r}; a LoRA "
            f"adapter has {gguf.GGUFType.ADAPTER!r} and {ADAPTER_TYPE!r} (is this the base "
            "model's GGUF rather than its adapter?)"
        )
    arch, expected = _field(reader, gguf.Keys.General.ARCHITECTURE), architecture(config)
    if arch != expected:
        raise ValueError(
            f"{path}: the adapter is for architecture {arch!r} but the base is {expected!r}; "
            "pass the adapter trained on this base"
        )
    names = {base_tensor_name(n, config): n for n in adaptable_weights(config)}
    a: dict[str, np.ndarray] = {}
    b: dict[str, np.ndarray] = {}
    for t in reader.tensors:
        half = a if t.name.endswith(SUFFIX_A) else b if t.name.endswith(SUFFIX_B) else None
        stem = t.name[: -len(SUFFIX_A)]  # both suffixes are 7 characters long
        if half is None or stem not in names:
            raise ValueError(
                f"{path}: tensor {t.name!r} is not <a weight of the {expected} base>"
                f"{SUFFIX_A} or {SUFFIX_B}; was the adapter made for another model?"
            )
        value = gguf.quants.dequantize(t.data, t.tensor_type)
        half[names[stem]] = np.asarray(value, np.float32).reshape([int(d) for d in t.shape[::-1]])
    ranks = {v.shape[1] for v in b.values()}
    if len(ranks) != 1 or a.keys() != b.keys():
        unpaired = sorted(a.keys() ^ b.keys())
        raise ValueError(
            f"{path}: expected lora_a/lora_b pairs of one rank; ranks {sorted(ranks)}, "
            f"unpaired {unpaired[:3]}"
        )
    for name in b:
        if (heads := _row_heads(name, config)) is not None:
            b[name] = gguf_llama.split_rows(b[name], heads)
    rank = ranks.pop()
    alpha = _field(reader, gguf.Keys.Adapter.LORA_ALPHA)  # llama.cpp: absent or 0, scale 1
    targets = _field(reader, TARGETS_KEY)
    lora_config = LoraConfig(
        rank=rank,
        alpha=_f32_decimal(alpha) if alpha else float(rank),
        targets=tuple(filter(None, targets.split(","))) if targets is not None else _leaf_names(a),
        dropout=_f32_decimal(_field(reader, DROPOUT_KEY) or 0.0),
    )
    lora = LoraWeights(lora_config, a, b)
    check_adapter(lora, config, str(path))
    return lora


def _leaf_names(a: dict[str, np.ndarray]) -> tuple[str, ...]:
    """Module names (q_proj, c_attn, ...) of the adapted weights, for a foreign file."""
    return tuple(sorted({name.rsplit(".", 2)[-2] for name in a}))


def _f32_decimal(value: float) -> float:
    return float(str(np.float32(value)))
