"""safetensors I/O (the safetensors package, our errors) and HF GPT-2 checkpoints: bytes,
dtypes, names, errors."""

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest

from pyggml_train.config import GPT2Config
from pyggml_train.hf_gpt2 import init_params, param_count, param_shapes
from pyggml_train.io.bf16 import bf16_bits_to_f32, f32_to_bf16_bits
from pyggml_train.io.hf import load_hf_checkpoint, save_hf_checkpoint
from pyggml_train.io.safetensors import load_safetensors, save_safetensors

TINY = GPT2Config(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=128)


def handmade_file(path: Path, header: dict, data: bytes) -> None:
    """A safetensors file assembled from the spec, independent of save_safetensors."""
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def test_reads_a_file_built_from_the_spec(tmp_path: Path) -> None:
    a = np.arange(6, dtype="<f4").reshape(2, 3)
    b = np.array([-1, 2**40], dtype="<i8")
    c = np.array([7, -8, 9], dtype="<i4")
    data = a.tobytes() + b.tobytes() + c.tobytes()
    header = {
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "b": {"dtype": "I64", "shape": [2], "data_offsets": [24, 40]},
        "c": {"dtype": "I32", "shape": [3], "data_offsets": [40, 52]},
    }
    handmade_file(tmp_path / "x.safetensors", header, data)
    tensors, meta = load_safetensors(tmp_path / "x.safetensors")
    assert meta == {"format": "pt"}
    np.testing.assert_array_equal(tensors["a"], a)
    np.testing.assert_array_equal(tensors["b"], b)
    np.testing.assert_array_equal(tensors["c"], c)
    assert tensors["b"].dtype == np.int64 and tensors["c"].dtype == np.int32


