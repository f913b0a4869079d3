"""Model files in and out of the project: GGUF (llama.cpp), Hugging Face, llm.c, our
checkpoints.

One module per foreign format (gguf.py, hf.py, llmc.py; safetensors.py under hf.py).
They all speak the model's ``state_dict()``: HF parameter names, numpy layout, float32.
Formats read and write weights, configs and tokenizers; they never build a model
(models.py does, from what :func:`read_model_file` returns).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..adapters import LoraWeights
from ..config import LLAMA_TYPES, GPT2Config, LlamaConfig
from ..tokenizer import Tokenizer
from .bpe import BPEVocab
from .llmc import LLMC_DTYPES, MODEL_MAGIC

FORMATS = ("gguf", "hf", "llmc")  # what export writes
ADAPTER_FORMATS = ("gguf-lora", "peft")  # what export writes of a LoRA adapter
GGUF_DTYPES = ("f32", "f16", "q8_0")
_ZIP_MAGIC = b"PK\x03\x04"  # our checkpoints are .npz (zip) files
_GGUF_MAGIC = b"GGUF"


@dataclass
class ModelFile:
    """What a model file holds: weights (float32, numpy layout), their config, the
    tokenizer the file carries (None where the format has none, e.g. llm.c), and for a
    model-spec checkpoint the spec's JSON (its weights then keep the spec's names)."""

    params: dict[str, np.ndarray]
    config: GPT2Config | LlamaConfig | None  # None for a spec checkpoint
    tokenizer: Tokenizer | None
    format: str  # "checkpoint", "hf", "gguf" or "llmc"
    spec: dict | None = None


def detect_format(path: str | Path) -> str:
    """Which loader reads path, from its magic bytes (a directory is an HF model)."""
    path = Path(path)
    if path.is_dir():
        return "hf"
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} not found")
    with open(path, "rb") as f:
        head = f.read(4)
    if head == _GGUF_MAGIC:
        return "gguf"
    if head == _ZIP_MAGIC:
        return "checkpoint"
    if len(head) == 4 and int.from_bytes(head, "little") == MODEL_MAGIC:
        return "llmc"
    if path.suffix == ".safetensors":
        return "hf"
    raise ValueError(
        f"{path}: unrecognised model file (starts with {head!r}); expected a pyggml_train "
        "checkpoint (.npz), a GGUF, an llm.c .bin, or a Hugging Face directory/.safetensors"
    )


def read_model_file(path: str | Path) -> ModelFile:
    """Read the weights, config and tokenizer of any format we read (see detect_format)."""
    fmt = detect_format(path)
    if fmt == "checkpoint":
        from ..checkpoint import load_checkpoint
        from ..tokenizer import tokenizer_from_dict

        ckpt = load_checkpoint(path)
        tokenizer = tokenizer_from_dict(ckpt.tokenizer)
        return ModelFile(ckpt.params, ckpt.model_config, tokenizer, fmt, ckpt.spec)
    if fmt == "hf":
        from .hf_llama import hf_model_type, load_hf_llama

        if Path(path).is_dir() and hf_model_type(path) in LLAMA_TYPES:
            return ModelFile(*load_hf_llama(path), fmt)
        from .hf import load_hf

        return ModelFile(*load_hf(path), fmt)
    if fmt == "gguf":
        from .gguf_llama import is_llama_gguf, load_gguf_llama

        if is_llama_gguf(path):
            return ModelFile(*load_gguf_llama(path), fmt)
        from .gguf import load_gguf

        return ModelFile(*load_gguf(path), fmt)
    from .llmc import load_llmc

    return ModelFile(*load_llmc(path), None, fmt)


def export_model(
    out: str | Path,
    fmt: str,
    params: dict[str, np.ndarray],
    config: GPT2Config | LlamaConfig,
    tokenizer: Tokenizer,
    dtype: str = "f32",
    gpt2_bpe: BPEVocab | None = None,
) -> Path:
    """Write the model as fmt ("gguf", "hf" or "llmc"); every writer is atomic. gpt2_bpe:
    GPT-2's BPE tables for GGUF (default: tiktoken's cache, see bpe.py)."""
    if fmt == "gguf" and isinstance(config, LlamaConfig):
        from .gguf_llama import save_gguf_llama

        return save_gguf_llama(out, params, config, tokenizer, dtype)
    if fmt == "gguf":
        from .gguf import save_gguf

        return save_gguf(out, params, config, tokenizer, dtype, gpt2_bpe)
    if fmt == "llmc":
        from .llmc import save_llmc

        return save_llmc(out, params, config, dtype)
    if dtype != "f32":
        raise ValueError(
            f"--dtype {dtype} is for GGUF ({', '.join(GGUF_DTYPES)}) or llm.c "
            f"({', '.join(LLMC_DTYPES)}); {fmt} is written in f32"
        )
    if fmt == "hf" and isinstance(config, LlamaConfig):
        from .hf_llama import save_hf_llama

        return save_hf_llama(out, params, config, tokenizer)
    if fmt == "hf":
        from .hf import save_hf_checkpoint

        save_hf_checkpoint(out, params, config, tokenizer)
        return Path(out)
    raise ValueError(f"export format must be one of {FORMATS}, got {fmt!r}")


def export_adapter(
    out: str | Path,
    fmt: str,
    lora: LoraWeights,
    config: GPT2Config | LlamaConfig,
    dtype: str = "f32",
) -> Path:
    """Write a LoRA adapter of the base ``config`` as fmt ("gguf-lora" or "peft"), atomically."""
    if fmt == "gguf-lora":
        from .lora_gguf import save_gguf_lora

        return save_gguf_lora(out, lora, config, dtype)
    if fmt == "peft":
        if dtype != "f32":
            raise ValueError(f"--dtype {dtype} is for gguf-lora; a PEFT adapter is written in f32")
        from .peft import save_peft

        return save_peft(out, lora, config)
    raise ValueError(f"adapter export format must be one of {ADAPTER_FORMATS}, got {fmt!r}")
