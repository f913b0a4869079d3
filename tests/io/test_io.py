"""Weights in and out (pyggml_train/io/): llm.c, GGUF and HF files, checked against the
formats' specs and each other; bad files get one clear error and leave no output.

llama.cpp itself runs our GGUF files in test_llama_cpp.py."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from helpers.env import SHARED, child_env, require

from pyggml_train import ggml as G
from pyggml_train.config import GPT2Config
from pyggml_train.gpt2 import GPT2
from pyggml_train.hf_gpt2 import init_params
from pyggml_train.io import detect_format, export_model, read_model_file
from pyggml_train.io.bpe import char_vocab, gpt2_from_files, gpt2_from_tiktoken, spell
from pyggml_train.io.gguf import gguf_name, save_gguf
from pyggml_train.io.llmc import MODEL_MAGIC, save_llmc
from pyggml_train.models import load_model
from pyggml_train.tokenizer import CharTokenizer, GPT2Tokenizer

BPE_FILES = (SHARED / "data" / "gpt2-vocab.bpe", SHARED / "data" / "gpt2-encoder.json")
TEXT = "Héllo wörld,\n  日本語 🙂 tabs\tand   runs of spaces.\n"
CHARS = CharTokenizer.from_text(TEXT + "abcdefghijklmnopqrstuvwxyz")
CFG = GPT2Config(vocab_size=CHARS.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=64)
PARAMS = {
    n: (v + np.random.default_rng(1).normal(0, 0.1, v.shape)).astype(np.float32)
    for n, v in init_params(CFG, seed=1).items()
}


@pytest.fixture(scope="module")
def ctx():
    return G.Context("cpu", threads=2)


def files_in(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


# ---- tokenizer tables ------------------------------------------------------------------------
def test_gpt2_bpe_from_tiktoken_equals_the_bpe_files():
    files = gpt2_from_files(
        SHARED / "data" / "gpt2-vocab.bpe", SHARED / "data" / "gpt2-encoder.json"
    )
    cached = gpt2_from_tiktoken()
    assert cached.tokens == files.tokens and len(files.tokens) == 50257
    assert cached.merges == files.merges and len(files.merges) == 50000
    assert cached.control == files.control == (50256,)


def test_char_vocab_spells_each_character_by_its_utf8_bytes():
    vocab = char_vocab(CHARS)
    assert len(vocab.tokens) == CHARS.vocab_size
    assert (
        vocab.tokens[CHARS.chars.index(" ")] == "Ġ" and vocab.tokens[CHARS.chars.index("\n")] == "Ċ"
    )
    # 🙂 = F0 9F 99 82 is rebuilt by three merges from its lead byte
    smile = spell("🙂".encode())
    assert smile in vocab.tokens
    assert [m for m in vocab.merges if m.replace(" ", "") in {smile[:2], smile[:3], smile}] == [
        f"{smile[0]} {smile[1]}",
        f"{smile[:2]} {smile[2]}",
        f"{smile[:3]} {smile[3]}",
    ]
    with pytest.raises(ValueError, match="no UTF-8 form"):
        char_vocab(CharTokenizer("a\ud800"))


# ---- llm.c -----------------------------------------------------------------------------------
def test_llmc_layout_follows_llm_c_and_round_trips_bit_exactly(tmp_path):
    path = save_llmc(tmp_path / "m.bin", PARAMS, CFG)
    raw = path.read_bytes()
    header = np.frombuffer(raw[:1024], "<i4")
    vp = 128  # llm.c pads the vocabulary to a multiple of 128
    assert header[:8].tolist() == [MODEL_MAGIC, 3, 32, CFG.vocab_size, 2, 2, 64, vp]
    floats = np.frombuffer(raw[1024:], "<f4")
    c, v = 64, CFG.vocab_size
    wte = floats[: vp * c].reshape(vp, c)
    np.testing.assert_array_equal(wte[:v], PARAMS["transformer.wte.weight"])
    assert not wte[v:].any()
    # after wte, wpe, ln_1 w/b of both layers: c_attn weights (L, 3C, C), PyTorch's (out, in)
    start = vp * c + 32 * c + 4 * c
    qkv0 = floats[start : start + 3 * c * c].reshape(3 * c, c)
    np.testing.assert_array_equal(qkv0, PARAMS["transformer.h.0.attn.c_attn.weight"].T)

    loaded = read_model_file(path)
    assert loaded.format == "llmc" and loaded.tokenizer is None
    for name, value in PARAMS.items():
        np.testing.assert_array_equal(loaded.params[name], value, err_msg=name)
    again = export_model(tmp_path / "again.bin", "llmc", loaded.params, loaded.config, CHARS)
    assert again.read_bytes() == raw


def test_llmc_bf16_is_version_5_rounded_as_torch_rounds_and_round_trips(tmp_path):
    """llm.c's bf16 checkpoint (gpt2_124M_bf16.bin): the same layout at 2 bytes a value,
    each rounded as torch's .to(bfloat16) rounds it; it loads widened to f32 and exports
    again byte for byte."""
    require(importlib.util.find_spec("torch") is not None, "torch is not installed (test extra)")
    import torch

    def as_bf16(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(torch.bfloat16)

    path = save_llmc(tmp_path / "m_bf16.bin", PARAMS, CFG, "bf16")
    raw = path.read_bytes()
    header = np.frombuffer(raw[:1024], "<i4")
    vp, c, v = 128, 64, CFG.vocab_size
    assert header[:8].tolist() == [MODEL_MAGIC, 5, 32, v, 2, 2, 64, vp]
    assert (
        len(raw) - 1024 == (save_llmc(tmp_path / "f32.bin", PARAMS, CFG).stat().st_size - 1024) // 2
    )
    bits = np.frombuffer(raw[1024:], "<u2")
    wte = as_bf16(PARAMS["transformer.wte.weight"]).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(bits[: v * c].reshape(v, c), wte)
    assert not bits[v * c : vp * c].any()

    loaded = read_model_file(path)
    assert loaded.format == "llmc" and (
        loaded.config.vocab_size,
        loaded.config.padded_vocab_size,
    ) == (v, vp)
    for name, value in PARAMS.items():
        want = as_bf16(value).to(torch.float32).numpy()
        np.testing.assert_array_equal(loaded.params[name], want, err_msg=name)
    again = export_model(
        tmp_path / "again.bin", "llmc", loaded.params, loaded.config, CHARS, "bf16"
    )
    assert again.read_bytes() == raw


def test_export_dtype_fits_the_format(tmp_path):
    with pytest.raises(ValueError, match=r"--dtype bf16 is for GGUF .* or llm.c \(f32, bf16\)"):
        export_model(tmp_path / "hf", "hf", PARAMS, CFG, CHARS, "bf16")
    with pytest.raises(ValueError, match=r"llm.c checkpoints hold one of \('f32', 'bf16'\)"):
        export_model(tmp_path / "m.bin", "llmc", PARAMS, CFG, CHARS, "q8_0")
    assert not (tmp_path / "m.bin").exists() and not (tmp_path / "hf").exists()


# ---- GGUF ------------------------------------------------------------------------------------
def test_gguf_f32_import_then_export_gives_the_same_tensors(tmp_path):
    first = save_gguf(tmp_path / "a.gguf", PARAMS, CFG, CHARS)
    loaded = read_model_file(first)
    assert loaded.format == "gguf" and loaded.config == CFG
    assert loaded.tokenizer.chars == CHARS.chars
    for name, value in PARAMS.items():
        np.testing.assert_array_equal(loaded.params[name], value, err_msg=name)
    second = save_gguf(tmp_path / "b.gguf", loaded.params, loaded.config, loaded.tokenizer)
    a, b = gguf.GGUFReader(first), gguf.GGUFReader(second)
    assert [t.name for t in a.tensors] == [t.name for t in b.tensors]
    for ta, tb in zip(a.tensors, b.tensors, strict=True):
        assert ta.tensor_type == tb.tensor_type == gguf.GGMLQuantizationType.F32
        np.testing.assert_array_equal(ta.data, tb.data, err_msg=ta.name)
    keys = [k for k in a.fields if k != gguf.Keys.General.NAME]
    assert all(a.fields[k].contents() == b.fields[k].contents() for k in keys)


def test_gguf_names_layout_and_metadata_for_llama_cpp(tmp_path):
    path = save_gguf(tmp_path / "m.gguf", PARAMS, CFG, CHARS)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not the temporary's private 0600
    r = gguf.GGUFReader(path)
    field = lambda k: r.get_field(k.format(arch="gpt2")).contents()  # noqa: E731
    assert field(gguf.Keys.General.ARCHITECTURE) == "gpt2"
    assert field(gguf.Keys.LLM.CONTEXT_LENGTH) == 32
    assert field(gguf.Keys.LLM.EMBEDDING_LENGTH) == 64
    assert field(gguf.Keys.LLM.FEED_FORWARD_LENGTH) == 256
    assert field(gguf.Keys.LLM.BLOCK_COUNT) == 2
    assert field(gguf.Keys.Attention.HEAD_COUNT) == 2
    assert field(gguf.Keys.Attention.LAYERNORM_EPS) == pytest.approx(1e-5)
    assert field(gguf.Keys.Tokenizer.MODEL) == "gpt2"
    assert field(gguf.Keys.Tokenizer.LIST) == char_vocab(CHARS).tokens
    tensors = {t.name: t for t in r.tensors}
    # ggml's ne: {in, out} for Linear weights = HF's Conv1D (in, out) read in numpy as (out, in)
    qkv = tensors["blk.1.attn_qkv.weight"]
    assert list(qkv.shape) == [64, 192]
    np.testing.assert_array_equal(
        qkv.data.reshape(192, 64), PARAMS["transformer.h.1.attn.c_attn.weight"].T
    )
    np.testing.assert_array_equal(tensors["output.weight"].data, tensors["token_embd.weight"].data)
    assert gguf_name("transformer.h.1.mlp.c_proj.weight")[0] == "blk.1.ffn_down.weight"


@pytest.mark.parametrize("dtype", ["f16", "q8_0"])
def test_gguf_f16_and_q8_0_dequantize_on_import(tmp_path, dtype):
    path = save_gguf(tmp_path / "m.gguf", PARAMS, CFG, CHARS, dtype)
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(path).tensors}
    want = gguf.GGMLQuantizationType.F16 if dtype == "f16" else gguf.GGMLQuantizationType.Q8_0
    assert types["blk.0.ffn_up.weight"] == types["token_embd.weight"] == want
    assert (
        types["position_embd.weight"] == types["blk.0.ffn_up.bias"] == gguf.GGMLQuantizationType.F32
    )
    loaded = read_model_file(path)
    for name, value in PARAMS.items():
        got = loaded.params[name]
        if value.ndim == 1 or name == "transformer.wpe.weight":
            np.testing.assert_array_equal(got, value, err_msg=name)
        elif dtype == "f16":
            np.testing.assert_array_equal(got, value.astype(np.float16).astype(np.float32))
        else:
            # q8_0: blocks of 32 along ggml's rows, x ~ q * d with d = max|x| / 127 stored as
            # f16, so |error| <= d/2 + 127 * |d - f16(d)| <= d * (1/2 + 127 * 2^-11)
            rows = value.T if "attn" in name or "mlp" in name else value
            d = np.abs(rows).reshape(rows.shape[0], -1, 32).max(-1, keepdims=True) / 127
            bound = np.repeat(d * (0.5 + 127 * 2**-11), 32, axis=-1).reshape(rows.shape)
            err = np.abs((got.T if rows is not value else got) - rows)
            assert (err <= bound + 1e-7).all(), name


@pytest.mark.slow
def test_gguf_gpt2_vocabulary_comes_back_as_gpt2(tmp_path):
    cfg = GPT2Config(vocab_size=50257, block_size=8, n_layer=1, n_head=1, n_embd=32)
    path = save_gguf(tmp_path / "bpe.gguf", init_params(cfg), cfg, GPT2Tokenizer())
    r = gguf.GGUFReader(path)
    files = gpt2_from_files(
        SHARED / "data" / "gpt2-vocab.bpe", SHARED / "data" / "gpt2-encoder.json"
    )
    assert r.get_field(gguf.Keys.Tokenizer.MERGES).contents() == files.merges
    types = r.get_field(gguf.Keys.Tokenizer.TOKEN_TYPE).contents()
    assert types[50256] == gguf.TokenType.CONTROL and set(types[:50256]) == {gguf.TokenType.NORMAL}
    assert r.get_field(gguf.Keys.Tokenizer.EOS_ID).contents() == 50256
    assert isinstance(read_model_file(path).tokenizer, GPT2Tokenizer)


# ---- Hugging Face ----------------------------------------------------------------------------
def test_hf_export_carries_the_tokenizer(tmp_path):
    out = export_model(tmp_path / "char", "hf", PARAMS, CFG, CHARS)
    assert files_in(out) == [
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"
    ]  # fmt: skip
    assert read_model_file(out).tokenizer.chars == CHARS.chars
    cfg = GPT2Config(vocab_size=50257, block_size=8, n_layer=1, n_head=1, n_embd=32)
    bpe = export_model(tmp_path / "bpe", "hf", init_params(cfg), cfg, GPT2Tokenizer())
    assert files_in(bpe) == ["config.json", "merges.txt", "model.safetensors", "vocab.json"]
    encoder = json.loads((SHARED / "data" / "gpt2-encoder.json").read_text(encoding="utf-8"))
    assert json.loads((bpe / "vocab.json").read_text(encoding="utf-8")) == encoder
    merges = (bpe / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]
    shared = (SHARED / "data" / "gpt2-vocab.bpe").read_text(encoding="utf-8").splitlines()[1:]
    assert merges == [m for m in shared if m]
    assert isinstance(read_model_file(bpe).tokenizer, GPT2Tokenizer)


@pytest.mark.slow
def test_hf_export_loads_in_transformers_with_the_same_logits(tmp_path, ctx):
    try:
        import torch
        import transformers
    except ImportError:
        torch = transformers = None
    require(transformers is not None, "transformers + torch missing: pip install '.[test]'")
    out = export_model(tmp_path / "hf", "hf", PARAMS, CFG, CHARS)
    hf = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    idx = CHARS.encode(TEXT)[None, :32].astype(np.int64)  # (1, 32)
    with torch.no_grad():
        want = hf(torch.from_numpy(idx)).logits.numpy()  # (1, T, V)
    got = GPT2(CFG, params=PARAMS, ctx=ctx).forward(idx)
    assert np.abs(got - want).max() < 1e-4


# ---- import into the model -------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["checkpoint", "hf", "llmc", "gguf"])
def test_from_pretrained_reads_every_format(tmp_path, ctx, fmt):
    if fmt == "checkpoint":
        from pyggml_train.checkpoint import Checkpoint, save_checkpoint
        from pyggml_train.config import TrainConfig

        path = save_checkpoint(
            tmp_path / "c.npz",
            Checkpoint(0, CFG, TrainConfig(block_size=16), CHARS.to_dict(), PARAMS),
        )
    else:
        name = {"hf": "hf", "llmc": "m.bin", "gguf": "m.gguf"}[fmt]
        path = export_model(tmp_path / name, fmt, PARAMS, CFG, CHARS)
    assert detect_format(path) == fmt
    model = load_model(path, ctx=ctx)
    if fmt != "llmc":  # llm.c files carry no tokenizer
        assert model.tokenizer.chars == CHARS.chars
    idx = CHARS.encode(TEXT)[None, :16]
    want = GPT2(CFG, params=PARAMS, ctx=ctx).forward(idx)
    # llm.c's vocab padding (128 rows) changes the LM head matmul's shape, hence its rounding
    np.testing.assert_allclose(model.forward(idx), want, rtol=0, atol=1e-5 if fmt == "llmc" else 0)


# ---- bad input -------------------------------------------------------------------------------
def gguf_variant(path: Path, name: str, arch: str = "gpt2", drop_key: str = "",
                 drop_tensor: str = "", extra_tokens: int = 0) -> Path:  # fmt: skip
    """A copy of a good GGUF written with gguf-py, with one thing changed."""
    good = gguf.GGUFReader(path)
    w = gguf.GGUFWriter(path.with_name(name), arch)
    for key, field in good.fields.items():
        if key.startswith("GGUF.") or key in (gguf.Keys.General.ARCHITECTURE, drop_key):
            continue
        value = field.contents()
        if key == gguf.Keys.Tokenizer.LIST:
            value = value + [f"extra{i}" for i in range(extra_tokens)]
        if key == gguf.Keys.Tokenizer.TOKEN_TYPE:
            value = value + [1] * extra_tokens
        key = key.replace("gpt2.", f"{arch}.", 1)
        w.add_key_value(
            key, value, field.types[0], field.types[-1] if len(field.types) > 1 else None
        )
    for t in good.tensors:
        if t.name != drop_tensor:
            w.add_tensor(t.name, np.asarray(t.data), raw_shape=list(reversed(t.shape.tolist())))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return w.path


def test_bad_gguf_files_get_one_clear_error(tmp_path):
    path = save_gguf(tmp_path / "m.gguf", PARAMS, CFG, CHARS)
    cases = {
        "architecture is 'falcon'": gguf_variant(path, "falcon.gguf", arch="falcon"),
        # a llama file is read by the llama loader, which names what it lacks
        "key 'llama.attention.layer_norm_rms_epsilon' is missing": gguf_variant(
            path, "llama.gguf", arch="llama"
        ),
        "key 'gpt2.context_length' is missing": gguf_variant(
            path, "nokey.gguf", drop_key=gguf.Keys.LLM.CONTEXT_LENGTH.format(arch="gpt2")
        ),
        "tensor 'blk.1.ffn_up.bias' .* is missing": gguf_variant(
            path, "notensor.gguf", drop_tensor="blk.1.ffn_up.bias"
        ),
        "vocabulary size mismatch: the tokenizer has 41 tokens but tensor 'token_embd.weight' "
        "has 38 rows": gguf_variant(path, "vocab.gguf", extra_tokens=3),
    }
    for message, bad in cases.items():
        with pytest.raises(ValueError, match=f"{bad.name}.*{message}|{message}.*{bad.name}"):
            read_model_file(bad)
    raw = path.read_bytes()
    (tmp_path / "cut.gguf").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"cut\.gguf is not a readable GGUF file \(truncated"):
        read_model_file(tmp_path / "cut.gguf")


def test_bad_llmc_and_unknown_files(tmp_path):
    raw = save_llmc(tmp_path / "m.bin", PARAMS, CFG).read_bytes()
    (tmp_path / "cut.bin").write_bytes(raw[:-100])
    with pytest.raises(ValueError, match=r"cut\.bin: .* parameter bytes, expected .*truncated"):
        read_model_file(tmp_path / "cut.bin")
    (tmp_path / "other.bin").write_bytes(b"\x00" * 2048)
    with pytest.raises(ValueError, match=r"other\.bin: unrecognised model file"):
        read_model_file(tmp_path / "other.bin")


def cli(*args: str) -> subprocess.CompletedProcess:
    import pyggml_train

    root = Path(pyggml_train.__file__).resolve().parents[1]
    env = child_env(OMP_WAIT_POLICY="passive")
    return subprocess.run(
        [sys.executable, "-m", "pyggml_train.cli", *args],
        capture_output=True, text=True, env=env, timeout=300, cwd=root,
    )  # fmt: skip


@pytest.mark.slow
def test_export_cli_refuses_bad_input_without_leaving_output(tmp_path, monkeypatch):
    good = save_gguf(tmp_path / "good.gguf", PARAMS, CFG, CHARS)
    (tmp_path / "cut.gguf").write_bytes(good.read_bytes()[:5000])
    out = tmp_path / "out"
    out.mkdir()
    for src in ["cut.gguf", "good.gguf"]:
        fmt = "hf" if src == "cut.gguf" else "llmc"
        args = ["--format", fmt, "--out", str(out / "x"), "--checkpoint", str(tmp_path / src)]
        if src == "good.gguf":
            args += ["--dtype", "q8_0"]  # llm.c files are f32: refused before writing
        done = cli("export", *args)
        assert done.returncode == 2 and done.stderr.count("error:") == 1, done.stderr
        assert src in done.stderr or "q8_0" in done.stderr
        assert files_in(out) == []

    # a failure midway through writing leaves neither the file nor a temporary
    def broken(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(gguf.quants, "quantize", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        save_gguf(out / "m.gguf", PARAMS, CFG, CHARS, "q8_0")
    with pytest.raises(ValueError, match="tokenizer has 50257 tokens but the model's vocab_size"):
        save_gguf(out / "m.gguf", PARAMS, CFG, GPT2Tokenizer())
    assert files_in(out) == []


@pytest.mark.slow
def test_cli_export_then_fine_tune_from_it(tmp_path):
    ckpt = tmp_path / "c.npz"
    from pyggml_train.checkpoint import Checkpoint, save_checkpoint
    from pyggml_train.config import TrainConfig

    save_checkpoint(ckpt, Checkpoint(0, CFG, TrainConfig(block_size=16), CHARS.to_dict(), PARAMS))
    done = cli("export", "--checkpoint", str(ckpt), "--format", "gguf", "--out",
               str(tmp_path / "m.gguf"))  # fmt: skip
    assert done.returncode == 0 and "wrote" in done.stdout, done.stderr
    data = tmp_path / "text.txt"
    data.write_text(TEXT * 40)
    run = tmp_path / "run"
    done = cli("train", "--init-from", str(tmp_path / "m.gguf"), "--data", str(data),
               "--out-dir", str(run), "--max-steps", "1", "--lr", "1e-12", "--batch-size", "2",
               "--block-size", "16", "--set", "min_lr=0", "weight_decay=0", "warmup_steps=0",
               "eval_steps=1", "--no-progress", "--threads", "2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "initialized from" in done.stdout
    trained = read_model_file(run / "checkpoint.npz")
    assert trained.tokenizer.chars == CHARS.chars  # the file's tokenizer, not a new one
    for name, value in PARAMS.items():  # one step of lr 1e-12 moves no weight visibly
        np.testing.assert_allclose(trained.params[name], value, atol=1e-9, err_msg=name)
