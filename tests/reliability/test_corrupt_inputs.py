"""Corrupt inputs get one clear error that names the file and what is wrong
(docs/reliability.md): truncated or garbled checkpoints, safetensors files, token shards,
presets, model specs and tokenizer files. Every file is first written by our own code,
then damaged, then read back through the public loader."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers.env import REPO_ROOT

from pyggml_train.checkpoint import load_arrays, save_arrays
from pyggml_train.config import GPT2Config, load_preset
from pyggml_train.data import load_prepared, prepare
from pyggml_train.hf_gpt2 import init_params
from pyggml_train.io.gguf import load_gguf, save_gguf
from pyggml_train.io.safetensors import load_safetensors, save_safetensors
from pyggml_train.spec import SpecError, load_spec
from pyggml_train.tokenizer import CharTokenizer

EXAMPLES = REPO_ROOT / "examples" / "specs"


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garble(at: float) -> Callable[[Path], None]:
    """Overwrite 64 bytes at the fraction ``at`` of the file with 0xFF."""

    def damage(path: Path) -> None:
        data = bytearray(path.read_bytes())
        i = min(int(len(data) * at), max(0, len(data) - 64))
        data[i : i + 64] = b"\xff" * len(data[i : i + 64])
        path.write_bytes(bytes(data))

    return damage


def make_checkpoint(d: Path) -> tuple[Path, Callable[[Path], object]]:
    path = save_arrays(d / "ckpt.npz", {"w": np.arange(100_000, dtype=np.float32)}, {"step": 3})
    return path, load_arrays


def make_safetensors(d: Path) -> tuple[Path, Callable[[Path], object]]:
    path = d / "model.safetensors"
    save_safetensors(path, {"w": np.arange(1000, dtype=np.float32)})
    return path, load_safetensors


def make_gguf(d: Path) -> tuple[Path, Callable[[Path], object]]:
    tok = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz ")
    cfg = GPT2Config(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=32)
    path = save_gguf(d / "model.gguf", init_params(cfg, seed=1), cfg, tok)
    return path, load_gguf


def make_prepared(d: Path, which: str) -> tuple[Path, Callable[[Path], object]]:
    text = d / "text.txt"
    text.write_text("hello world, a small corpus for a char tokenizer. " * 200)
    prepared = prepare(text, d / "data", "char", 0.1)
    target = {"train": prepared.train_path, "tokenizer": prepared.train_path.parent}[which]
    if which == "tokenizer":
        target = prepared.train_path.parent / "tokenizer.json"
    return target, lambda _p: load_prepared(prepared.train_path.parent)


def make_preset(d: Path) -> tuple[Path, Callable[[Path], object]]:
    path = d / "preset.json"
    train = {"max_steps": 5, "warmup_steps": 1}
    path.write_text(json.dumps({"model": {"n_layer": 2}, "train": train, "tokenizer": "char"}))
    return path, load_preset


def make_spec(d: Path) -> tuple[Path, Callable[[Path], object]]:
    src = sorted(EXAMPLES.glob("*.json"))[0]
    path = d / "spec.json"
    path.write_bytes(src.read_bytes())
    return path, load_spec


MAKERS = {
    "checkpoint": make_checkpoint,
    "gguf": make_gguf,
    "safetensors": make_safetensors,
    "token shard": lambda d: make_prepared(d, "train"),
    "tokenizer": lambda d: make_prepared(d, "tokenizer"),
    "preset": make_preset,
    "spec": make_spec,
}
DAMAGE = {"truncated": truncate, "garbled header": garble(0.0), "garbled middle": garble(0.5)}
# safetensors and GGUF have no checksum over their tensor bytes: damage there (the middle
# of these files) cannot be detected, only damage to their headers and extents
UNDETECTABLE = {("safetensors", "garbled middle"), ("gguf", "garbled middle")}
CASES = [(k, d) for k in sorted(MAKERS) for d in sorted(DAMAGE) if (k, d) not in UNDETECTABLE]


@pytest.mark.parametrize(("kind", "damage"), CASES)
def test_corrupt_file_raises_one_clear_error(tmp_path, kind, damage):
    path, load = MAKERS[kind](tmp_path)
    load(path)  # intact: loads
    DAMAGE[damage](path)
    with pytest.raises((ValueError, SpecError)) as info:
        load(path)
    msg = str(info.value)
    assert path.name in msg, f"the error does not name {path.name}: {msg}"
    assert len(msg) < 1500 and "Traceback" not in msg


def test_token_ids_outside_the_vocabulary_are_named(tmp_path):
    path, load = make_prepared(tmp_path, "train")
    data = bytearray(path.read_bytes())
    data[-2:] = b"\xff\xff"  # the last token becomes 65535
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"train.bin.*65535.*vocabulary of \d+"):
        load(path)
