"""Token files, dataset preparation, batch loading with exact resume (which text a run
reads: test_datasets.py)."""

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.env import SHARED

from pyggml_train.data import (
    BatchLoader,
    load_prepared,
    prepare,
    read_tokens,
    write_tokens,
)
from pyggml_train.tokenizer import CharTokenizer

SHARED_DATA = SHARED / "data"


# ---- .bin token files -------------------------------------------------------------------------
def test_bin_layout_matches_llm_c(tmp_path: Path) -> None:
    tokens = np.array([0, 1, 50256, 65535, 7], dtype=np.int64)
    write_tokens(tmp_path / "t.bin", tokens)
    raw = (tmp_path / "t.bin").read_bytes()
    assert len(raw) == 256 * 4 + 5 * 2
    header = np.frombuffer(raw[:1024], dtype="<i4")
    assert header[:3].tolist() == [20240520, 1, 5] and not header[3:].any()
    assert np.frombuffer(raw[1024:], dtype="<u2").tolist() == tokens.tolist()
    back = read_tokens(tmp_path / "t.bin")
    assert back.dtype == np.uint16 and back.tolist() == tokens.tolist()
    write_tokens(tmp_path / "empty.bin", [])
    assert len(read_tokens(tmp_path / "empty.bin")) == 0


