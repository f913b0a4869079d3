"""A SentencePiece vocabulary back from GGUF metadata (io/sentencepiece_model.py, through
io/gguf_llama.py): the model we serialize by hand loads in the ``sentencepiece`` package
and tokenizes as the model its trainer wrote (Llama 2's settings: BPE, byte fallback,
identity normalization, spaces kept). llama.cpp's ids on the same GGUF:
test_llama_gguf.py."""

from __future__ import annotations

import io
from pathlib import Path

import gguf
import pytest

from pyggml_train import ggml as G
from pyggml_train.config import LlamaConfig
from pyggml_train.io import export_model
from pyggml_train.io.sentencepiece_model import sentencepiece_model
from pyggml_train.llama import Llama
from pyggml_train.models import load_model
from pyggml_train.tokenizer import SentencePieceTokenizer

sentencepiece = pytest.importorskip("sentencepiece")

TEXT = (
    "First Citizen: Before we proceed any further, hear me speak.\n"
    "All: Speak, speak.\tcafé naïve 東京 🙂   three spaces\n"
) * 4
PROBE = TEXT + "Numbers 1234567, it's\n\n  ok  Ω≈ 𝄞 unseen: жёлтый"


@pytest.fixture(scope="module")
def trained() -> SentencePieceTokenizer:
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(TEXT.splitlines()), model_writer=model, vocab_size=400,
        model_type="bpe", byte_fallback=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, character_coverage=1.0, minloglevel=2,
    )  # fmt: skip
    return SentencePieceTokenizer(model.getvalue())


def export(path: Path, tok: SentencePieceTokenizer) -> Path:
    config = LlamaConfig(
        vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_kv_head=1, n_embd=16,
        d_ff=32,
    )  # fmt: skip
    model = Llama(config, ctx=G.Context(threads=2))
    return export_model(path, "gguf", model.state_dict(), config, tok)


def test_gguf_sentencepiece_vocabulary_comes_back_as_the_trained_model(trained, tmp_path):
    back = load_model(export(tmp_path / "m.gguf", trained)).tokenizer
    assert back.name == "sentencepiece"
    sp, want = back.sp, trained.sp
    assert sp.get_piece_size() == want.get_piece_size()
    for i in range(want.get_piece_size()):
        assert sp.id_to_piece(i) == want.id_to_piece(i) and sp.get_score(i) == want.get_score(i)
        assert (sp.is_byte(i), sp.is_control(i), sp.is_unknown(i)) == (
            want.is_byte(i), want.is_control(i), want.is_unknown(i),
        )  # fmt: skip
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id()) == (want.unk_id(), want.bos_id(), want.eos_id())
    ids = trained.encode(PROBE).tolist()
    assert back.encode(PROBE).tolist() == ids  # byte fallback for the unseen characters too
    assert back.decode(ids) == PROBE


def test_space_prefix_follows_the_gguf_key(trained):
    """tokenizer.ggml.add_space_prefix false: no '▁' before the first word."""
    sp = trained.sp
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    scores = [sp.get_score(i) for i in range(sp.get_piece_size())]
    types = [
        gguf.TokenType.UNKNOWN if sp.is_unknown(i) else gguf.TokenType.CONTROL
        if sp.is_control(i) else gguf.TokenType.BYTE if sp.is_byte(i) else gguf.TokenType.NORMAL
        for i in range(sp.get_piece_size())
    ]  # fmt: skip
    kept = SentencePieceTokenizer(sentencepiece_model(pieces, scores, types, 0, 1, 2, True))
    bare = SentencePieceTokenizer(sentencepiece_model(pieces, scores, types, 0, 1, 2, False))
    assert kept.encode("First").tolist() == trained.encode("First").tolist()
    assert sp.id_to_piece(int(kept.encode("First")[0])).startswith("▁")
    assert not sp.id_to_piece(int(bare.encode("First")[0])).startswith("▁")
    with pytest.raises(ValueError, match="one each"):
        sentencepiece_model(pieces, scores[:-1], types, 0)


def test_a_vocabulary_sentencepiece_cannot_serve_names_the_file_to_load(trained, tmp_path):
    """No unknown piece: sentencepiece refuses such a model, so the error says to load the
    HF directory's tokenizer.model."""
    path = export(tmp_path / "m.gguf", trained)
    raw = bytearray(path.read_bytes())
    reader = gguf.GGUFReader(path)
    field = reader.get_field(gguf.Keys.Tokenizer.TOKEN_TYPE)
    unk = field.parts[field.data[0]]  # piece 0's type, rewritten in place as normal
    offset = unk.ctypes.data - reader.data.ctypes.data
    assert raw[offset] == gguf.TokenType.UNKNOWN
    raw[offset] = gguf.TokenType.NORMAL
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="tokenizer.model"):
        load_model(broken)
