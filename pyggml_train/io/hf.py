"""Hugging Face GPT-2 checkpoints: model.safetensors + config.json (+ tokenizer files).

HF's GPT-2 uses our parameter names and layouts (Conv1D weights (in, out)), so weights
move without renames; files may lack the ``transformer.`` prefix, carry the attention
mask buffers, or a tied ``lm_head.weight``. Our own tokenizer rides along in the
safetensors metadata; GPT-2 BPE models also get HF's vocab.json and merges.txt.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..atomic import atomic_dir
from ..config import GPT2Config
from ..hf_gpt2 import PREFIX, infer_config, param_shapes
from ..tokenizer import (
    GPT2_VOCAB_SIZE,
    CharTokenizer,
    GPT2Tokenizer,
    Tokenizer,
    tokenizer_from_dict,
)
from .bpe import gpt2_from_tiktoken
from .safetensors import load_safetensors, save_safetensors

# buffers HF stores in some GPT-2 files that are not parameters (causal mask, -inf fill)
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
TOKENIZER_META = "pyggml_train.tokenizer"  # safetensors metadata key: Tokenizer.to_dict() JSON
TENSOR_FILE = "model.safetensors"


def _canonical(name: str) -> str:
    return name if name.startswith(PREFIX) or name == "lm_head.weight" else PREFIX + name


def _config_from_json(path: Path) -> GPT2Config:
    """Model config from an HF config.json (keys n_ctx/n_positions, layer_norm_epsilon)."""
    hf = json.loads(path.read_text())
    if hf.get("model_type", "gpt2") != "gpt2":
        raise ValueError(f"{path}: model_type is {hf['model_type']!r}, expected 'gpt2'")
    return GPT2Config(
        vocab_size=hf["vocab_size"],
        block_size=hf.get("n_positions", hf.get("n_ctx")),
        n_layer=hf["n_layer"],
        n_head=hf["n_head"],
        n_embd=hf["n_embd"],
        ln_eps=hf.get("layer_norm_epsilon", 1e-5),
    )


def _hf_config_dict(config: GPT2Config, tokenizer: Tokenizer | None) -> dict[str, object]:
    # GPT-2's <|endoftext|> is the BOS/EOS of GPT-2 BPE only; transformers assumes 50256
    # when the keys are absent and warns on every load of a smaller vocabulary
    special = GPT2_VOCAB_SIZE - 1 if isinstance(tokenizer, GPT2Tokenizer) else None
    return {
        "bos_token_id": special,
        "eos_token_id": special,
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "vocab_size": config.require_vocab_size(),
        "n_positions": config.block_size,
        "n_ctx": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "layer_norm_epsilon": config.ln_eps,
        "tie_word_embeddings": True,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
    }


def load_hf_checkpoint(
    path: str | Path, config: GPT2Config | None = None
) -> tuple[dict[str, np.ndarray], GPT2Config]:
    """GPT-2 weights from a model.safetensors (file, or a directory holding it).

    An ``lm_head.weight`` is accepted only when it equals wte (GPT-2 ties them). Without
    config, a ``config.json`` beside the file is used, else the shapes decide.
    Returns float32 arrays keyed by prefixed HF names, and the config.
    """
    params, config, _ = load_hf(path, config)
    return params, config


def load_hf(
    path: str | Path, config: GPT2Config | None = None
) -> tuple[dict[str, np.ndarray], GPT2Config, Tokenizer | None]:
    """:func:`load_hf_checkpoint` plus the tokenizer the files carry (None if none)."""
    path = Path(path)
    file = path / TENSOR_FILE if path.is_dir() else path
    raw, metadata = load_safetensors(file)
    tensors: dict[str, np.ndarray] = {}
    for name, value in raw.items():
        if not name.endswith(_IGNORED_SUFFIXES):
            tensors[_canonical(name)] = value.astype(np.float32, copy=False)
    lm_head = tensors.pop("lm_head.weight", None)
    if config is None:
        config_json = file.parent / "config.json"
        config = _config_from_json(config_json) if config_json.is_file() else None
        config = config or infer_config(tensors, str(file))
    expected = param_shapes(config)
    for name, shape in expected.items():
        if name not in tensors:
            raise ValueError(f"{file}: tensor {name} is missing (expected shape {shape})")
        if tensors[name].shape != shape:
            raise ValueError(
                f"{file}: tensor {name} has shape {tensors[name].shape}, expected {shape} "
                f"for {config}"
            )
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise ValueError(f"{file}: unexpected tensors {extra[:5]} for {config}")
    if lm_head is not None and not np.array_equal(lm_head, tensors[PREFIX + "wte.weight"]):
        raise ValueError(
            f"{file}: lm_head.weight differs from transformer.wte.weight, but GPT-2 ties them; "
            "untied heads are not supported"
        )
    tokenizer = _tokenizer(file, metadata, config)
    return {name: tensors[name] for name in expected}, config, tokenizer


def _tokenizer(file: Path, metadata: dict[str, str], config: GPT2Config) -> Tokenizer | None:
    """Ours from the metadata; else GPT-2 BPE when vocab.json is GPT-2's; else None."""
    if TOKENIZER_META in metadata:
        tokenizer = tokenizer_from_dict(json.loads(metadata[TOKENIZER_META]))
    elif (file.parent / "vocab.json").is_file():
        vocab = json.loads((file.parent / "vocab.json").read_text(encoding="utf-8"))
        gpt2 = len(vocab) == GPT2_VOCAB_SIZE  # only then is tiktoken's GPT-2 worth loading
        if not gpt2 or sorted(vocab, key=vocab.__getitem__) != gpt2_from_tiktoken().tokens:
            return None  # another BPE: the weights load, the caller brings a tokenizer
        tokenizer = GPT2Tokenizer()
    else:
        return None
    if tokenizer.vocab_size != config.vocab_size:
        raise ValueError(
            f"{file}: the tokenizer has {tokenizer.vocab_size} tokens but the weights have "
            f"vocab_size {config.vocab_size}"
        )
    return tokenizer


