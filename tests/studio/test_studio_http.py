"""The studio's HTTP API against a running server: palette, live check, specs on disk,
4xx answers for bad input (the server keeps serving), and no path out of the data dir."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.env import REPO_ROOT, child_env
from helpers.studio_server import (
    CORPUS,
    require_studio,
    studio_client,
)

SMALL_GPT = REPO_ROOT / "examples" / "specs" / "small-gpt.json"


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    with studio_client(tmp_path_factory.mktemp("studio")) as client:
        yield client


def small_gpt() -> dict:
    return json.loads(SMALL_GPT.read_text())


def node(spec: dict, node_id: str) -> dict:
    return next(n for n in spec["nodes"] if n["id"] == node_id)


def test_page_and_npm_assets_are_served(studio):
    page = studio.get("/")
    assert page.status_code == 200
    for src in ("/static/vendor/litegraph.core.js", "/static/vendor/chart.umd.min.js"):
        assert src in page.text
        asset = studio.get(src)
        assert asset.status_code == 200 and len(asset.content) > 50_000
    assert "LiteGraph" in studio.get("/static/vendor/litegraph.core.js").text
    for own in ("/static/app.js", "/static/graph.js", "/static/charts.js", "/static/studio.css"):
        assert studio.get(own).status_code == 200


def test_palette_is_the_spec_node_types(studio):
    from pyggml_train import spec as S

    assert studio.get("/api/node-types").json() == S.node_types_json()


def test_check_infers_shapes_from_the_data_and_names_the_failing_node(studio):
    spec = small_gpt()
    data = node(spec, "data")["params"]
    vocab = len(set(CORPUS.read_text(encoding="utf-8")))  # the char tokenizer's vocabulary
    result = studio.post("/api/check", json=spec).json()
    assert result["ok"], result["errors"]
    b, t = data["batch_size"], data["block_size"]
    assert result["shapes"]["data:0"] == [b, t]
    assert result["shapes"]["block2:0"] == [b, t, 128]
    assert result["shapes"]["lm_head:0"] == [b, t, vocab]

    node(spec, "block1")["params"]["d_model"] = 256
    result = studio.post("/api/check", json=spec).json()
    assert not result["ok"]
    errors = [e for e in result["errors"] if e["node"] == "block1"]
    assert errors and "256" in errors[0]["message"] and "128" in errors[0]["message"]
    assert result["shapes"]["block0:0"] == [b, t, 128]  # upstream of the error still inferred


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/check", b"{not json"),
        ("POST", "/api/runs", b"{not json"),
        ("POST", "/api/runs", b"[1, 2]"),
        ("POST", "/api/script", b"\xff\xfe"),
        ("PUT", "/api/specs/draft", b'"a string"'),
        ("PUT", "/api/specs/draft", b'{"nodes": 3}'),
        ("PUT", "/api/data/notes.txt", b"\xff\xfe\x00bad utf-8"),
    ],
)
def test_malformed_body_is_a_4xx_and_the_server_keeps_serving(studio, method, path, body):
    r = studio.request(method, path, content=body)
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]
    assert studio.get("/api/node-types").status_code == 200


def test_an_invalid_spec_is_refused_with_every_error_on_its_node(studio):
    spec = small_gpt()
    node(spec, "wte")["params"]["embedding_dim"] = 64
    spec["links"] = [link for link in spec["links"] if link["to"] != ["loss", 1]]
    r = studio.post("/api/runs", json=spec)
    assert r.status_code == 422
    body = r.json()
    assert "not valid" in body["error"]
    nodes = {e["node"] for e in body["errors"]}
    assert {"wpe", "loss"} <= nodes or {"block0", "loss"} <= nodes, body["errors"]
    assert studio.get("/api/runs").json() == []  # nothing was started


def test_specs_save_list_load_delete(studio):
    spec = small_gpt()
    assert studio.put("/api/specs/my model", json=spec).status_code == 200
    assert "my model" in studio.get("/api/specs").json()
    assert studio.get("/api/specs/my model").json() == spec
    assert studio.delete("/api/specs/my model").status_code == 200
    assert studio.get("/api/specs/my model").status_code == 404


def test_examples_are_served(studio):
    names = {e["name"] for e in studio.get("/api/examples").json()}
    assert "small-gpt" in names
    assert studio.get("/api/examples/small-gpt").json() == small_gpt()
    assert studio.get("/api/examples/nope").status_code == 404


@pytest.mark.parametrize(
    "name", ["../escape", "..", ".hidden", "a/b", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd"]
)
def test_names_never_leave_the_data_dir(studio, name):
    before = sorted(p.relative_to(studio.root) for p in studio.root.rglob("*"))
    for method, path in (("PUT", f"/api/specs/{name}"), ("PUT", f"/api/data/{name}")):
        r = studio.request(method, path, content=b'{"nodes": [], "links": []}')
        assert r.status_code in (400, 404), (path, r.status_code, r.text)
    assert studio.get(f"/api/specs/{name}").status_code in (400, 404)
    assert studio.get(f"/api/runs/{name}").status_code in (400, 404)
    assert sorted(p.relative_to(studio.root) for p in studio.root.rglob("*")) == before


def test_spec_file_paths_stay_inside_the_data_dir(studio, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("abc" * 100)
    os.symlink(tmp_path, studio.root / "data" / "link")
    for path in ("../../secret.txt", str(outside), "link/secret.txt"):
        spec = small_gpt()
        node(spec, "data")["params"].update(source="file", path=path)
        result = studio.post("/api/check", json=spec).json()
        assert not result["ok"]
        assert [e["node"] for e in result["errors"]] == ["data"], result["errors"]
        assert "data directory" in result["errors"][0]["message"]
        assert studio.post("/api/runs", json=spec).status_code == 422

    inside = studio.put("/api/data/notes.txt", content="hello studio\n" * 200)
    assert inside.status_code == 200
    assert (studio.root / "data" / "notes.txt").read_text().startswith("hello studio")
    spec = small_gpt()
    node(spec, "data")["params"].update(source="file", path="notes.txt")
    node(spec, "wte")["params"]["num_embeddings"] = 65
    result = studio.post("/api/check", json=spec).json()
    assert result["shapes"]["data:0"] == result["shapes"]["data:1"], result
    assert not [e for e in result["errors"] if "data directory" in e["message"]]


def test_studio_binds_loopback_by_default():
    from pyggml_train.cli import build_parser

    args = build_parser().parse_args(["studio"])
    assert (args.host, args.port) == ("127.0.0.1", 8000)


def test_missing_assets_say_how_to_get_them(tmp_path):
    from pyggml_train.studio import assets

    assert sorted(assets.missing(tmp_path)) == sorted(assets.FILES)
    how = assets.how_to_fetch()
    assert "npm" in how and "python -m pyggml_train.studio.assets" in how
    lock = json.loads((Path(assets.FRONTEND) / "package-lock.json").read_text())
    pinned = {
        k.removeprefix("node_modules/"): v["version"] for k, v in lock["packages"].items() if k
    }
    assert pinned["litegraph.js"] == "0.7.18" and pinned["chart.js"] == "4.6.1"


@pytest.mark.slow
def test_the_studio_command_serves_the_page(tmp_path):
    require_studio()
    import httpx

    with socket.socket() as s:  # a free loopback port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = child_env()
    cmd = [sys.executable, "-m", "pyggml_train.cli", "studio", "--port", str(port)]
    log = tmp_path / "studio.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*cmd, "--data-dir", str(tmp_path / "d")], env=env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the studio did not answer within 60 s"
                time.sleep(0.2)
        assert page.status_code == 200 and "litegraph" in page.text
        assert (tmp_path / "d" / "specs").is_dir() and (tmp_path / "d" / "runs").is_dir()
        assert f"http://127.0.0.1:{port}/" in log.read_text()  # says where to point the browser
    finally:
        proc.terminate()
        proc.wait(30)
