"""The workbench server under bad and concurrent traffic (docs/reliability.md): random
malformed requests never get a 5xx and never stop the server; 100 concurrent requests from
a bounded client on loopback all succeed and lose no saved state."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from helpers.env import REPO_ROOT, require
from helpers.studio_server import running_studio, seed_data_dir

SMALL_GPT = REPO_ROOT / "examples" / "specs" / "small-gpt.json"
PATHS = [
    "/api/check",
    "/api/script",
    "/api/specs/{name}",
    "/api/examples/{name}",
    "/api/data/{name}",
    "/api/runs",
    "/api/runs/{name}",
    "/api/runs/{name}/stop",
    "/api/runs/{name}/resume",
    "/api/runs/{name}/generate",
    "/api/runs/{name}/export",
    "/api/runs/{name}/files/{name}",
    "/api/compare?runs={name},{name}",
    "/api/sweeps",
    "/api/sweeps/{name}",
    "/api/sweeps/{name}/stop",
]
NAMES = ["x", "..", "%2e%2e", "a" * 300, "\u00e9t\u00e9", "%00", "a/b", "CON", " ", "-1"]


def bodies(rng: np.random.Generator) -> bytes:
    spec = json.loads(SMALL_GPT.read_text())
    kind = int(rng.integers(8))
    if kind == 0:
        return rng.bytes(int(rng.integers(0, 200)))
    if kind == 1:
        text = json.dumps(spec)
        return text[: int(rng.integers(len(text)))].encode()  # truncated JSON
    if kind == 2:
        return b"[" * 5000 + b"]" * 5000  # deep nesting
    if kind == 3:
        spec["nodes"][int(rng.integers(len(spec["nodes"])))]["params"] = {"x": [1, {"y": None}]}
        return json.dumps(spec).encode()
    if kind == 4:
        node = spec["nodes"][int(rng.integers(len(spec["nodes"])))]
        node["type"] = str(rng.choice(["", "nope", 3]))
        return json.dumps(spec).encode()
    if kind == 5:
        return json.dumps({"prompt": 5, "max_new_tokens": "many", "temperature": -1}).encode()
    if kind == 6:
        spec["links"] = [{"from": ["?", 99], "to": [None, -1]}]
        return json.dumps(spec).encode()
    return json.dumps([None, 3, "s", [], {}][int(rng.integers(5))]).encode()


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    import importlib.util

    missing = [m for m in ("starlette", "uvicorn", "httpx") if importlib.util.find_spec(m) is None]
    require(not missing, f"the studio's web stack is missing ({missing}): pip install '.[test]'")
    root = seed_data_dir(tmp_path_factory.mktemp("studio_rel"))
    with running_studio(root) as base:
        yield base, root


def test_malformed_requests_never_5xx_and_server_keeps_serving(studio):
    import httpx

    base, _ = studio
    rng = np.random.default_rng(0)
    with httpx.Client(base_url=base, timeout=60) as client:
        for _ in range(200):
            path = str(rng.choice(PATHS)).replace("{name}", str(rng.choice(NAMES)))
            method = str(rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH"]))
            r = client.request(method, path, content=bodies(rng))
            assert r.status_code < 500, f"{method} {path}: {r.status_code} {r.text[:300]}"
        assert client.get("/api/node-types").status_code == 200


def test_100_concurrent_requests_all_served_no_state_lost(studio):
    import httpx

    base, root = studio
    spec = json.loads(SMALL_GPT.read_text())

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=16)  # a bounded client
        async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
            jobs = []
            for i in range(100):
                kind = i % 4
                if kind == 0:
                    jobs.append(client.post("/api/check", json=spec))
                elif kind == 1:
                    jobs.append(client.put(f"/api/specs/burst{i}", json=spec))
                elif kind == 2:
                    jobs.append(client.get("/api/node-types"))
                else:
                    jobs.append(client.post("/api/check", content=b"{not json"))
            return await asyncio.gather(*jobs)

    responses = asyncio.run(burst())
    for i, r in enumerate(responses):
        want = 400 if i % 4 == 3 else 200
        assert r.status_code == want or (want == 400 and 400 <= r.status_code < 500), (
            i,
            r.status_code,
            r.text[:300],
        )
    import httpx as h

    saved = h.get(base + "/api/specs", timeout=60).json()
    for i in range(1, 100, 4):
        assert f"burst{i}" in saved
        assert h.get(f"{base}/api/specs/burst{i}", timeout=60).json() == spec
    assert h.get(base + "/api/runs", timeout=60).json() == []  # nothing started by accident
    assert not list(root.rglob("*.tmp"))
