"""GGUF for llama.cpp's ``gpt2`` architecture, written and read with llama.cpp's ``gguf``
package: metadata keys, tensor names and quantization all come from it.

GGUF stores every Linear weight as (out, in) (ggml's ne = {in, out}), so HF's Conv1D
(in, out) weights are transposed on the way; embeddings and norms keep their layout.
As llama.cpp's own converter does, the tied LM head is also written as ``output.weight``
and the position embedding stays f32 in f16/q8_0 files.
"""

from __future__ import annotations

import re
from pathlib import Path

import gguf
import numpy as np

from ..atomic import atomic_path
from ..config import GPT2Config
from ..hf_gpt2 import PREFIX, param_shapes
from ..tokenizer import GPT2_VOCAB_SIZE, CharTokenizer, GPT2Tokenizer, Tokenizer
from .bpe import BPEVocab, char_tokenizer_from_vocab, char_vocab, gpt2_from_tiktoken

ARCH = gguf.MODEL_ARCH.GPT2
ARCH_NAME = gguf.MODEL_ARCH_NAMES[ARCH]
TOKENIZER_MODEL = "gpt2"  # llama.cpp's byte-level BPE tokenizer model
TOKENIZER_PRE = "gpt-2"  # ... with GPT-2's pre-tokenizer regex
T = gguf.MODEL_TENSOR
# our name after "transformer." ({bid} = block) -> (GGUF tensor, suffix, transposed)
TENSORS: dict[str, tuple[gguf.MODEL_TENSOR, str, bool]] = {
    "wte.weight": (T.TOKEN_EMBD, "weight", False),
    "wpe.weight": (T.POS_EMBD, "weight", False),
    "h.{bid}.ln_1.weight": (T.ATTN_NORM, "weight", False),
    "h.{bid}.ln_1.bias": (T.ATTN_NORM, "bias", False),
    "h.{bid}.attn.c_attn.weight": (T.ATTN_QKV, "weight", True),
    "h.{bid}.attn.c_attn.bias": (T.ATTN_QKV, "bias", False),
    "h.{bid}.attn.c_proj.weight": (T.ATTN_OUT, "weight", True),
    "h.{bid}.attn.c_proj.bias": (T.ATTN_OUT, "bias", False),
    "h.{bid}.ln_2.weight": (T.FFN_NORM, "weight", False),
    "h.{bid}.ln_2.bias": (T.FFN_NORM, "bias", False),
    "h.{bid}.mlp.c_fc.weight": (T.FFN_UP, "weight", True),
    "h.{bid}.mlp.c_fc.bias": (T.FFN_UP, "bias", False),
    "h.{bid}.mlp.c_proj.weight": (T.FFN_DOWN, "weight", True),
    "h.{bid}.mlp.c_proj.bias": (T.FFN_DOWN, "bias", False),
    "ln_f.weight": (T.OUTPUT_NORM, "weight", False),
    "ln_f.bias": (T.OUTPUT_NORM, "bias", False),
}
OUTPUT = f"{gguf.TENSOR_NAMES[T.OUTPUT]}.weight"  # the tied head's copy of the token embedding
KEEP_F32 = (T.POS_EMBD,)  # 2-D tensors llama.cpp's converter never quantizes
DTYPES = {  # --dtype -> (2-D tensor type, general.file_type)
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}
_BLOCK = re.compile(r"h\.(\d+)\.(.+)")


def gguf_name(name: str) -> tuple[str, gguf.MODEL_TENSOR, bool]:
    """GGUF tensor name, tensor kind and transposition of one of our parameter names."""
    short = name.removeprefix(PREFIX)
    bid, key = None, short
    if m := _BLOCK.fullmatch(short):
        bid, key = int(m.group(1)), "h.{bid}." + m.group(2)
    kind, suffix, transposed = TENSORS[key]
    return f"{gguf.TENSOR_NAMES[kind].format(bid=bid)}.{suffix}", kind, transposed


