"""A spec that names tiny shakespeare never trains on another corpus (issue 21 item 3): when
the text can be neither found nor fetched, /api/check says so on the data node, with where
to put it and how else to provide it; the CLI's default run alone may use a stand-in."""

import importlib.util
import json

import pytest
from helpers.env import REPO_ROOT, require

from pyggml_train import data

SMALL_GPT = REPO_ROOT / "examples" / "specs" / "small-gpt.json"
UNREACHABLE = "http://127.0.0.1:9/tinyshakespeare.txt"  # the discard port: refused at once


@pytest.fixture
def offline_elsewhere(tmp_path, monkeypatch):
    """A working directory without ../shared beside it, an empty cache, no network."""
    work = tmp_path / "work" / "here"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.setattr(data, "TINY_SHAKESPEARE_URL", UNREACHABLE)
    monkeypatch.setattr(data, "_fetch_failures", {})
    return tmp_path


def test_a_named_corpus_that_is_missing_is_an_error_not_a_stand_in(offline_elsewhere):
    with pytest.raises(FileNotFoundError) as err:
        data.tiny_shakespeare(offline_elsewhere / "studio" / "data")
    message = str(err.value)
    assert "could not be downloaded (URLError" in message
    assert f"put tinyshakespeare.txt in {offline_elsewhere / 'studio' / 'data'}" in message
    assert "--data-dir" in message and "source 'file'" in message and "uploaded" in message
    assert not (offline_elsewhere / "cache" / "pyggml_train" / "python-docs.txt").exists()


def test_a_named_corpus_is_found_in_the_data_dir(offline_elsewhere):
    folder = offline_elsewhere / "mine"
    folder.mkdir()
    (folder / "tinyshakespeare.txt").write_text("First Citizen:\n", encoding="utf-8")
    assert data.tiny_shakespeare(folder)[0] == folder / "tinyshakespeare.txt"


def test_api_check_refuses_the_example_offline_and_says_how_to_provide_the_data(
    offline_elsewhere,
):
    mods = ("starlette", "httpx")
    require(
        all(importlib.util.find_spec(m) for m in mods), "the studio extra: pip install '.[test]'"
    )
    from starlette.testclient import TestClient

    from pyggml_train.studio.app import create_app

    spec = json.loads(SMALL_GPT.read_text())
    with TestClient(create_app(offline_elsewhere / "studio")) as client:
        result = client.post("/api/check", json=spec).json()
        assert result["ok"] is False
        (error,) = [e for e in result["errors"] if e["node"] == "data"]
        assert "tiny shakespeare (tinyshakespeare.txt) is not at hand" in error["message"]
        assert "--data-dir" in error["message"]
        started = client.post("/api/runs", json=spec)
        assert started.status_code == 422 and "not at hand" in started.json()["error"]
        corpus = (REPO_ROOT / ".." / "shared" / "data" / "tinyshakespeare.txt").read_bytes()
        (offline_elsewhere / "studio" / "data" / "tinyshakespeare.txt").write_bytes(corpus)
        assert client.post("/api/check", json=spec).json()["ok"] is True


def test_cli_spec_run_refuses_a_missing_named_corpus_in_one_line(offline_elsewhere, capsys):
    from pyggml_train.cli import main

    out = offline_elsewhere / "out"
    assert main(["train", "--model", str(SMALL_GPT), "--out-dir", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pyggml-train train: error: tiny shakespeare (tinyshakespeare.txt)")
    assert "\n" not in err and not (out / "data").exists()
