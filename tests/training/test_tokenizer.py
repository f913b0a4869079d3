"""Char and GPT-2 tokenizers: round trips, known ids, saved form, clear errors."""

import numpy as np
import pytest
from helpers.env import SHARED

from pyggml_train.tokenizer import (
    CharTokenizer,
    GPT2Tokenizer,
    Tokenizer,
    get_tokenizer,
    tokenizer_from_dict,
)

DATA = SHARED / "data"


def test_char_vocab_is_sorted_set_and_ids_follow_it() -> None:
    tok = get_tokenizer("char", text="hello world")
    assert isinstance(tok, Tokenizer)
    assert tok.chars == " dehlorw" and tok.vocab_size == 8
    ids = tok.encode("hold")
    assert ids.dtype == np.int32
    assert ids.tolist() == [" dehlorw".index(c) for c in "hold"]
    assert tok.decode(ids) == "hold"


def test_char_round_trip_on_shakespeare_and_unicode() -> None:
    text = (DATA / "tinyshakespeare.txt").read_text()
    tok = CharTokenizer.from_text(text)
    assert tok.vocab_size == 65  # the well-known size of tiny shakespeare's alphabet
    ids = tok.encode(text)
    assert len(ids) == len(text) and tok.decode(ids) == text
    uni = CharTokenizer.from_text("naïve café 日本 🙂")
    assert uni.decode(uni.encode("café 🙂")) == "café 🙂"


def test_char_unknown_character_is_named() -> None:
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"'z' \(U\+007A\) at position 2 .*rebuild"):
        tok.encode("abz")
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([3])


def test_saved_form_rebuilds_same_tokenizer() -> None:
    tok = CharTokenizer.from_text("to be or not")
    again = tokenizer_from_dict(tok.to_dict())
    assert isinstance(again, CharTokenizer) and again.chars == tok.chars
    assert isinstance(tokenizer_from_dict({"type": "gpt2"}), GPT2Tokenizer)
    with pytest.raises(ValueError, match="unknown tokenizer type"):
        tokenizer_from_dict({"type": "bytes"})


def test_gpt2_known_ids() -> None:
    tok = get_tokenizer("gpt2")
    assert tok.vocab_size == 50257 and tok.eot_token == 50256
    # published GPT-2 ids: "Hello" 15496, "," 11, " world" 995
    assert tok.encode("Hello, world").tolist() == [15496, 11, 995]
    assert tok.decode([15496, 11, 995]) == "Hello, world"
    assert tok.encode("<|endoftext|>").tolist() != [50256]  # literal text, not the control token


def test_gpt2_token_count_of_tiny_shakespeare() -> None:
    text = (DATA / "tinyshakespeare.txt").read_text()
    assert len(get_tokenizer("gpt2").encode(text)) == 338025


@pytest.fixture
def offline_tiktoken(tmp_path, monkeypatch) -> None:
    """tiktoken with an empty cache and no network."""
    import tiktoken.load
    import tiktoken.registry

    def no_network(url: str) -> bytes:
        raise ConnectionError(f"no route to {url}")

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    monkeypatch.setattr(tiktoken.load, "read_file", no_network)


def test_gpt2_offline_error_says_what_to_do(offline_tiktoken) -> None:
    with pytest.raises(OSError, match="set TIKTOKEN_CACHE_DIR.*go online"):
        GPT2Tokenizer()


def test_gpt2_offline_error_is_one_cli_line(offline_tiktoken, capsys) -> None:
    """The CLI (e.g. export --tokenizer gpt2 offline) reports it without a traceback."""
    import argparse

    from pyggml_train.cli import run_command

    def load_tokenizer(args: argparse.Namespace) -> int:
        GPT2Tokenizer()
        return 0

    assert run_command("pyggml-train export", load_tokenizer, argparse.Namespace()) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyggml-train export: error: could not load the GPT-2 BPE files")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_get_tokenizer_errors() -> None:
    with pytest.raises(ValueError, match="pass text="):
        get_tokenizer("char")
    with pytest.raises(ValueError, match="unknown tokenizer"):
        get_tokenizer("sentencepiece")