def tokenizer_vocab(tokenizer: Tokenizer, gpt2_bpe: BPEVocab | None = None) -> BPEVocab:
    """The byte-level BPE llama.cpp tokenizes exactly as ``tokenizer`` does. GPT-2's comes
    from tiktoken's cache unless ``gpt2_bpe`` (e.g. bpe.gpt2_from_files) is given."""
    if isinstance(tokenizer, GPT2Tokenizer):
        return gpt2_bpe or gpt2_from_tiktoken()
    if isinstance(tokenizer, CharTokenizer):
        return char_vocab(tokenizer)
    raise ValueError(f"no GGUF vocabulary for tokenizer {tokenizer.name!r}; expected char or gpt2")


def _stored(value: np.ndarray, kind: gguf.MODEL_TENSOR, dtype: str):
    """(data, raw_dtype) of one tensor in a file of ``dtype``; 1-D tensors stay f32."""
    qtype = DTYPES[dtype][0]
    if value.ndim == 1 or kind in KEEP_F32 or qtype == gguf.GGMLQuantizationType.F32:
        return value, None
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if qtype == gguf.GGMLQuantizationType.F16 or value.shape[-1] % block:
        # as llama.cpp's converter: rows that don't split into q8_0 blocks fall back to f16
        return value.astype(np.float16), None
    return gguf.quants.quantize(value, qtype), qtype


def save_gguf(
    path: str | Path,
    params: dict[str, np.ndarray],
    config: GPT2Config,
    tokenizer: Tokenizer,
    dtype: str = "f32",
    gpt2_bpe: BPEVocab | None = None,
) -> Path:
    """Write a GGUF that llama.cpp runs as ``gpt2``, atomically (no file on error)."""
    path = Path(path)
    if dtype not in DTYPES:
        raise ValueError(f"GGUF dtype must be one of {list(DTYPES)}, got {dtype!r}")
    vocab_size = config.require_vocab_size()
    if tokenizer.vocab_size != vocab_size:
        raise ValueError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
            f"{vocab_size}; export the tokenizer the model was trained with"
        )
    vocab = tokenizer_vocab(tokenizer, gpt2_bpe)
    shapes = param_shapes(config)
    for name, shape in shapes.items():
        if name not in params or params[name].shape != shape:
            got = params[name].shape if name in params else "missing"
            raise ValueError(f"parameter {name}: expected shape {shape}, got {got}")
    with atomic_path(path) as tmp:
        writer = gguf.GGUFWriter(tmp, ARCH_NAME)
        writer.add_name(path.stem)
        writer.add_context_length(config.block_size)
        writer.add_embedding_length(config.n_embd)
        writer.add_feed_forward_length(4 * config.n_embd)
        writer.add_block_count(config.n_layer)
        writer.add_head_count(config.n_head)
        writer.add_layer_norm_eps(config.ln_eps)
        writer.add_file_type(DTYPES[dtype][1])
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        _add_vocab(writer, vocab, tokenizer)
        for name in shapes:
            target, kind, transposed = gguf_name(name)
            value = np.asarray(params[name], dtype=np.float32)
            value = np.ascontiguousarray(value.T if transposed else value)
            data, raw = _stored(value, kind, dtype)
            writer.add_tensor(target, data, raw_dtype=raw)
            if kind == T.TOKEN_EMBD:
                writer.add_tensor(OUTPUT, data, raw_dtype=raw)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path


def _add_vocab(writer: gguf.GGUFWriter, vocab: BPEVocab, tokenizer: Tokenizer) -> None:
    token_types = [gguf.TokenType.NORMAL] * len(vocab.tokens)
    for i in vocab.control:
        token_types[i] = gguf.TokenType.CONTROL
    writer.add_tokenizer_model(TOKENIZER_MODEL)
    writer.add_tokenizer_pre(TOKENIZER_PRE)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(vocab.merges)
    if vocab.control:  # GPT-2: <|endoftext|> begins and ends documents
        writer.add_bos_token_id(vocab.control[0])
        writer.add_eos_token_id(vocab.control[0])
    elif isinstance(tokenizer, CharTokenizer) and "\n" in tokenizer.chars:
        # a char vocabulary has no end token; without one llama.cpp takes id 11, so name
        # the newline: generation stops at a line's end (llama-cli --ignore-eos goes on)
        newline = tokenizer.chars.index("\n")
        writer.add_bos_token_id(newline)
        writer.add_eos_token_id(newline)
    writer.add_add_bos_token(False)


