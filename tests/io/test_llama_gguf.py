"""llama.cpp (llama-cpp-python) runs our GGUF exports of Llama and Qwen2 (random models
written with transformers, as tests/test_llama.py's) as it runs a converted HF model:

- its token ids equal ours on a text with ASCII, accents, CJK, emoji, newlines, tabs and
  runs of spaces (a byte-level BPE tokenizer.json, GPT-2's pre-tokenizer);
- its logits on a 64-token prompt lie within 1e-2 of ours for an f32 file (this proves
  the Q/K row order of the ``llama`` architecture, whose rope pairs adjacent elements);
- greedy decoding of 32 tokens gives our tokens;
- f16, bf16 and q8_0 files load and stay within the rounding of their weights;
- a GGUF written by llama.cpp's own convert_hf_to_gguf.py (the llama-cpp-python sdist
  ships it: point PYGGML_LLAMA_CPP_CONVERTER at the script) imports with logits within
  1e-4 of transformers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from helpers.env import child_env, require
from helpers.llama import CASES, LOGITS_ATOL, TEXT, train_tokenizer, write_hf_model
from helpers.llamacpp import llama, llama_logits

from pyggml_train import ggml as G
from pyggml_train.config import LlamaConfig
from pyggml_train.io import export_model
from pyggml_train.io.gguf_llama import PRE_TOKENIZERS, pair_rows
from pyggml_train.llama import Llama
from pyggml_train.models import load_model
from pyggml_train.sample import KVCacheDecoder, generate
from pyggml_train.tokenizer import HFTokenizer

pytestmark = pytest.mark.slow  # runs llama.cpp and its converter

LLAMA_CPP_VERSION = "0.3.36"  # the one scripts/install_test_components.sh installs
PROMPT, NEW = 64, 32
# max |llama.cpp - ours| (logit scale ~4.5); measured f32 5.7e-6, 1.8e-6; f16 1.6e-2, 6.5e-3;
# bf16 9.5e-2, 5.8e-2; q8_0 2.0e-1, 1.7e-1 (llama, qwen2). Rounded weights vs our f32.
LOGIT_TOL = {"f32": 1e-2, "f16": 5e-2, "bf16": 2e-1, "q8_0": 4e-1}


@pytest.fixture(scope="module", params=sorted(CASES))
def model(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    write_hf_model(path, request.param)
    return load_model(path, G.Context(threads=2))


def test_pair_rows_moves_half_split_rows_to_adjacent_pairs():
    rows = np.arange(8)[:, None] * np.ones((1, 3))  # 2 heads of 4 rows
    assert pair_rows(rows, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16", "q8_0"])
def test_llama_cpp_tokenizes_and_computes_like_us(model, tmp_path, dtype):
    path = export_model(
        tmp_path / f"m-{dtype}.gguf",
        "gguf",
        model.state_dict(),
        model.config,
        model.tokenizer,
        dtype,
    )
    llm = llama(path)
    ids = model.tokenizer.encode(TEXT).tolist()
    assert llm.tokenize(TEXT.encode(), add_bos=False, special=False) == ids
    prompt = ids[:PROMPT]
    got = llama_logits(llm, prompt)  # (T, V)
    ours = model.forward(np.array([prompt]))[0]  # (T, V)
    err = np.abs(got - ours).max()
    print(
        f"{model.config.model_type} {dtype}: logit scale {np.abs(ours).max():.1f}, "
        f"max |llama.cpp - ours| {err:.2e}"
    )
    assert err < LOGIT_TOL[dtype]


def test_llama_cpp_greedy_generation_equals_ours(model, tmp_path):
    path = export_model(
        tmp_path / "m.gguf", "gguf", model.state_dict(), model.config, model.tokenizer, "f32"
    )
    llm = llama(path)
    prompt = model.tokenizer.encode(TEXT).tolist()[:PROMPT]
    ours = generate(KVCacheDecoder(model), prompt, NEW, temperature=0.0)[PROMPT:]
    theirs = []
    llm.reset()
    llm.eval(prompt)
    for _ in range(NEW):
        theirs.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval([theirs[-1]])
    assert theirs == ours


def test_round_trip_hf_ours_gguf_ours_hf_is_bit_exact(model, tmp_path):
    """f32: HF -> ours -> GGUF -> ours -> HF keeps every weight, the config and the ids."""
    gguf_path = export_model(
        tmp_path / "m.gguf", "gguf", model.state_dict(), model.config, model.tokenizer, "f32"
    )
    back = load_model(gguf_path)
    assert back.config == model.config
    hf_dir = export_model(tmp_path / "hf", "hf", back.state_dict(), back.config, back.tokenizer)
    again = load_model(hf_dir)
    want = model.state_dict()
    for name, value in again.state_dict().items():
        assert np.array_equal(value, want[name]), name
    assert back.tokenizer.encode(TEXT).tolist() == model.tokenizer.encode(TEXT).tolist()
    assert back.tokenizer.decode(back.tokenizer.encode(TEXT)) == TEXT


@pytest.mark.parametrize("dtype", ["f16", "bf16", "q8_0"])
def test_rounded_gguf_imports_within_its_rounding(model, tmp_path, dtype):
    path = export_model(
        tmp_path / "m.gguf", "gguf", model.state_dict(), model.config, model.tokenizer, dtype
    )
    back = load_model(path)
    idx = np.array([model.tokenizer.encode(TEXT).tolist()[:PROMPT]])
    assert np.abs(back.forward(idx) - model.forward(idx)).max() < LOGIT_TOL[dtype]


# the converter names the pre-tokenizer from a hash of a known model's tokens; the tests'
# tokenizer is trained here, so the run tells it the pre-tokenizer (GPT-2's regex)
CONVERT = """
import sys
script, model, out = sys.argv[1:]
root = __import__("pathlib").Path(script).parent
sys.path[:0] = [str(root), str(root / "gguf-py")]
import conversion.base
conversion.base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
sys.argv = [script, model, "--outfile", out, "--outtype", "f32"]
import convert_hf_to_gguf
convert_hf_to_gguf.main()
"""


# where scripts/install_test_components.sh unpacks llama.cpp's converter
CONVERTER = (
    Path(os.environ.get("PYGGML_CACHE_DIR") or Path.home() / ".cache" / "pyggml_train")
    / f"llama-cpp-converter-{LLAMA_CPP_VERSION}"
    / "convert_hf_to_gguf.py"
)


@pytest.mark.parametrize("case", sorted(CASES))
def test_llama_cpp_converter_output_imports(tmp_path, case):
    script = os.environ.get("PYGGML_LLAMA_CPP_CONVERTER") or str(CONVERTER)
    require(
        Path(script).is_file(),
        f"llama.cpp's convert_hf_to_gguf.py is not at {script}: scripts/install_test_components.sh "
        "unpacks it from the llama-cpp-python sdist (or set PYGGML_LLAMA_CPP_CONVERTER)",
    )
    hf = write_hf_model(tmp_path / "hf", case)
    out = tmp_path / "converted.gguf"
    done = subprocess.run(
        [sys.executable, "-c", CONVERT, script, str(tmp_path / "hf"), str(out)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ours = load_model(out)
    assert ours.config.model_type == case
    idx = np.array([ours.tokenizer.encode(TEXT).tolist()[:PROMPT]])
    assert idx.tolist() == [hf_ids(tmp_path / "hf")[:PROMPT]]
    with torch.no_grad():
        want = hf(torch.from_numpy(idx).long()).logits.numpy()
    assert np.abs(ours.forward(idx) - want).max() <= LOGITS_ATOL


def hf_ids(path: Path) -> list[int]:
    return transformers.PreTrainedTokenizerFast(tokenizer_file=str(path / "tokenizer.json"))(
        TEXT, add_special_tokens=False
    )["input_ids"]


@pytest.mark.parametrize("pre", ["gpt-2", "smollm", "qwen2"])
def test_llama_cpp_splits_text_as_each_pre_tokenizer_does(tmp_path, pre):
    """SmolLM2's (digits, then GPT-2's regex) and Qwen2's (its split regex) pre-tokenizers:
    llama.cpp's ids on a GGUF we export equal ours, and so do the ids of the tokenizer we
    rebuild from that GGUF's metadata."""
    spec = json.loads(train_tokenizer().to_str())
    spec["pre_tokenizer"] = PRE_TOKENIZERS[pre]
    tok = HFTokenizer(json.dumps(spec))
    config = LlamaConfig(
        vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_kv_head=1, n_embd=16,
        d_ff=32,
    )  # fmt: skip
    model = Llama(config, ctx=G.Context(threads=2))
    path = export_model(tmp_path / "m.gguf", "gguf", model.state_dict(), config, tok)
    text = TEXT + "Numbers 1234567 and 3.14159; it's THEY'LL we've\r\n\n\n   ok 42x\n"
    ids = tok.encode(text).tolist()
    assert llama(path).tokenize(text.encode(), add_bos=False, special=False) == ids
    assert load_model(path).tokenizer.encode(text).tolist() == ids


