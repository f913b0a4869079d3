"""Runs through the running studio: a worker process trains a tiny spec, its metrics come
over the WebSocket exactly as written to metrics.jsonl, a second start is "busy", a run
stopped and resumed computes the same losses as one never stopped, text is generated
from the latest checkpoint, and the exported script trains the same losses again."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers.env import child_env
from helpers.studio_server import require_studio, running_studio, seed_data_dir, studio_client

pytestmark = pytest.mark.slow  # each run trains in a worker process

TIMEOUT_S = 180


def tiny_spec(steps: int, name: str = "tiny") -> dict:
    """A 1-block, 32-wide char GPT-2 on tiny shakespeare: a step takes milliseconds."""
    nodes = [
        ("data", "TextDataset", {"source": "tinyshakespeare", "block_size": 32, "batch_size": 8}),
        ("wte", "Embedding", {"num_embeddings": 65, "embedding_dim": 32}),
        ("wpe", "PositionalEncoding", {"kind": "learned", "max_len": 32}),
        ("block0", "GPTBlock", {"d_model": 32, "nhead": 2, "dim_feedforward": 128}),
        ("ln_f", "LayerNorm", {"normalized_shape": 32}),
        (
            "head",
            "Linear",
            {"in_features": 32, "out_features": 65, "bias": False, "tie_weights": "wte"},
        ),
        ("loss", "Loss", {"lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 2, "steps": steps}),
    ]
    chain = ["data", "wte", "wpe", "block0", "ln_f", "head", "loss"]
    links = [{"from": [a, 0], "to": [b, 0]} for a, b in zip(chain, chain[1:], strict=False)]
    links.append({"from": ["data", 1], "to": ["loss", 1]})
    return {
        "version": 1,
        "name": name,
        "nodes": [{"id": i, "type": t, "params": p} for i, t, p in nodes],
        "links": links,
    }


class Events:
    """The studio's WebSocket, read until a condition holds."""

    def __init__(self, base: str):
        from websockets.sync.client import connect

        self._stack = contextlib.ExitStack()
        url = base.replace("http://", "ws://") + "/ws"
        self.ws = self._stack.enter_context(connect(url, open_timeout=30))
        self.hello = json.loads(self.ws.recv(timeout=30))
        assert self.hello["type"] == "hello"
        self.seen: list[dict] = []

    def until(self, done, timeout: float = TIMEOUT_S) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; last events: {self.seen[-5:]}"
            event = json.loads(self.ws.recv(timeout=left))
            self.seen.append(event)
            if done(event):
                return self.seen

    def close(self) -> None:
        self._stack.close()