def test_written_layout_follows_the_spec(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_safetensors(path, {"w": np.ones((2, 2), np.float32)}, metadata={"k": "v"})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0  # data section aligned
    header = json.loads(raw[8 : 8 + n])
    assert header["w"] == {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
    assert header["__metadata__"] == {"k": "v"}
    assert raw[8 + n :] == np.ones(4, "<f4").tobytes()
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_round_trip_all_dtypes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tensors = {
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "f16": rng.standard_normal((5,)).astype(np.float16),
        "f64": rng.standard_normal((2, 2)),
        "i32": rng.integers(-100, 100, (4,)).astype(np.int32),
        "i64": rng.integers(-(2**50), 2**50, (2, 3)),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    save_safetensors(tmp_path / "t.safetensors", tensors)
    back, meta = load_safetensors(tmp_path / "t.safetensors")
    assert meta == {} and set(back) == set(tensors)
    for name, value in tensors.items():
        assert back[name].dtype == value.dtype and back[name].shape == value.shape
        np.testing.assert_array_equal(back[name], value)


def test_bf16_file_is_widened_to_f32(tmp_path: Path) -> None:
    # bf16 keeps 7 mantissa bits; 1+2^-8 is a tie -> even (1.0); 1+3*2^-8 -> 1+2^-6
    x = np.array([1.0, -2.0, 1 + 2**-8, 1 + 3 * 2**-8, np.inf, 0.0], dtype=np.float32)
    bits = f32_to_bf16_bits(x)
    assert bits.tolist() == [0x3F80, 0xC000, 0x3F80, 0x3F82, 0x7F80, 0x0000]
    # a NaN whose payload sits in the low half stays a NaN (rounding would give infinity)
    nan_bits = f32_to_bf16_bits(np.array([0x7F800001, 0xFF800001], np.uint32).view(np.float32))
    assert np.isnan(bf16_bits_to_f32(nan_bits)).all()
    w = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    wb, f16 = f32_to_bf16_bits(w).astype("<u2").tobytes(), x.astype("<f2").tobytes()
    header = {
        "w": {"dtype": "BF16", "shape": [4, 8], "data_offsets": [0, len(wb)]},
        "v": {"dtype": "F16", "shape": [6], "data_offsets": [len(wb), len(wb) + len(f16)]},
    }
    handmade_file(tmp_path / "b.safetensors", header, wb + f16)
    back, _ = load_safetensors(tmp_path / "b.safetensors")
    assert back["w"].dtype == np.float32  # BF16 widened on read
    np.testing.assert_allclose(back["w"], w, rtol=2**-8)  # half an ulp of 7 mantissa bits
    np.testing.assert_array_equal(back["w"], bf16_bits_to_f32(f32_to_bf16_bits(w)))
    assert back["v"].dtype == np.float16
    np.testing.assert_array_equal(back["v"], x.astype(np.float16))


def test_errors_on_truncated_foreign_and_unsupported(tmp_path: Path) -> None:
    save_safetensors(tmp_path / "ok.safetensors", {"w": np.ones(100, np.float32)})
    good = (tmp_path / "ok.safetensors").read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(good[:-10])
    with pytest.raises(ValueError, match=r"trunc\.safetensors is not a readable .*truncated"):
        load_safetensors(tmp_path / "trunc.safetensors")
    (tmp_path / "foreign.safetensors").write_bytes(b"PK\x03\x04 this is a zip file")
    with pytest.raises(ValueError, match=r"foreign\.safetensors is not a readable .*format"):
        load_safetensors(tmp_path / "foreign.safetensors")
    (tmp_path / "tiny").write_bytes(b"abc")
    with pytest.raises(ValueError, match="too short"):
        load_safetensors(tmp_path / "tiny")
    handmade_file(
        tmp_path / "u8.safetensors",
        {"x": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}},
        b"\x01",
    )
    with pytest.raises(ValueError, match="dtype F8_E4M3 is not supported"):
        load_safetensors(tmp_path / "u8.safetensors")
    with pytest.raises(FileNotFoundError):
        load_safetensors(tmp_path / "missing.safetensors")


# ---- Hugging Face GPT-2 naming --------------------------------------------------------------


def test_gpt2_124m_parameter_count_and_shapes() -> None:
    config = GPT2Config()
    assert param_count(config) == 124_439_808  # the published size of GPT-2 small
    shapes = param_shapes(config)
    assert shapes["transformer.h.0.attn.c_attn.weight"] == (768, 2304)
    assert shapes["transformer.h.11.mlp.c_proj.weight"] == (3072, 768)
    assert list(shapes)[:2] == ["transformer.wte.weight", "transformer.wpe.weight"]
    assert "lm_head.weight" not in shapes  # tied to wte


def test_init_params_statistics() -> None:
    config = GPT2Config(vocab_size=1000, block_size=256, n_layer=8, n_head=4, n_embd=256)
    params = init_params(config, seed=0)
    assert all(v.dtype == np.float32 for v in params.values())
    assert params["transformer.wte.weight"].std() == pytest.approx(0.02, rel=0.02)
    assert params["transformer.h.3.mlp.c_fc.weight"].std() == pytest.approx(0.02, rel=0.02)
    residual = 0.02 / math.sqrt(2 * 8)
    assert params["transformer.h.3.attn.c_proj.weight"].std() == pytest.approx(residual, rel=0.02)
    assert params["transformer.h.3.mlp.c_proj.weight"].std() == pytest.approx(residual, rel=0.02)
    assert abs(params["transformer.wpe.weight"].mean()) < 1e-3
    assert not params["transformer.h.0.attn.c_attn.bias"].any()
    assert (params["transformer.ln_f.weight"] == 1).all() and not params[
        "transformer.ln_f.bias"
    ].any()
    again = init_params(config, seed=0)
    assert all(np.array_equal(params[n], again[n]) for n in params)
    assert not np.array_equal(
        params["transformer.wte.weight"], init_params(config, 1)["transformer.wte.weight"]
    )


def hf_style_file(path: Path, params: dict, prefix: bool, bf16: bool = False) -> None:
    """Write params the way HF files look: optional prefix, mask buffers, a tied lm_head."""
    tensors = {}
    for name, value in params.items():
        tensors[name if prefix else name.removeprefix("transformer.")] = value
    for i in range(TINY.n_layer):
        p = "transformer." if prefix else ""
        tensors[f"{p}h.{i}.attn.bias"] = np.tril(np.ones((1, 1, 16, 16), np.float32))
        tensors[f"{p}h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
    tensors["lm_head.weight"] = params["transformer.wte.weight"]
    if bf16:  # as torch writes bf16: the top half of each float32, rounded to nearest even
        data, header, offset = b"", {}, 0
        for name, value in tensors.items():
            raw = f32_to_bf16_bits(value).astype("<u2").tobytes()
            header[name] = {"dtype": "BF16", "shape": list(value.shape),
                            "data_offsets": [offset, offset + len(raw)]}  # fmt: skip
            data, offset = data + raw, offset + len(raw)
        handmade_file(path, header, data)
        return
    save_safetensors(path, tensors, metadata={"format": "pt"})


@pytest.mark.parametrize("prefix", [True, False])
def test_load_hf_checkpoint_infers_config(tmp_path: Path, prefix: bool) -> None:
    params = init_params(TINY, seed=3)
    hf_style_file(tmp_path / "model.safetensors", params, prefix)
    loaded, config = load_hf_checkpoint(tmp_path)  # the directory works too
    assert config == TINY  # n_head from GPT-2's 64-wide heads
    assert list(loaded) == list(param_shapes(TINY))
    for name in params:
        np.testing.assert_array_equal(loaded[name], params[name])


def test_load_hf_checkpoint_bf16_file(tmp_path: Path) -> None:
    params = init_params(TINY, seed=4)
    hf_style_file(tmp_path / "m.safetensors", params, True, bf16=True)
    loaded, _ = load_hf_checkpoint(tmp_path / "m.safetensors", TINY)
    assert loaded["transformer.wte.weight"].dtype == np.float32
    np.testing.assert_allclose(
        loaded["transformer.wte.weight"], params["transformer.wte.weight"], rtol=2**-8
    )


def test_load_hf_checkpoint_errors(tmp_path: Path) -> None:
    params = init_params(TINY, seed=5)
    bad = dict(params)
    bad["transformer.h.1.mlp.c_fc.weight"] = np.zeros((512, 128), np.float32)  # transposed
    save_safetensors(tmp_path / "bad.safetensors", bad)
    with pytest.raises(
        ValueError, match=r"h\.1\.mlp\.c_fc\.weight has shape \(512, 128\), expected \(128, 512\)"
    ):
        load_hf_checkpoint(tmp_path / "bad.safetensors")
    missing = {k: v for k, v in params.items() if k != "transformer.ln_f.bias"}
    save_safetensors(tmp_path / "missing.safetensors", missing)
    with pytest.raises(
        ValueError, match=r"transformer\.ln_f\.bias is missing \(expected shape \(128,\)\)"
    ):
        load_hf_checkpoint(tmp_path / "missing.safetensors")
    untied = {**params, "lm_head.weight": params["transformer.wte.weight"] + 1}
    save_safetensors(tmp_path / "untied.safetensors", untied)
    with pytest.raises(ValueError, match="untied"):
        load_hf_checkpoint(tmp_path / "untied.safetensors")
    other = GPT2Config(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=64)
    save_safetensors(tmp_path / "good.safetensors", params)
    with pytest.raises(ValueError, match="wte.weight has shape"):
        load_hf_checkpoint(tmp_path / "good.safetensors", other)


def test_save_hf_checkpoint_directory_round_trip(tmp_path: Path) -> None:
    config = GPT2Config(vocab_size=30, block_size=8, n_layer=1, n_head=4, n_embd=32, ln_eps=1e-6)
    params = init_params(config, seed=6)
    file = save_hf_checkpoint(tmp_path / "out", params, config)
    assert file == tmp_path / "out" / "model.safetensors"
    hf_config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert hf_config["n_head"] == 4 and hf_config["n_positions"] == 8
    loaded, back = load_hf_checkpoint(tmp_path / "out")  # n_head comes from config.json
    assert back == config
    assert all(np.array_equal(loaded[n], params[n]) for n in params)
    with pytest.raises(ValueError, match="expected"):
        save_hf_checkpoint(
            tmp_path / "x.safetensors",
            {**params, "transformer.wte.weight": params["transformer.wpe.weight"]},
            config,
        )