def bpe_model_json(vocab: dict[str, int], merges: list) -> dict:
    """The ``model`` of a tokenizer.json (the Hugging Face ``tokenizers`` format): a plain
    BPE over ``vocab`` with ``merges``, no unknown token, no byte fallback."""
    return {
        "type": "BPE",
        "dropout": None,
        "unk_token": None,
        "continuing_subword_prefix": None,
        "end_of_word_suffix": None,
        "fuse_unk": False,
        "byte_fallback": False,
        "ignore_merges": False,
        "vocab": vocab,
        "merges": merges,
    }


def _char_tokenizer_files(tokenizer: CharTokenizer, block_size: int) -> dict[str, str]:
    """tokenizer.json (the Hugging Face ``tokenizers`` format) that encodes as ours: a BPE
    with no merges splits text into characters and maps each to its id; the Fuse decoder
    joins them back without spaces. No normalizer, no pre-tokenizer, no special tokens."""
    model = bpe_model_json({c: i for i, c in enumerate(tokenizer.chars)}, [])
    spec = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": None,
        "post_processor": None,
        "decoder": {"type": "Fuse"},
        "model": model,
    }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": block_size,
        "clean_up_tokenization_spaces": False,
    }
    return {
        "tokenizer.json": json.dumps(spec, ensure_ascii=False),
        "tokenizer_config.json": json.dumps(config, indent=2),
    }


def save_hf_checkpoint(
    path: str | Path,
    params: dict[str, np.ndarray],
    config: GPT2Config,
    tokenizer: Tokenizer | None = None,
) -> Path:
    """Write params as an HF-compatible model.safetensors (+ config.json for a directory).

    path ending in ``.safetensors`` is the file; otherwise it is a directory that gets
    ``model.safetensors``, an HF-style ``config.json`` and, for GPT-2 BPE, HF's
    ``vocab.json`` / ``merges.txt``. Returns the tensor file path.
    """
    path = Path(path)
    expected = param_shapes(config)
    missing = sorted(set(expected) - set(params))
    if missing:
        raise ValueError(f"params lack {missing[:5]} required for {config}")
    for name, shape in expected.items():
        if params[name].shape != shape:
            raise ValueError(f"{name} has shape {params[name].shape}, expected {shape}")
    if tokenizer is not None and tokenizer.vocab_size != config.vocab_size:
        raise ValueError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
            f"{config.vocab_size}"
        )
    tensors = {name: np.asarray(params[name], dtype=np.float32) for name in expected}
    metadata = {"format": "pt"}
    if tokenizer is not None:
        metadata[TOKENIZER_META] = json.dumps(tokenizer.to_dict())
    if path.suffix == ".safetensors":
        save_safetensors(path, tensors, metadata)
        return path
    files = {"config.json": json.dumps(_hf_config_dict(config, tokenizer), indent=2)}
    if isinstance(tokenizer, CharTokenizer):
        files.update(_char_tokenizer_files(tokenizer, config.block_size))
    if isinstance(tokenizer, GPT2Tokenizer):
        vocab = gpt2_from_tiktoken()
        files["vocab.json"] = json.dumps({t: i for i, t in enumerate(vocab.tokens)})
        files["merges.txt"] = "#version: 0.2\n" + "\n".join(vocab.merges) + "\n"
    with atomic_dir(path) as tmp:
        save_safetensors(tmp / TENSOR_FILE, tensors, metadata)
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
    return path / TENSOR_FILE
