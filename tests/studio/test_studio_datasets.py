"""The studio's named datasets against a running server: GET /api/datasets (what is at hand,
from where), POST /api/datasets/{name}/fetch (offline: 503 naming the file, where to put it
and its URL; a download from a loopback server, checked and cached; a file that is not the
published one: 409), /api/check on a data node whose dataset is missing or damaged, and
names that are not datasets (a path escaping the data directory) refused."""

from __future__ import annotations

import json

import pytest
from helpers.datasets import WIKITEXT_TRAIN, WIKITEXT_VALID, register, serving, wikitext_zip
from helpers.env import REPO_ROOT, SHARED
from helpers.studio_server import require_studio, running_studio, seed_data_dir

from pyggml_train import datasets

SMALL_GPT = REPO_ROOT / "examples" / "specs" / "small-gpt.json"
WIKITEXT_URL = "https://wikitext.smerity.com/wikitext-2-raw-v1.zip"


@pytest.fixture
def studio(tmp_path, monkeypatch):
    """A server over a data dir holding tiny shakespeare; an empty cache; no downloads
    unless a test allows them; no other dataset folders."""
    require_studio()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(datasets.DATASETS_ENV, raising=False)
    monkeypatch.setenv(datasets.OFFLINE_ENV, "1")
    root = seed_data_dir(tmp_path / "studio")
    with running_studio(root) as base:
        import httpx

        with httpx.Client(base_url=base, timeout=60) as client:
            client.root = root
            client.cache = tmp_path / "xdg" / "pyggml_train"
            yield client


def with_source(source: str) -> dict:
    spec = json.loads(SMALL_GPT.read_text())
    spec["nodes"][0]["params"]["source"] = source
    assert spec["nodes"][0]["id"] == "data"
    return spec


def test_the_datasets_and_where_they_are(studio):
    listed = {d["name"]: d for d in studio.get("/api/datasets").json()}
    assert list(listed) == list(datasets.DATASETS)
    shakespeare = listed["tinyshakespeare"]
    assert shakespeare["at_hand"] is True and shakespeare["error"] is None
    assert shakespeare["files"][0]["path"] == str(studio.root / "data" / "tinyshakespeare.txt")
    wikitext = listed["wikitext-2"]
    assert wikitext["at_hand"] is False and wikitext["files"][0]["path"] is None
    assert wikitext["files"][0]["url"] == WIKITEXT_URL
    assert wikitext["validation"] == "its validation split, wiki.valid.raw"
    assert wikitext["cache"] == str(studio.cache)
    assert [f["name"] for f in listed["ptb"]["files"]] == ["ptb.train.txt", "ptb.valid.txt"]


def test_offline_a_missing_dataset_is_an_error_on_its_node_and_fetch_says_why(studio):
    spec = with_source("wikitext-2")
    result = studio.post("/api/check", json=spec).json()
    assert result["ok"] is False
    (error,) = result["errors"]
    assert error["node"] == "data"
    message = error["message"]
    assert message.startswith("WikiText-2 (raw): wikitext-2-raw-v1.zip is not at hand")
    assert WIKITEXT_URL in message and str(studio.cache) in message
    assert str(studio.root / "data") in message and "Fetch" in message
    assert studio.post("/api/runs", json=spec).status_code == 422

    fetched = studio.post("/api/datasets/wikitext-2/fetch")
    assert fetched.status_code == 503
    assert "could not be downloaded ($PYGGML_OFFLINE=1)" in fetched.json()["error"]
    assert WIKITEXT_URL in fetched.json()["error"]
    assert not studio.cache.exists() or not list(studio.cache.iterdir())


def test_fetch_downloads_checks_and_caches_then_the_check_passes(studio, tmp_path, monkeypatch):
    monkeypatch.delenv(datasets.OFFLINE_ENV)
    served = tmp_path / "served"
    served.mkdir()
    archive = wikitext_zip("wikitext-2-raw")
    (served / "wikitext-2-raw-v1.zip").write_bytes(archive)
    with serving(served) as (base, requests):
        register(monkeypatch, "wikitext-2", {"wikitext-2-raw-v1.zip": archive}, base)
        fetched = studio.post("/api/datasets/wikitext-2/fetch")
        assert fetched.status_code == 200, fetched.text
        assert fetched.json()["at_hand"] is True
        assert requests == ["/wikitext-2-raw-v1.zip"]
    assert (studio.cache / "wikitext-2-raw-v1.zip").read_bytes() == archive
    spec = with_source("wikitext-2")
    vocab = len(set(WIKITEXT_TRAIN + WIKITEXT_VALID))  # one vocabulary over both splits
    for n in (vocab - 1, vocab):  # the token embedding and its tied LM head
        spec["nodes"][1]["params"]["num_embeddings"] = n
        spec["nodes"][7]["params"]["out_features"] = n
        errors = studio.post("/api/check", json=spec).json()["errors"]
        if n < vocab:
            (error,) = errors
            assert error["node"] == "wte" and f"has {vocab} tokens" in error["message"]
    assert errors == []


def test_a_damaged_dataset_file_is_refused(studio):
    damaged = bytearray((SHARED / "data" / "the-verdict.txt").read_bytes())
    damaged[100] ^= 0x20  # one letter's case: the size is right, the checksum is not
    (studio.root / "data" / "the-verdict.txt").write_bytes(bytes(damaged))
    result = studio.post("/api/check", json=with_source("the-verdict")).json()
    assert result["ok"] is False
    (error,) = [e for e in result["errors"] if e["node"] == "data"]
    assert "is not The Verdict (Edith Wharton)'s the-verdict.txt: its SHA-256" in error["message"]
    fetched = studio.post("/api/datasets/the-verdict/fetch")
    assert fetched.status_code == 409 and "delete it" in fetched.json()["error"]
    listed = {d["name"]: d for d in studio.get("/api/datasets").json()}
    assert listed["the-verdict"]["at_hand"] is False
    assert "SHA-256" in listed["the-verdict"]["error"]


@pytest.mark.parametrize("name", ["..%2F..%2Fetc%2Fpasswd", "nope", "wikitext-2%2F..", ".."])
def test_a_name_that_is_not_a_dataset_is_refused(studio, name):
    before = sorted(studio.root.rglob("*"))
    answer = studio.post(f"/api/datasets/{name}/fetch")
    assert answer.status_code == 404, answer.text  # no such dataset, or no such route
    assert sorted(studio.root.rglob("*")) == before


@pytest.mark.parametrize("source", [["wikitext-2"], {"name": "ptb"}, 3, "wikitext2"])
def test_a_source_that_names_no_dataset_is_an_error_on_the_node(studio, source):
    answer = studio.post("/api/check", json=with_source(source))
    assert answer.status_code == 200
    (error,) = answer.json()["errors"]
    assert error["node"] == "data" and "source" in error["message"]
