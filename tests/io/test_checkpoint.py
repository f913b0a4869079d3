"""Checkpoints: exact round trip, atomic replace, pickle-free, clear errors."""

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import pyggml_train.checkpoint as checkpoint_mod
from pyggml_train.checkpoint import (
    Checkpoint,
    load_arrays,
    load_checkpoint,
    parameter_count,
    save_arrays,
    save_checkpoint,
)
from pyggml_train.config import load_preset
from pyggml_train.hf_gpt2 import init_params, param_count
from pyggml_train.tokenizer import CharTokenizer


def make_checkpoint(step: int = 42) -> Checkpoint:
    model, train, _ = load_preset("char-tiny", vocab_size=9, n_layer=1, n_embd=16, n_head=2)
    params = init_params(model, seed=0)
    rng = np.random.default_rng(7)
    rng.random(3)  # advance so the saved state is not the seed's
    return Checkpoint(
        step=step,
        model_config=model,
        train_config=train,
        tokenizer=CharTokenizer.from_text("abcdefghi").to_dict(),
        params=params,
        adam_m={n: np.full_like(v, 0.5) for n, v in params.items()},
        adam_v={n: np.full_like(v, 0.25) for n, v in params.items()},
        loader_state={"position": 123, "rng": {"state": 5}},
        rng_state=rng.bit_generator.state,
        extra={"best_val_loss": 1.25},
    )


def test_round_trip_is_exact(tmp_path: Path) -> None:
    ckpt = make_checkpoint()
    save_checkpoint(tmp_path / "ck.npz", ckpt)
    back = load_checkpoint(tmp_path / "ck.npz")
    assert back.step == 42 and back.extra == {"best_val_loss": 1.25}
    assert back.model_config == ckpt.model_config and back.train_config == ckpt.train_config
    assert back.tokenizer == {"type": "char", "chars": "abcdefghi"}
    assert back.loader_state == ckpt.loader_state
    for group in ("params", "adam_m", "adam_v"):
        ours, theirs = getattr(ckpt, group), getattr(back, group)
        assert list(theirs) == list(ours)
        for name in ours:
            assert theirs[name].dtype == np.float32
            np.testing.assert_array_equal(theirs[name], ours[name])
    # the RNG resumes exactly where it was saved (its 128-bit state survives JSON)
    resumed = np.random.default_rng()
    resumed.bit_generator.state = back.rng_state
    original = np.random.default_rng(7)
    original.random(3)
    np.testing.assert_array_equal(resumed.random(5), original.random(5))


def test_file_is_a_plain_npz_without_pickles(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "ck.npz", make_checkpoint())
    with zipfile.ZipFile(tmp_path / "ck.npz") as z:
        names = z.namelist()
    assert "__metadata__.npy" in names and "params/transformer.wte.weight.npy" in names
    with np.load(tmp_path / "ck.npz", allow_pickle=False) as npz:
        meta = json.loads(npz["__metadata__"].tobytes())
    assert meta["format"] == "pyggml_train.checkpoint" and meta["step"] == 42


def test_atomic_write_leaves_no_temp_and_keeps_old_on_failure(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "ck.npz"
    save_checkpoint(path, make_checkpoint(step=1))
    save_checkpoint(path, make_checkpoint(step=2))  # replace in place
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]

    written = []
    write_npy = checkpoint_mod._write_npy

    def crash_on_the_third(npz, name, array):  # the disk fills up in the middle of the stream
        if len(written) == 2:
            raise OSError("disk full")
        written.append(name)
        write_npy(npz, name, array)

    monkeypatch.setattr(checkpoint_mod, "_write_npy", crash_on_the_third)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, make_checkpoint(step=3))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]
    monkeypatch.undo()
    assert load_checkpoint(path).step == 2


def test_corrupt_truncated_foreign_and_missing_files(tmp_path: Path) -> None:
    good = tmp_path / "ck.npz"
    save_checkpoint(good, make_checkpoint())
    truncated = tmp_path / "trunc.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all" * 10)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, w=np.zeros(3))
    with pytest.raises(ValueError, match="not a pyggml_train checkpoint"):
        load_checkpoint(foreign)
    save_arrays(tmp_path / "other.npz", {"w": np.zeros(2)}, {"format": "something-else"})
    with pytest.raises(ValueError, match="expected 'pyggml_train.checkpoint'"):
        load_checkpoint(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_checkpoint(tmp_path / "nope.npz")


def test_generic_arrays_round_trip(tmp_path: Path) -> None:
    arrays = {"a": np.arange(5, dtype=np.int64), "b.c": np.eye(2, dtype=np.float16)}
    save_arrays(tmp_path / "x.npz", arrays, {"k": [1, 2]})
    back, meta = load_arrays(tmp_path / "x.npz")
    assert meta == {"k": [1, 2]} and list(back) == ["a", "b.c"]
    assert back["b.c"].dtype == np.float16
    with pytest.raises(ValueError, match="reserved"):
        save_arrays(tmp_path / "y.npz", {"__metadata__": np.zeros(1)}, {})


def test_parameter_count_reads_the_headers_of_the_parameters_only(tmp_path: Path) -> None:
    ckpt = make_checkpoint()
    save_checkpoint(tmp_path / "ck.npz", ckpt)
    # the model's own count, not the AdamW moments (which hold as many numbers again, twice)
    assert parameter_count(tmp_path / "ck.npz") == param_count(ckpt.model_config)
    assert parameter_count(tmp_path / "ck.npz") == sum(v.size for v in ckpt.params.values())
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz is not a readable checkpoint"):
        parameter_count(tmp_path / "bad.npz")