def _field(reader: gguf.GGUFReader, path: Path, key: str):
    field = reader.get_field(key)
    if field is None:
        raise ValueError(f"{path}: GGUF key {key!r} is missing")
    return field.contents()


def load_gguf(path: str | Path) -> tuple[dict[str, np.ndarray], GPT2Config, Tokenizer | None]:
    """Weights (float32, dequantized, HF layout), config and tokenizer of a gpt2 GGUF."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file {path} not found")
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError, IndexError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{path} is not a readable GGUF file (truncated or corrupt?): "
            f"{type(exc).__name__}: {exc}"
        ) from None
    arch = _field(reader, path, gguf.Keys.General.ARCHITECTURE)
    if arch != ARCH_NAME:
        raise ValueError(
            f"{path}: GGUF architecture is {arch!r}; {ARCH_NAME!r} (GPT-2), 'llama' and "
            "'qwen2' load"
        )
    key = lambda k: k.format(arch=arch)  # noqa: E731
    tokens = _field(reader, path, gguf.Keys.Tokenizer.LIST)
    config = GPT2Config(
        vocab_size=len(tokens),
        block_size=int(_field(reader, path, key(gguf.Keys.LLM.CONTEXT_LENGTH))),
        n_layer=int(_field(reader, path, key(gguf.Keys.LLM.BLOCK_COUNT))),
        n_head=int(_field(reader, path, key(gguf.Keys.Attention.HEAD_COUNT))),
        n_embd=int(_field(reader, path, key(gguf.Keys.LLM.EMBEDDING_LENGTH))),
        # stored as f32: its shortest decimal gives back e.g. 1e-5, not 9.99999974e-06
        ln_eps=float(str(np.float32(_field(reader, path, key(gguf.Keys.Attention.LAYERNORM_EPS))))),
    )
    stored = {t.name: t for t in reader.tensors}
    params: dict[str, np.ndarray] = {}
    for name, shape in param_shapes(config).items():
        target, _, transposed = gguf_name(name)
        if target not in stored:
            raise ValueError(f"{path}: tensor {target!r} (our {name}) is missing")
        value = _dequantized(stored[target])
        value = np.ascontiguousarray(value.T if transposed else value)
        if name == PREFIX + "wte.weight" and value.shape[0] != shape[0]:
            raise ValueError(
                f"{path}: vocabulary size mismatch: the tokenizer has {len(tokens)} tokens but "
                f"tensor {target!r} has {value.shape[0]} rows"
            )
        if value.shape != shape:
            raise ValueError(
                f"{path}: tensor {target!r} has shape {value.shape} (HF layout), expected "
                f"{shape} from the metadata's sizes"
            )
        params[name] = value
    if OUTPUT in stored and not np.array_equal(
        _dequantized(stored[OUTPUT]), params[PREFIX + "wte.weight"]
    ):
        raise ValueError(
            f"{path}: {OUTPUT} differs from the token embedding, but GPT-2 ties them; "
            "untied heads are not supported"
        )
    return params, config, _tokenizer(tokens)


def _dequantized(tensor) -> np.ndarray:
    shape = tuple(int(d) for d in reversed(tensor.shape))  # numpy order
    data = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    return np.asarray(data, dtype=np.float32).reshape(shape)


def _tokenizer(tokens: list[str]) -> Tokenizer | None:
    """GPT-2 BPE or a char vocabulary, recognised from the token list; else None."""
    if len(tokens) == GPT2_VOCAB_SIZE and tokens == gpt2_from_tiktoken().tokens:
        return GPT2Tokenizer()
    return char_tokenizer_from_vocab(tokens)