def test_sentencepiece_vocabulary_tokenizes_as_llama_cpp_does(tmp_path):
    """An HF directory with a tokenizer.model (SentencePiece BPE with byte fallback, Llama
    2's settings: no normalization, spaces kept) loads through sentencepiece; llama.cpp's
    ids on our GGUF export (tokenizer.ggml.model 'llama') equal ours, and so do the ids of
    the SentencePiece model we rebuild from that GGUF's metadata."""
    import io

    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(TEXT.splitlines()), model_writer=model, vocab_size=400,
        model_type="bpe", byte_fallback=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, character_coverage=1.0,
    )  # fmt: skip
    hf = tmp_path / "hf"
    write_hf_model(hf, "llama")
    (hf / "tokenizer.json").unlink()
    (hf / "tokenizer.model").write_bytes(model.getvalue())
    loaded = load_model(hf)  # the random weights' vocabulary is the BPE's; only ids matter
    tok = loaded.tokenizer
    assert tok.name == "sentencepiece"
    config = LlamaConfig(
        vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_kv_head=1, n_embd=16,
        d_ff=32,
    )  # fmt: skip
    small = Llama(config, ctx=G.Context(threads=2))
    path = export_model(tmp_path / "m.gguf", "gguf", small.state_dict(), config, tok)
    text = TEXT + "Numbers 1234567, it's\n\n  ok"
    ids = tok.encode(text).tolist()
    assert llama(path).tokenize(text.encode(), add_bos=False, special=False) == ids
    assert tok.decode(ids) == text
    rebuilt = load_model(path).tokenizer
    assert rebuilt.name == "sentencepiece"
    assert rebuilt.encode(text).tolist() == ids and rebuilt.decode(ids) == text
