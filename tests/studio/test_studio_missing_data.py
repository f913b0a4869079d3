"""A spec that names tiny shakespeare never trains on another corpus (issue 21 item 3, issue
25 item 4): when the text can be neither found nor fetched, /api/check says so on the data
node, with the file, where to put it and its URL; the CLI says so in one line."""

import importlib.util
import json

import pytest
from helpers.env import REPO_ROOT, require

from pyggml_train import datasets

SMALL_GPT = REPO_ROOT / "examples" / "specs" / "small-gpt.json"
CORPUS = (REPO_ROOT / ".." / "shared" / "data" / "tinyshakespeare.txt").resolve()


@pytest.fixture
def offline_elsewhere(tmp_path, monkeypatch):
    """No dataset folders, an empty cache, no downloads."""
    work = tmp_path / "work" / "here"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(datasets.DATA_ENV, raising=False)
    monkeypatch.delenv(datasets.DATASETS_ENV, raising=False)
    monkeypatch.setenv(datasets.OFFLINE_ENV, "1")
    return tmp_path


def test_a_named_corpus_that_is_missing_is_an_error_not_a_stand_in(offline_elsewhere):
    studio_data = offline_elsewhere / "studio" / "data"
    with pytest.raises(FileNotFoundError) as err:
        datasets.fetch("tinyshakespeare", studio_data)
    message = str(err.value)
    assert message.startswith("tiny shakespeare: tinyshakespeare.txt is not at hand")
    assert "could not be downloaded ($PYGGML_OFFLINE=1)" in message
    assert f"put it in {offline_elsewhere / 'cache' / 'pyggml_train'} or {studio_data}" in message
    assert datasets.DATASETS["tinyshakespeare"].files[0].url in message
    assert not (offline_elsewhere / "cache" / "pyggml_train").exists()  # nothing stood in


def test_a_named_corpus_is_found_in_the_data_dir(offline_elsewhere):
    folder = offline_elsewhere / "mine"
    folder.mkdir()
    (folder / "tinyshakespeare.txt").write_bytes(CORPUS.read_bytes())
    assert datasets.fetch("tinyshakespeare", folder) == [folder / "tinyshakespeare.txt"]


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
        assert error["message"].startswith("tiny shakespeare: tinyshakespeare.txt is not at hand")
        assert str(offline_elsewhere / "studio" / "data") in error["message"]
        assert "Fetch" in error["message"]
        started = client.post("/api/runs", json=spec)
        assert started.status_code == 422 and "not at hand" in started.json()["error"]
        (offline_elsewhere / "studio" / "data" / "tinyshakespeare.txt").write_bytes(
            CORPUS.read_bytes()
        )
        assert client.post("/api/check", json=spec).json()["ok"] is True


def test_cli_spec_run_refuses_a_missing_named_corpus_in_one_line(offline_elsewhere, capsys):
    from pyggml_train.cli import main

    out = offline_elsewhere / "out"
    assert main(["train", "--model", str(SMALL_GPT), "--out-dir", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pyggml-train train: error: tiny shakespeare: tinyshakespeare.txt")
    assert "\n" not in err and not (out / "data").exists()
