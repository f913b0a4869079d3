"""Byte-level BPE tables for the files we write: GPT-2's vocabulary and merges, and a
byte-level BPE that reproduces a char tokenizer.

Byte-level BPE (GPT-2, llama.cpp's ``gpt2`` tokenizer model, HF's vocab.json) spells every
byte as one printable character (``bytes_to_unicode``) and builds tokens by merging
adjacent symbols, lowest merge rank first, starting from one symbol per byte.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from ..tokenizer import GPT2_VOCAB_SIZE, CharTokenizer

GPT2_EOT = "<|endoftext|>"


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> character table: printable bytes map to themselves, the rest to
    code points from 256 up, so every token is printable text without spaces."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def spell(data: bytes) -> str:
    """The byte-level spelling of raw bytes."""
    table = bytes_to_unicode()
    return "".join(table[b] for b in data)


def unspell(token: str) -> bytes:
    """Inverse of :func:`spell`."""
    inverse = {c: b for b, c in bytes_to_unicode().items()}
    return bytes(inverse[c] for c in token)


@dataclass(frozen=True)
class BPEVocab:
    """tokens[i] is token i's byte-level spelling; merges are "left right" in rank order;
    control lists the ids that are control tokens (not text)."""

    tokens: list[str]
    merges: list[str]
    control: tuple[int, ...] = ()


def gpt2_from_files(vocab_bpe: str | Path, encoder_json: str | Path) -> BPEVocab:
    """GPT-2's BPE from its two files: encoder.json (token -> id) and vocab.bpe (merges)."""
    encoder = json.loads(Path(encoder_json).read_text(encoding="utf-8"))
    tokens = sorted(encoder, key=encoder.__getitem__)
    if len(tokens) != GPT2_VOCAB_SIZE or [encoder[t] for t in tokens] != list(range(len(tokens))):
        raise ValueError(
            f"{encoder_json}: expected GPT-2's {GPT2_VOCAB_SIZE} tokens with ids "
            f"0..{GPT2_VOCAB_SIZE - 1}, got {len(tokens)} tokens"
        )
    lines = Path(vocab_bpe).read_text(encoding="utf-8").splitlines()
    merges = [line for line in lines if line and not line.startswith("#version")]
    return BPEVocab(tokens, merges, (encoder[GPT2_EOT],))


@functools.cache
def gpt2_from_tiktoken() -> BPEVocab:
    """GPT-2's BPE rebuilt from tiktoken's cached ranks (the same files, already parsed):
    a token of rank r is the merge of the two parts BPE makes of it using ranks below r."""
    from ..tokenizer import GPT2Tokenizer

    enc = GPT2Tokenizer()._enc
    ranks: dict[bytes, int] = enc._mergeable_ranks
    tokens = [""] * enc.n_vocab
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        tokens[rank] = spell(token)
        if len(token) > 1:
            left, right = _last_merge(token, rank, ranks)
            merges.append(f"{spell(left)} {spell(right)}")
    tokens[enc.eot_token] = GPT2_EOT
    return BPEVocab(tokens, merges, (enc.eot_token,))


def _last_merge(token: bytes, rank: int, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 2:
        pairs = [(ranks.get(parts[i] + parts[i + 1], rank), i) for i in range(len(parts) - 1)]
        best, i = min(pairs)
        if best >= rank:
            break
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    if len(parts) != 2:
        raise ValueError(f"tiktoken's GPT-2 ranks don't build token {token!r} by one merge")
    return parts[0], parts[1]


def char_vocab(tokenizer: CharTokenizer) -> BPEVocab:
    """A byte-level BPE that tokenizes text exactly as ``tokenizer``: one token per
    character, spelled by its UTF-8 bytes. Merges rebuild each multi-byte character from
    its lead byte: (b1, b2), (b1b2, b3), ...; a merge's left part always starts with a lead
    byte and its right part is a continuation byte, so no merge spans two characters and
    every known character ends as exactly one symbol."""
    tokens, merges, seen = [], [], set()
    for ch in tokenizer.chars:
        try:
            data = ch.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                f"char vocabulary holds {ch!r} (U+{ord(ch):04X}), which has no UTF-8 form, so "
                "llama.cpp cannot represent it; retrain on text without lone surrogates"
            ) from None
        tokens.append(spell(data))
        for k in range(1, len(data)):
            merge = f"{spell(data[:k])} {spell(data[k : k + 1])}"
            if merge not in seen:
                seen.add(merge)
                merges.append(merge)
    if not merges:
        # llama.cpp refuses a BPE vocabulary without merges (an all-ASCII char vocabulary
        # needs none): add one that never applies, as 0xFF occurs in no UTF-8 text
        never = spell(b"\xff")
        merges.append(f"{never} {never}")
    return BPEVocab(tokens, merges)


def char_tokenizer_from_vocab(tokens: list[str]) -> CharTokenizer | None:
    """The char tokenizer a vocabulary of single characters spells, else None."""
    try:
        chars = [unspell(t).decode("utf-8") for t in tokens]
    except (KeyError, UnicodeDecodeError):
        return None
    if not all(len(c) == 1 for c in chars) or sorted(set(chars)) != chars:
        return None
    return CharTokenizer("".join(chars))
