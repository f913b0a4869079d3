"""The HF export of a char-level model carries a tokenizer transformers loads and that
encodes exactly as ours (issue 21 item 9), and no GPT-2 special ids outside its vocabulary."""

import json

import pytest
from helpers.env import require

from pyggml_train.config import GPT2Config
from pyggml_train.hf_gpt2 import init_params
from pyggml_train.io import export_model
from pyggml_train.tokenizer import CharTokenizer

TEXT = "ROMEO:\nWherefore art thou, Romeo?  日本語 🙂 tabs\tand   runs of spaces.\n"
CHARS = CharTokenizer.from_text(TEXT + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
CFG = GPT2Config(vocab_size=CHARS.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32)


@pytest.fixture(scope="module")
def transformers():
    try:
        import transformers
    except ImportError:
        transformers = None
    require(transformers is not None, "transformers missing: pip install '.[test]'")
    return transformers


def test_autotokenizer_encodes_and_decodes_as_ours(tmp_path, transformers, capfd):
    export_model(tmp_path / "hf", "hf", init_params(CFG, seed=0), CFG, CHARS)
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    for text in ("ROMEO:", TEXT, " leading and trailing  ", "\n\n"):
        ids = tok.encode(text)
        assert ids == CHARS.encode(text).tolist(), text
        assert tok.decode(ids) == text
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    assert model.config.bos_token_id is None and model.config.eos_token_id is None
    assert "outside" not in capfd.readouterr().err  # no warning about id 50256


def test_the_gpt2_bpe_export_keeps_endoftext_as_bos_and_eos(tmp_path):
    from pyggml_train.tokenizer import GPT2Tokenizer

    cfg = GPT2Config(vocab_size=50257, block_size=8, n_layer=1, n_head=2, n_embd=8)
    export_model(tmp_path / "bpe", "hf", init_params(cfg, seed=0), cfg, GPT2Tokenizer())
    config = json.loads((tmp_path / "bpe" / "config.json").read_text())
    assert config["bos_token_id"] == config["eos_token_id"] == 50256
    assert not (tmp_path / "bpe" / "tokenizer.json").exists()  # vocab.json + merges.txt
