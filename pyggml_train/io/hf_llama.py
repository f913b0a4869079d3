"""Hugging Face Llama and Qwen2 directories: config.json, safetensors (one file or
shards with an index; f32, f16 or bf16, widened to f32) and tokenizer.json.

Our Llama's parameter names and layouts are HF's (llama.LlamaNet), so weights move
without renames. A tied model's files may omit ``lm_head.weight`` or repeat the embedding.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..atomic import atomic_dir
from ..config import LLAMA_CONFIGS, LLAMA_TYPES, LlamaConfig
from ..llama import LlamaNet
from ..tokenizer import HFTokenizer, SentencePieceTokenizer, Tokenizer
from .safetensors import load_safetensors, save_safetensors

TENSOR_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}


def hf_model_type(path: str | Path) -> str | None:
    """The model_type of the config.json in directory ``path`` (None without one)."""
    config_json = Path(path) / "config.json"
    if not config_json.is_file():
        return None
    return json.loads(config_json.read_text(encoding="utf-8")).get("model_type")


def config_from_hf(hf: dict, source: str) -> LlamaConfig:
    """Our LlamaConfig from an HF config.json dict; refuses what our layers don't compute."""
    model_type = hf.get("model_type")
    if model_type not in LLAMA_TYPES:
        raise ValueError(f"{source}: model_type {model_type!r} is not one of {LLAMA_TYPES}")
    rope = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {}
    if rope.get("rope_type", "default") != "default" or scaling:
        raise ValueError(f"{source}: rope scaling {rope or scaling} is not supported")
    c, nh = hf["hidden_size"], hf["num_attention_heads"]
    if hf.get("head_dim", c // nh) != c // nh:
        raise ValueError(f"{source}: head_dim {hf['head_dim']} != hidden_size / heads")
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        raise ValueError(f"{source}: attention_bias/mlp_bias (biases on o_proj, MLP) unsupported")
    if model_type == "qwen2" and hf.get("use_sliding_window"):
        raise ValueError(f"{source}: sliding-window attention is not supported")
    return LLAMA_CONFIGS[model_type](
        vocab_size=hf["vocab_size"],
        block_size=hf.get("max_position_embeddings", 2048),
        n_layer=hf["num_hidden_layers"],
        n_head=nh,
        n_kv_head=hf.get("num_key_value_heads") or nh,
        n_embd=c,
        d_ff=hf["intermediate_size"],
        rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        qkv_bias=model_type == "qwen2",
        init_std=hf.get("initializer_range", 0.02),
        model_type=model_type,
    )


def hf_config(config: LlamaConfig) -> dict[str, object]:
    """The config.json transformers reads back into the same model."""
    out: dict[str, object] = {
        "architectures": [ARCHITECTURES[config.model_type]],
        "model_type": config.model_type,
        "vocab_size": config.require_vocab_size(),
        "hidden_size": config.n_embd,
        "intermediate_size": config.d_ff,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": config.n_kv_head,
        "head_dim": config.head_dim,
        "max_position_embeddings": config.block_size,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "rope_parameters": {"rope_theta": config.rope_theta, "rope_type": "default"},
        "tie_word_embeddings": config.tie_embeddings,
        "initializer_range": config.init_std,
        "hidden_act": "silu",
        "torch_dtype": "float32",
    }
    if config.model_type == "llama":
        out.update(attention_bias=False, mlp_bias=False)
    return out


def _tensor_files(path: Path) -> list[Path]:
    if (path / TENSOR_FILE).is_file():
        return [path / TENSOR_FILE]
    if (path / INDEX_FILE).is_file():
        index = json.loads((path / INDEX_FILE).read_text(encoding="utf-8"))
        return [path / name for name in sorted(set(index["weight_map"].values()))]
    raise FileNotFoundError(f"{path} has neither {TENSOR_FILE} nor {INDEX_FILE}")


def load_hf_llama(path: str | Path) -> tuple[dict[str, np.ndarray], LlamaConfig, Tokenizer | None]:
    """Weights (f32, HF names), config and tokenizer (tokenizer.json, else None) of an HF
    Llama/Qwen2 directory."""
    path = Path(path)
    config = config_from_hf(
        json.loads((path / "config.json").read_text(encoding="utf-8")), str(path)
    )
    tensors: dict[str, np.ndarray] = {}
    for file in _tensor_files(path):
        raw, _ = load_safetensors(file)
        for name, value in raw.items():
            tensors[name] = value.astype(np.float32, copy=False)
    expected = {p.name: p.shape for p in LlamaNet(config).params()}
    lm_head = tensors.pop("lm_head.weight", None) if config.tie_embeddings else None
    if lm_head is not None and not np.array_equal(
        lm_head, tensors.get("model.embed_tokens.weight")
    ):
        raise ValueError(
            f"{path}: tie_word_embeddings, but lm_head.weight differs from the embedding"
        )
    for name, shape in expected.items():
        if name not in tensors:
            raise ValueError(f"{path}: tensor {name} is missing (expected shape {shape})")
        if tensors[name].shape != shape:
            raise ValueError(f"{path}: {name} has shape {tensors[name].shape}, expected {shape}")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise ValueError(f"{path}: unexpected tensors {extra[:5]} for {config.model_type}")
    return {name: tensors[name] for name in expected}, config, _tokenizer(path)


def _tokenizer(path: Path) -> Tokenizer | None:
    """tokenizer.json (the tokenizers package), else tokenizer.model (sentencepiece)."""
    if (path / "tokenizer.json").is_file():
        return HFTokenizer((path / "tokenizer.json").read_text(encoding="utf-8"))
    if (path / "tokenizer.model").is_file():
        return SentencePieceTokenizer((path / "tokenizer.model").read_bytes())
    return None


def save_hf_llama(
    path: str | Path,
    params: dict[str, np.ndarray],
    config: LlamaConfig,
    tokenizer: Tokenizer | None = None,
) -> Path:
    """Write an HF directory transformers' AutoModelForCausalLM loads (f32 safetensors,
    config.json) and, for an HF tokenizer, its tokenizer.json and tokenizer_config.json."""
    expected = [p.name for p in LlamaNet(config).params()]
    missing = sorted(set(expected) - set(params))
    if missing:
        raise ValueError(f"params lack {missing[:5]} required for {config.model_type}")
    tensors = {name: np.asarray(params[name], dtype=np.float32) for name in expected}
    files = {"config.json": json.dumps(hf_config(config), indent=2)}
    if isinstance(tokenizer, HFTokenizer):
        files["tokenizer.json"] = tokenizer.json_text
        files["tokenizer_config.json"] = json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"})
    binary = (
        {"tokenizer.model": tokenizer.model}
        if isinstance(tokenizer, SentencePieceTokenizer)
        else {}
    )
    with atomic_dir(path) as tmp:
        save_safetensors(tmp / TENSOR_FILE, tensors, {"format": "pt"})
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
        for name, data in binary.items():
            (tmp / name).write_bytes(data)
    return Path(path)
