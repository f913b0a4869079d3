"""GGUF for llama.cpp's ``llama`` and ``qwen2`` architectures, with gguf-py's keys and
tensor names, the tokenizer.json's byte-level BPE included.

Facts carried over from llama.cpp's converter: GGUF Linear weights are torch's (out, in);
for ``llama`` (rotated by ggml's adjacent-pair rope) the rows of q_proj and k_proj are
reordered within each head from HF's half split to interleaved pairs; ``qwen2`` keeps
HF's order (it runs the NEOX rope). The pre-tokenizer is named after the tokenizer.json's
(GPT-2's regex, SmolLM2's digits + GPT-2, Qwen2's split).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import gguf
import numpy as np

from ..atomic import atomic_path
from ..config import LLAMA_CONFIGS, LlamaConfig
from ..llama import LlamaNet
from ..tokenizer import HFTokenizer, SentencePieceTokenizer, Tokenizer
from .bpe import BPEVocab
from .hf import bpe_model_json
from .sentencepiece_model import sentencepiece_model

T = gguf.MODEL_TENSOR
ARCHS = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}
# our name after "model." ({bid} = block) -> GGUF tensor kind
TENSORS: dict[str, gguf.MODEL_TENSOR] = {
    "embed_tokens": T.TOKEN_EMBD,
    "layers.{bid}.input_layernorm": T.ATTN_NORM,
    "layers.{bid}.self_attn.q_proj": T.ATTN_Q,
    "layers.{bid}.self_attn.k_proj": T.ATTN_K,
    "layers.{bid}.self_attn.v_proj": T.ATTN_V,
    "layers.{bid}.self_attn.o_proj": T.ATTN_OUT,
    "layers.{bid}.post_attention_layernorm": T.FFN_NORM,
    "layers.{bid}.mlp.gate_proj": T.FFN_GATE,
    "layers.{bid}.mlp.up_proj": T.FFN_UP,
    "layers.{bid}.mlp.down_proj": T.FFN_DOWN,
    "norm": T.OUTPUT_NORM,
}
DTYPES = {  # --dtype -> (2-D tensor type, general.file_type)
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}
_BLOCK = re.compile(r"layers\.(\d+)\.(.+)")
# pre-tokenizers of a tokenizer.json, as (type, ...) signatures -> llama.cpp's name
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True}
# llama.cpp's pre-tokenizer name -> the tokenizer.json pre_tokenizer that splits the same way
PRE_TOKENIZERS: dict[str, dict] = {
    "gpt-2": {**_BYTE_LEVEL, "use_regex": True},
    "smollm": {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {**_BYTE_LEVEL, "use_regex": True},
        ],
    },
    "qwen2": {
        "type": "Sequence",
        "pretokenizers": [
            {
                "type": "Split",
                "pattern": {"Regex": QWEN2_SPLIT},
                "behavior": "Isolated",
                "invert": False,
            },
            {**_BYTE_LEVEL, "trim_offsets": False, "use_regex": False},
        ],
    },
}


def gguf_name(name: str) -> str:
    """The GGUF tensor name of one of our (HF) parameter names."""
    if name == "lm_head.weight":
        return f"{gguf.TENSOR_NAMES[T.OUTPUT]}.weight"
    stem, _, suffix = name.removeprefix("model.").rpartition(".")
    bid = None
    if m := _BLOCK.fullmatch(stem):
        bid, stem = int(m.group(1)), "layers.{bid}." + m.group(2)
    return f"{gguf.TENSOR_NAMES[TENSORS[stem]].format(bid=bid)}.{suffix}"


def split_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of :func:`pair_rows`: llama.cpp's adjacent pairs back to HF's half split."""
    hs = w.shape[0] // n_head
    heads = w.reshape(n_head, hs // 2, 2, *w.shape[1:])  # (nh, i, half, ...)
    return np.ascontiguousarray(heads.swapaxes(1, 2).reshape(w.shape))


def pair_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Rows (or bias entries) of q_proj/k_proj from HF's half-split rotary layout to
    llama.cpp's adjacent pairs: within each head, row i < hs/2 goes to 2i and row
    hs/2 + i to 2i + 1."""
    hs = w.shape[0] // n_head
    heads = w.reshape(n_head, 2, hs // 2, *w.shape[1:])  # (nh, half, i, ...)
    return np.ascontiguousarray(heads.swapaxes(1, 2).reshape(w.shape))


def tokenizer_pre(spec: dict | None) -> str:
    """llama.cpp's pre-tokenizer name for a tokenizer.json ``pre_tokenizer``."""
    steps = spec.get("pretokenizers", [spec]) if spec else []
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and steps[0].get("pattern", {}).get("Regex") == QWEN2_SPLIT:
        return "qwen2"
    raise ValueError(
        f"pre-tokenizer {kinds} has no llama.cpp counterpart here; GGUF export knows GPT-2's "
        "byte-level regex, SmolLM2's (digits + byte level) and Qwen2's split"
    )


def bpe_vocab(tokenizer: HFTokenizer) -> tuple[BPEVocab, str]:
    """The byte-level BPE tables of a tokenizer.json and its pre-tokenizer name."""
    spec = json.loads(tokenizer.json_text)
    model = spec["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"GGUF export writes byte-level BPE tokenizers, not {model.get('type')}")
    vocab = {**model["vocab"], **{t["content"]: t["id"] for t in spec.get("added_tokens", [])}}
    tokens = sorted(vocab, key=vocab.__getitem__)
    if [vocab[t] for t in tokens] != list(range(len(tokens))):
        raise ValueError("the tokenizer's ids are not 0..V-1 without gaps")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    control = tuple(t["id"] for t in spec.get("added_tokens", []) if t.get("special"))
    return BPEVocab(tokens, merges, control), tokenizer_pre(spec.get("pre_tokenizer"))


def _stored(value: np.ndarray, dtype: str):
    """(data, raw_dtype) of one tensor in a file of ``dtype``; 1-D tensors stay f32."""
    qtype = DTYPES[dtype][0]
    if value.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
        return value, None
    if qtype == gguf.GGMLQuantizationType.F16:
        return value.astype(np.float16), None
    if value.shape[-1] % gguf.GGML_QUANT_SIZES[qtype][0]:
        return value.astype(np.float16), None  # as llama.cpp's converter: f16 fallback
    return gguf.quants.quantize(value, qtype), qtype


def _add_bpe_vocab(w: gguf.GGUFWriter, tokenizer: HFTokenizer) -> None:
    """tokenizer.ggml.model 'gpt2': byte-level BPE tokens, merges and the pre-tokenizer."""
    vocab, pre = bpe_vocab(tokenizer)
    token_types = [gguf.TokenType.NORMAL] * len(vocab.tokens)
    for i in vocab.control:
        token_types[i] = gguf.TokenType.CONTROL
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(vocab.tokens)
    w.add_token_types(token_types)
    w.add_token_merges(vocab.merges)
    if vocab.control:
        w.add_bos_token_id(vocab.control[0])
        w.add_eos_token_id(vocab.control[0])


def _add_sentencepiece_vocab(w: gguf.GGUFWriter, tokenizer: SentencePieceTokenizer) -> None:
    """tokenizer.ggml.model 'llama': SentencePiece pieces, scores and piece types."""
    sp = tokenizer.sp
    types = []
    for i in range(sp.get_piece_size()):
        if sp.is_unknown(i):
            types.append(gguf.TokenType.UNKNOWN)
        elif sp.is_control(i):
            types.append(gguf.TokenType.CONTROL)
        elif sp.is_unused(i):
            types.append(gguf.TokenType.UNUSED)
        elif sp.is_byte(i):
            types.append(gguf.TokenType.BYTE)
        else:
            types.append(gguf.TokenType.NORMAL)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list([sp.id_to_piece(i) for i in range(sp.get_piece_size())])
    w.add_token_scores([sp.get_score(i) for i in range(sp.get_piece_size())])
    w.add_token_types(types)
    for add, token_id in ((w.add_bos_token_id, sp.bos_id()), (w.add_eos_token_id, sp.eos_id())):
        if token_id >= 0:
            add(token_id)
    if sp.unk_id() >= 0:
        w.add_unk_token_id(sp.unk_id())


def save_gguf_llama(
    path: str | Path,
    params: dict[str, np.ndarray],
    config: LlamaConfig,
    tokenizer: Tokenizer,
    dtype: str = "f32",
) -> Path:
    """Write a GGUF llama.cpp runs as ``llama`` or ``qwen2``, atomically."""
    path = Path(path)
    if dtype not in DTYPES:
        raise ValueError(f"GGUF dtype must be one of {list(DTYPES)}, got {dtype!r}")
    if not isinstance(tokenizer, HFTokenizer | SentencePieceTokenizer):
        raise ValueError(
            "a Llama GGUF needs the model's tokenizer.json or tokenizer.model, got the "
            f"{tokenizer.name!r} tokenizer"
        )
    if tokenizer.vocab_size != config.require_vocab_size():
        raise ValueError(f"{tokenizer.vocab_size} tokens, but vocab_size {config.vocab_size}")
    arch = gguf.MODEL_ARCH_NAMES[ARCHS[config.model_type]]
    with atomic_path(path) as tmp:
        w = gguf.GGUFWriter(tmp, arch)
        w.add_name(path.stem)
        w.add_vocab_size(config.vocab_size)
        w.add_context_length(config.block_size)
        w.add_embedding_length(config.n_embd)
        w.add_feed_forward_length(config.d_ff)
        w.add_block_count(config.n_layer)
        w.add_head_count(config.n_head)
        w.add_head_count_kv(config.n_kv_head)
        w.add_rope_dimension_count(config.head_dim)
        w.add_rope_freq_base(config.rope_theta)
        w.add_layer_norm_rms_eps(config.norm_eps)
        w.add_file_type(DTYPES[dtype][1])
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        if isinstance(tokenizer, HFTokenizer):
            _add_bpe_vocab(w, tokenizer)
        else:
            _add_sentencepiece_vocab(w, tokenizer)
        w.add_add_bos_token(False)
        for p in LlamaNet(config).params():
            value = np.asarray(params[p.name], dtype=np.float32)
            if p.shape != value.shape:
                raise ValueError(f"{p.name}: expected shape {p.shape}, got {value.shape}")
            if config.model_type == "llama" and ".q_proj." in p.name:
                value = pair_rows(value, config.n_head)
            elif config.model_type == "llama" and ".k_proj." in p.name:
                value = pair_rows(value, config.n_kv_head)
            data, raw = _stored(value, dtype)
            w.add_tensor(gguf_name(p.name), data, raw_dtype=raw)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return path


def is_llama_gguf(path: str | Path) -> bool:
    """Whether a GGUF file's general.architecture is llama or qwen2 (False for a file
    gguf-py can't read: the other loader reports that)."""
    try:
        field = gguf.GGUFReader(path).get_field(gguf.Keys.General.ARCHITECTURE)
    except (ValueError, OSError, IndexError, KeyError, TypeError):
        return False
    names = {gguf.MODEL_ARCH_NAMES[a] for a in ARCHS.values()}
    return field is not None and field.contents() in names


def _field(reader: gguf.GGUFReader, path: Path, key: str, default=None):
    field = reader.get_field(key)
    if field is None:
        if default is None:
            raise ValueError(f"{path}: GGUF key {key!r} is missing")
        return default
    return field.contents()


def _f32_decimal(value: float) -> float:
    """A float stored as f32 back to its shortest decimal (1e-5, not 9.99999974e-06)."""
    return float(str(np.float32(value)))


def load_gguf_llama(path: str | Path) -> tuple[dict[str, np.ndarray], LlamaConfig, Tokenizer]:
    """Weights (f32, dequantized from f32/f16/bf16/q8_0, HF names and row order), config and
    tokenizer of a llama or qwen2 GGUF (ours, or llama.cpp's converter's)."""
    path = Path(path)
    reader = gguf.GGUFReader(path)
    arch = _field(reader, path, gguf.Keys.General.ARCHITECTURE)
    model_type = next((t for t, a in ARCHS.items() if gguf.MODEL_ARCH_NAMES[a] == arch), None)
    if model_type is None:
        raise ValueError(f"{path}: architecture {arch!r} is not llama or qwen2")

    def key(k: str, default=None):
        return _field(reader, path, k.format(arch=arch), default)

    stored = {t.name: t for t in reader.tensors}
    tokens = _field(reader, path, gguf.Keys.Tokenizer.LIST)
    n_head = int(key(gguf.Keys.Attention.HEAD_COUNT))
    config = LLAMA_CONFIGS[model_type](
        vocab_size=len(tokens),
        block_size=int(key(gguf.Keys.LLM.CONTEXT_LENGTH)),
        n_layer=int(key(gguf.Keys.LLM.BLOCK_COUNT)),
        n_head=n_head,
        n_kv_head=int(key(gguf.Keys.Attention.HEAD_COUNT_KV, n_head)),
        n_embd=int(key(gguf.Keys.LLM.EMBEDDING_LENGTH)),
        d_ff=int(key(gguf.Keys.LLM.FEED_FORWARD_LENGTH)),
        rope_theta=_f32_decimal(key(gguf.Keys.Rope.FREQ_BASE, 10000.0)),
        norm_eps=_f32_decimal(key(gguf.Keys.Attention.LAYERNORM_RMS_EPS)),
        tie_embeddings=f"{gguf.TENSOR_NAMES[T.OUTPUT]}.weight" not in stored,
        qkv_bias=model_type == "qwen2",
        model_type=model_type,
    )
    params: dict[str, np.ndarray] = {}
    for p in LlamaNet(config).params():
        name = gguf_name(p.name)
        if name not in stored:
            raise ValueError(f"{path}: tensor {name!r} (our {p.name}) is missing")
        t = stored[name]
        value = gguf.quants.dequantize(t.data, t.tensor_type)
        value = np.asarray(value, dtype=np.float32).reshape(tuple(int(d) for d in t.shape[::-1]))
        if value.shape != p.shape:
            raise ValueError(f"{path}: {name} has shape {value.shape}, expected {p.shape}")
        if model_type == "llama" and ".q_proj." in p.name:
            value = split_rows(value, config.n_head)
        elif model_type == "llama" and ".k_proj." in p.name:
            value = split_rows(value, config.n_kv_head)
        params[p.name] = value
    return params, config, _tokenizer(reader, path, tokens)


def _tokenizer(reader: gguf.GGUFReader, path: Path, tokens: list[str]) -> Tokenizer:
    """The tokenizer of the GGUF's metadata: byte-level BPE (tokenizer.ggml.model gpt2)
    with one of the pre-tokenizers in PRE_TOKENIZERS as a tokenizer.json, or a
    SentencePiece vocabulary (llama) as a SentencePiece model."""
    model = _field(reader, path, gguf.Keys.Tokenizer.MODEL)
    if model == "llama":
        return _sentencepiece_tokenizer(reader, path, tokens)
    pre = _field(reader, path, gguf.Keys.Tokenizer.PRE, "default")
    if model != "gpt2":
        raise ValueError(
            f"{path}: tokenizer.ggml.model {model!r} is not read from GGUF metadata (only "
            "byte-level BPE, 'gpt2', and SentencePiece, 'llama'); load the model's HF "
            "directory, whose tokenizer.json (or tokenizer.model) holds the tokenizer"
        )
    if pre not in PRE_TOKENIZERS:
        raise ValueError(
            f"{path}: pre-tokenizer {pre!r} is not one of {sorted(PRE_TOKENIZERS)}; load the "
            "model's HF directory (its tokenizer.json) instead"
        )
    types = _field(reader, path, gguf.Keys.Tokenizer.TOKEN_TYPE)
    special = [i for i, t in enumerate(types) if t == gguf.TokenType.CONTROL]
    spec = {
        "version": "1.0",
        "added_tokens": [
            {
                "id": i,
                "content": tokens[i],
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for i in special
        ],
        "normalizer": None,
        "pre_tokenizer": PRE_TOKENIZERS[pre],
        "post_processor": None,
        "decoder": {**_BYTE_LEVEL, "use_regex": True},
        "model": bpe_model_json(
            {t: i for i, t in enumerate(tokens)},
            list(_field(reader, path, gguf.Keys.Tokenizer.MERGES)),
        ),
    }
    return HFTokenizer(json.dumps(spec, ensure_ascii=False))


def _sentencepiece_tokenizer(
    reader: gguf.GGUFReader, path: Path, tokens: list[str]
) -> SentencePieceTokenizer:
    """The SentencePiece BPE of a 'llama' vocabulary: pieces, scores and types as stored,
    identity normalization and the space prefix as llama.cpp applies them."""
    types = [int(t) for t in _field(reader, path, gguf.Keys.Tokenizer.TOKEN_TYPE)]
    unknown = [i for i, t in enumerate(types) if t == gguf.TokenType.UNKNOWN]
    if not unknown:
        raise ValueError(
            f"{path}: the SentencePiece vocabulary has no unknown piece, which sentencepiece "
            "requires; load the model's HF directory (its tokenizer.model) instead"
        )
    model = sentencepiece_model(
        tokens,
        [float(s) for s in _field(reader, path, gguf.Keys.Tokenizer.SCORES)],
        types,
        unk_id=int(_field(reader, path, gguf.Keys.Tokenizer.UNK_ID, unknown[0])),
        bos_id=int(_field(reader, path, gguf.Keys.Tokenizer.BOS_ID, -1)),
        eos_id=int(_field(reader, path, gguf.Keys.Tokenizer.EOS_ID, -1)),
        add_dummy_prefix=bool(_field(reader, path, gguf.Keys.Tokenizer.ADD_PREFIX, True)),
    )
    try:
        return SentencePieceTokenizer(model)
    except RuntimeError as exc:  # sentencepiece refuses what it can't serve
        raise ValueError(
            f"{path}: sentencepiece can't use the GGUF's vocabulary ({exc}); load the model's "
            "HF directory (its tokenizer.model) instead"
        ) from None