def test_bin_rejects_ids_beyond_uint16(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\[0, 65535\].*vocab_size <= 65536"):
        write_tokens(tmp_path / "t.bin", [1, 65536])
    with pytest.raises(ValueError, match="vocab_size"):
        write_tokens(tmp_path / "t.bin", [-1])
    assert not list(tmp_path.iterdir())


def test_bin_errors_on_truncated_and_foreign_files(tmp_path: Path) -> None:
    good = write_tokens(tmp_path / "good.bin", np.arange(100))
    (tmp_path / "trunc.bin").write_bytes(good.read_bytes()[:-3])
    with pytest.raises(
        ValueError, match=r"100 tokens \(1224 bytes\) but the file has 1221 bytes: truncated"
    ):
        read_tokens(tmp_path / "trunc.bin")
    (tmp_path / "long.bin").write_bytes(good.read_bytes() + b"xx")
    with pytest.raises(ValueError, match="trailing data"):
        read_tokens(tmp_path / "long.bin")
    (tmp_path / "head.bin").write_bytes(good.read_bytes()[:500])
    with pytest.raises(ValueError, match="shorter than the 1024-byte llm.c header"):
        read_tokens(tmp_path / "head.bin")
    np.arange(1000, dtype=np.uint16).tofile(tmp_path / "raw.bin")  # headerless uint16 dump
    with pytest.raises(ValueError, match="expected magic 20240520 .*found 65536"):
        read_tokens(tmp_path / "raw.bin")
    header = np.zeros(256, "<i4")
    header[:3] = (20240520, 2, 0)
    (tmp_path / "v2.bin").write_bytes(header.tobytes())
    with pytest.raises(ValueError, match="version 2, expected 1"):
        read_tokens(tmp_path / "v2.bin")
    with pytest.raises(FileNotFoundError, match="prepare"):
        read_tokens(tmp_path / "none.bin")


# ---- prepare ------------------------------------------------------------------------------
def test_prepare_char_splits_tail_and_saves_tokenizer(tmp_path: Path) -> None:
    text_path = tmp_path / "in.txt"
    text_path.write_text("abcdefghij" * 10)  # 100 chars
    out = prepare(text_path, tmp_path / "prep", "char", val_fraction=0.1)
    assert (out.train_tokens, out.val_tokens) == (90, 10)
    train, val, tok = load_prepared(tmp_path / "prep")
    assert isinstance(tok, CharTokenizer) and tok.chars == "abcdefghij"
    assert tok.decode(train) == ("abcdefghij" * 10)[:90]
    assert tok.decode(val) == "abcdefghij"
    assert json.loads(out.tokenizer_path.read_text()) == {"type": "char", "chars": "abcdefghij"}


def test_prepare_gpt2_on_tiny_shakespeare(tmp_path: Path) -> None:
    out = prepare(SHARED_DATA / "tinyshakespeare.txt", tmp_path, "gpt2", val_fraction=0.1)
    assert out.train_tokens + out.val_tokens == 338025
    assert out.val_tokens == round(338025 * 0.1)
    train, val, tok = load_prepared(tmp_path)
    assert tok.decode(train[:3]) == "First Citizen:"
    assert tok.name == "gpt2"


def test_prepare_rejects_tiny_text(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("ab")
    with pytest.raises(ValueError, match="too few to split"):
        prepare(tmp_path / "t.txt", tmp_path, "char")


# ---- BatchLoader -----------------------------------------------------------------------------
def test_targets_are_inputs_shifted_by_one() -> None:
    tokens = np.arange(1000, dtype=np.uint16)  # token value == its position
    loader = BatchLoader(tokens, batch_size=4, block_size=16, mode="random", seed=0)
    for _ in range(20):
        x, y = loader.next_batch()
        assert x.shape == y.shape == (4, 16) and x.dtype == y.dtype == np.int32
        np.testing.assert_array_equal(y, x + 1)
        np.testing.assert_array_equal(np.diff(x, axis=1), 1)  # contiguous windows
        assert x.min() >= 0 and y.max() <= 999


def test_random_mode_reaches_both_ends() -> None:
    tokens = np.arange(20, dtype=np.uint16)
    loader = BatchLoader(tokens, batch_size=64, block_size=4, seed=1)
    starts = np.concatenate([loader.next_batch()[0][:, 0] for _ in range(10)])
    assert set(starts.tolist()) == set(range(16))  # every start in [0, N - T - 1]


def test_sequential_mode_tiles_and_wraps() -> None:
    tokens = np.arange(23, dtype=np.uint16)
    loader = BatchLoader(tokens, batch_size=2, block_size=5, mode="sequential")
    x, y = loader.next_batch()
    assert x[:, 0].tolist() == [0, 5]
    x, y = loader.next_batch()
    assert x[:, 0].tolist() == [10, 15]
    assert y[1].tolist() == [16, 17, 18, 19, 20]
    x, _ = loader.next_batch()  # row at 20 would need tokens up to 25: wrap to 0
    assert x[:, 0].tolist() == [0, 5]


@pytest.mark.parametrize("mode", ["random", "sequential"])
def test_resume_from_state_repeats_batches(mode: str) -> None:
    tokens = np.random.default_rng(0).integers(0, 50000, 5000).astype(np.uint16)
    loader = BatchLoader(tokens, 3, 32, mode=mode, seed=123)
    for _ in range(5):
        loader.next_batch()
    state = json.loads(json.dumps(loader.state()))  # survives a JSON checkpoint
    expected = [loader.next_batch() for _ in range(4)]
    resumed = BatchLoader(tokens, 3, 32, mode=mode, seed=999)
    resumed.set_state(state)
    for x_exp, y_exp in expected:
        x, y = next(resumed)
        np.testing.assert_array_equal(x, x_exp)
        np.testing.assert_array_equal(y, y_exp)


def test_loader_errors() -> None:
    with pytest.raises(ValueError, match="at least block_size \\+ 1 = 17 tokens .* got 16"):
        BatchLoader(np.arange(16), 1, 16)
    BatchLoader(np.arange(17), 1, 16)  # exactly one window is enough
    with pytest.raises(ValueError, match="mode must be"):
        BatchLoader(np.arange(100), 1, 8, mode="shuffled")
    loader = BatchLoader(np.arange(100), 1, 8, mode="random")
    with pytest.raises(ValueError, match="for mode 'sequential'"):
        loader.set_state(BatchLoader(np.arange(100), 1, 8, mode="sequential").state())
