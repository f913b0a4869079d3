"""Tokenizers: a character vocabulary built from the data, GPT-2 BPE via tiktoken, and
Hugging Face tokenizer.json files via the tokenizers package, SentencePiece models via
sentencepiece.

They share one small protocol so the trainer, the data preparation and the
checkpoint code never care which one is in use; ``to_dict`` is what gets saved
next to a model so sampling later decodes with the same vocabulary.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

import numpy as np

GPT2_VOCAB_SIZE = 50257


@runtime_checkable
class Tokenizer(Protocol):
    """What the rest of the package needs from a tokenizer."""

    name: str

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> np.ndarray:
        """Token ids of text as a 1-D int32 array."""
        ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description that from_dict/tokenizer_from_dict can rebuild."""
        ...


class CharTokenizer:
    """One token per distinct character; ids follow the sorted code points."""

    name = "char"

    def __init__(self, chars: str) -> None:
        if not chars:
            raise ValueError("a char tokenizer needs at least one character")
        if sorted(set(chars)) != list(chars):
            raise ValueError("chars must be distinct and sorted (use CharTokenizer.from_text)")
        self.chars = chars
        # sorted code points let encode map a whole text with one searchsorted
        self._codes = np.array([ord(c) for c in chars], dtype=np.uint32)  # (V,)

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """Vocabulary = the sorted set of characters occurring in text."""
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # (N,)
        ids = np.searchsorted(self._codes, codes)  # (N,)
        known = self._codes[np.minimum(ids, len(self._codes) - 1)] == codes
        if not known.all():
            pos = int(np.argmin(known))
            raise ValueError(
                f"character {text[pos]!r} (U+{ord(text[pos]):04X}) at position {pos} is not in "
                f"this char tokenizer's {self.vocab_size}-character vocabulary, which was built "
                "from the training text; rebuild the tokenizer from text that contains it"
            )
        return ids.astype(np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        out = []
        for i in ids:
            if not 0 <= int(i) < len(self.chars):
                raise ValueError(f"token id {int(i)} out of range for vocab_size {self.vocab_size}")
            out.append(self.chars[int(i)])
        return "".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.name, "chars": self.chars}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CharTokenizer:
        return cls(data["chars"])


class GPT2Tokenizer:
    """GPT-2's byte-level BPE (50257 tokens) through tiktoken."""

    name = "gpt2"

    def __init__(self) -> None:
        try:
            import tiktoken
        except ImportError:
            raise ImportError("the GPT-2 tokenizer needs tiktoken: pip install tiktoken") from None
        try:
            self._enc = tiktoken.get_encoding("gpt2")
        except Exception as exc:  # tiktoken raises network errors of several libraries
            # an OSError (files not reachable), so the CLI reports it in one line
            raise OSError(
                "could not load the GPT-2 BPE files (tiktoken 'gpt2' encoding): "
                f"{type(exc).__name__}: {exc}. Offline, set TIKTOKEN_CACHE_DIR to a directory "
                "holding tiktoken's cached GPT-2 files; or go online once so tiktoken can "
                "download and cache them"
            ) from exc

    @property
    def vocab_size(self) -> int:
        return self._enc.n_vocab

    @property
    def eot_token(self) -> int:
        """The <|endoftext|> id (50256), a natural document separator and sampling prompt."""
        return self._enc.eot_token

    def encode(self, text: str) -> np.ndarray:
        # encode_ordinary: a literal "<|endoftext|>" in a corpus is text, not a control token
        return np.asarray(self._enc.encode_ordinary(text), dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        return self._enc.decode([int(i) for i in ids])

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.name}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPT2Tokenizer:
        return cls()


class HFTokenizer:
    """A Hugging Face ``tokenizer.json`` (any model: Llama, Qwen2, SmolLM2, ...) through the
    ``tokenizers`` package; the JSON text is what gets saved, so a checkpoint carries it."""

    name = "hf"

    def __init__(self, json_text: str) -> None:
        try:
            from tokenizers import Tokenizer as _Tokenizer
        except ImportError:
            raise ImportError(
                "a tokenizer.json needs the tokenizers package: pip install tokenizers"
            ) from None
        self.json_text = json_text
        self._tok = _Tokenizer.from_str(json_text)

    @property
    def vocab_size(self) -> int:
        """Ids the tokenizer can emit (added tokens included)."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> np.ndarray:
        # no BOS/EOS: the data pipeline sees plain text, as with the other tokenizers
        ids = self._tok.encode(text, add_special_tokens=False).ids
        return np.asarray(ids, dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.name, "json": self.json_text}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HFTokenizer:
        return cls(data["json"])


class SentencePieceTokenizer:
    """A SentencePiece model (an HF directory's ``tokenizer.model``, Llama 2's kind) through
    the ``sentencepiece`` package; the model's bytes are saved (base64) with checkpoints."""

    name = "sentencepiece"

    def __init__(self, model: bytes) -> None:
        try:
            import sentencepiece
        except ImportError:
            raise ImportError(
                "a tokenizer.model needs the sentencepiece package: pip install sentencepiece"
            ) from None
        self.model = model
        self.sp = sentencepiece.SentencePieceProcessor(model_proto=model)

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.sp.encode(text), dtype=np.int32)  # no BOS, as the others

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([int(i) for i in ids])

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.name, "model": base64.b64encode(self.model).decode("ascii")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SentencePieceTokenizer:
        return cls(base64.b64decode(data["model"]))


def tokenizer_from_dict(data: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer saved with to_dict (e.g. from a checkpoint's metadata)."""
    kind = data.get("type")
    if kind == "char":
        return CharTokenizer.from_dict(data)
    if kind == "gpt2":
        return GPT2Tokenizer.from_dict(data)
    if kind == "hf":
        return HFTokenizer.from_dict(data)
    if kind == "sentencepiece":
        return SentencePieceTokenizer.from_dict(data)
    raise ValueError(
        f"unknown tokenizer type {kind!r} in saved data; expected 'char', 'gpt2', 'hf' or "
        "'sentencepiece'"
    )


def get_tokenizer(name: str, text: str | None = None) -> Tokenizer:
    """Build a tokenizer by name; 'char' needs the text its vocabulary comes from."""
    if name == "gpt2":
        return GPT2Tokenizer()
    if name == "char":
        if text is None:
            raise ValueError("the 'char' tokenizer builds its vocabulary from the data: pass text=")
        return CharTokenizer.from_text(text)
    raise ValueError(f"unknown tokenizer {name!r}; expected 'char' or 'gpt2'")