def state_is(run_id: str, *states: str):
    return lambda e: e["type"] == "run" and e["run"]["id"] == run_id and e["run"]["state"] in states


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    with studio_client(tmp_path_factory.mktemp("studio-runs"), timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def finished_run(studio):
    """A 12-step run, with every event it sent."""
    events = Events(studio.ws_base)
    r = studio.post("/api/runs", json=tiny_spec(12))
    assert r.status_code == 201, r.text
    run = r.json()
    busy = studio.post("/api/runs", json=tiny_spec(12, "second"))
    assert busy.status_code == 409 and "busy" in busy.json()["error"], busy.text
    events.until(state_is(run["id"], "finished", "failed"))
    events.close()
    return run, events.seen


def test_metrics_arrive_over_the_websocket_as_written(studio, finished_run):
    run, seen = finished_run
    states = [e["run"]["state"] for e in seen if e["type"] == "run" and e["run"]["id"] == run["id"]]
    assert states[0] == "starting" and "running" in states and states[-1] == "finished", states
    metrics = [e for e in seen if e["type"] == "metrics" and e["run"] == run["id"]]
    assert [e["step"] for e in metrics] == list(range(1, 13))
    assert all(e["max_steps"] == 12 for e in metrics)
    assert metrics[-1]["progress"] == 1.0
    on_disk = [
        json.loads(line)
        for line in (studio.root / "runs" / run["id"] / "metrics.jsonl").read_text().splitlines()
    ]
    for event, record in zip(metrics, on_disk, strict=True):
        for key in ("step", "train_loss", "val_loss", "lr", "tokens_per_s", "elapsed_s"):
            assert event[key] == record[key], key
    losses = [e["train_loss"] for e in metrics]
    assert np.mean(losses[-3:]) < losses[0] - 0.3, losses  # ln 65 = 4.17 at the start
    assert all(0 < e["lr"] <= 3e-3 for e in metrics) and all(e["tokens_per_s"] > 0 for e in metrics)
    assert sum(e["val_loss"] is not None for e in metrics) >= 2

    detail = studio.get(f"/api/runs/{run['id']}").json()
    assert detail["state"] == "finished" and detail["checkpoint"] and not detail["resumable"]
    assert [m["train_loss"] for m in detail["metrics"]] == losses
    assert any(e["type"] == "log" for e in seen)


def test_generate_from_the_latest_checkpoint(studio, finished_run):
    run, _ = finished_run
    url = f"/api/runs/{run['id']}/generate"
    greedy = studio.post(url, json={"prompt": "ROMEO:", "temperature": 0, "max_new_tokens": 24})
    assert greedy.status_code == 200, greedy.text
    text = greedy.json()["text"]
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 24
    # keeping only the most likely token is greedy decoding, whatever the temperature
    top1 = {"prompt": "ROMEO:", "temperature": 1.5, "top_k": 1, "max_new_tokens": 24, "seed": 7}
    assert studio.post(url, json=top1).json()["text"] == text
    sampled = {"prompt": "ROMEO:", "temperature": 0.9, "top_k": 10, "max_new_tokens": 24}
    a, b = (studio.post(url, json={**sampled, "seed": 3}).json()["text"] for _ in range(2))
    assert a == b and a.startswith("ROMEO:")
    for bad in ({"temperature": -1}, {"top_k": 0}, {"max_new_tokens": 0}, {"prompt": 5}):
        r = studio.post(url, json=bad)
        assert r.status_code == 400 and r.json()["error"], (bad, r.text)


def test_stop_then_resume_computes_the_losses_of_an_unstopped_run(studio):
    events = Events(studio.ws_base)
    run = studio.post("/api/runs", json=tiny_spec(30, "stopped")).json()
    # stop at once: the worker asks after every step, so it stops early whatever the
    # machine's speed (waiting for step 5 first raced a quiet machine's 30 quick steps)
    stopping = studio.post(f"/api/runs/{run['id']}/stop")
    assert stopping.status_code == 200 and stopping.json()["state"] == "stopping"
    events.until(state_is(run["id"], "stopped", "failed", "finished"))
    stopped = studio.get(f"/api/runs/{run['id']}").json()
    assert stopped["state"] == "stopped" and stopped["resumable"], stopped
    assert stopped["step"] < 30
    assert studio.post(f"/api/runs/{run['id']}/stop").status_code == 409  # nothing to stop

    assert studio.post(f"/api/runs/{run['id']}/resume").status_code == 200
    events.until(state_is(run["id"], "finished", "failed"))
    resumed = studio.get(f"/api/runs/{run['id']}").json()
    assert resumed["state"] == "finished", resumed
    assert [m["step"] for m in resumed["metrics"]] == list(range(1, 31))

    whole = studio.post("/api/runs", json=tiny_spec(30, "whole")).json()
    events.until(state_is(whole["id"], "finished", "failed"))
    events.close()
    reference = studio.get(f"/api/runs/{whole['id']}").json()
    np.testing.assert_allclose(
        [m["train_loss"] for m in resumed["metrics"]],
        [m["train_loss"] for m in reference["metrics"]],
        rtol=1e-6,
    )


def test_exported_script_reproduces_the_run(studio, finished_run, tmp_path):

    run, _ = finished_run
    r = studio.get(f"/api/runs/{run['id']}/script")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/x-python")
    assert studio.post("/api/script", json=tiny_spec(12)).text == r.text  # the page's button
    script = tmp_path / "reproduce.py"
    script.write_text(r.text)
    env = child_env()
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            "--out-dir",
            str(out),
            "--data-dir",
            str(studio.root / "data"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "final val loss" in proc.stdout
    ours = [
        json.loads(line)["train_loss"] for line in (out / "metrics.jsonl").read_text().splitlines()
    ]
    studio_run = studio.get(f"/api/runs/{run['id']}").json()["metrics"]
    np.testing.assert_allclose(ours, [m["train_loss"] for m in studio_run], rtol=1e-6)


def _processes_writing(path: Path) -> list[int]:
    """Pids with ``path`` open (Linux /proc)."""
    pids = []
    for fds in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == str(path) for fd in fds.iterdir()):
                pids.append(int(fds.parent.name))
        except OSError:  # a process that ended, or one we may not inspect
            continue
    return pids


def test_a_worker_outliving_a_killed_server_stops_at_a_checkpoint(tmp_path):
    """SIGKILL the studio mid-run: its worker notices, checkpoints and exits; a new studio
    lists the run as stopped and resumable."""
    import signal

    import httpx

    require_studio()
    root = seed_data_dir(tmp_path / "d")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = child_env()
    cmd = [sys.executable, "-m", "pyggml_train.cli", "studio", "--port", str(port)]
    with (tmp_path / "studio.log").open("w") as out:
        server = subprocess.Popen([*cmd, "--data-dir", str(root)], env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                run = httpx.post(base + "/api/runs", json=tiny_spec(100000), timeout=30).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.2)
        run_dir = root / "runs" / run["id"]
        while not (run_dir / "metrics.jsonl").is_file() or not (
            run_dir / "metrics.jsonl"
        ).read_text().count("\n"):
            assert time.monotonic() < deadline + TIMEOUT_S, "no step was trained"
            time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(30)
    deadline = time.monotonic() + TIMEOUT_S
    while not (run_dir / "result.json").is_file():
        assert time.monotonic() < deadline, "the orphaned worker did not stop"
        time.sleep(0.2)
    # and it exits: no process keeps writing the run's log
    while _processes_writing(run_dir / "log.txt"):
        assert time.monotonic() < deadline, "the orphaned worker stopped but did not exit"
        time.sleep(0.2)
    assert json.loads((run_dir / "result.json").read_text())["state"] == "stopped"
    with running_studio(root) as base2:
        listed = httpx.get(base2 + f"/api/runs/{run['id']}", timeout=30).json()
    assert listed["state"] == "stopped" and listed["resumable"], listed


def test_export_goes_through_pyggml_train_export(studio, finished_run):
    """The run's checkpoint is handed to `pyggml-train export`; its spec is GPT-2-shaped, so
    it exports (tests/spec/test_spec_export.py checks the logits; other specs get a 422)."""
    run, _ = finished_run
    url = f"/api/runs/{run['id']}/export"
    assert studio.post(url, json={"format": "onnx"}).status_code == 400
    r = studio.post(url, json={"format": "gguf"})
    assert r.status_code == 200, r.text
    assert r.json()["path"] == "exports/model.gguf" and "wrote" in r.json()["log"], r.json()
    assert (studio.root / "runs" / run["id"] / r.json()["path"]).is_file()
    assert studio.get(f"/api/runs/{run['id']}/files/{r.json()['path']}").status_code == 200
    assert r.json()["download"] == "exports/model.gguf"
    r = studio.post(url, json={"format": "hf"})
    assert r.status_code == 200, r.text
    hf = studio.root / "runs" / run["id"] / r.json()["path"]
    assert (hf / "config.json").is_file()
    # a directory downloads as a zip holding exactly its files
    assert r.json()["download"] == "exports/hf.zip"
    got = studio.get(f"/api/runs/{run['id']}/files/{r.json()['download']}")
    assert got.status_code == 200
    with zipfile.ZipFile(io.BytesIO(got.content)) as z:
        zipped = {name: z.read(name) for name in z.namelist()}
    files = {
        f"hf/{f.relative_to(hf).as_posix()}": f.read_bytes() for f in hf.rglob("*") if f.is_file()
    }
    assert zipped == files
    assert "hf/config.json" in zipped


def test_run_files_download_inside_the_run_only(studio, finished_run):
    run, _ = finished_run
    base = f"/api/runs/{run['id']}/files"
    ckpt = studio.get(f"{base}/checkpoint.npz")
    assert ckpt.status_code == 200
    assert ckpt.content == (studio.root / "runs" / run["id"] / "checkpoint.npz").read_bytes()
    for name in ("..%2F..%2Fspecs", "%2Fetc%2Fpasswd", "data%2F..%2F..%2F..%2Frun.json"):
        assert studio.get(f"{base}/{name}").status_code in (400, 404), name
