"""Comparing runs and sweeping parameters through the running studio, with real runs of a
tiny spec: the comparison's numbers equal those in the runs' metrics files and checkpoints,
the differing spec fields are exactly the changed ones, runs rename and delete; a sweep trains
every combination one at a time with the swept values in each run's spec, marks the run of
the lowest validation loss, stops cleanly and carries on after a server restart. Bad input
gets a 4xx that says what was wrong (those tests train nothing, so they are not slow)."""

from __future__ import annotations

import json
import statistics
import time

import pytest
from helpers.specs import node, tiny
from helpers.studio_server import require_studio, running_studio, seed_data_dir, studio_client

TIMEOUT_S = 180
FINAL = ("finished", "stopped", "failed")


def tiny_spec(steps: int, lr: float = 3e-3, name: str = "tiny") -> dict:
    spec = tiny(c=16, blocks=1, heads=2, t=8)
    spec["name"] = name
    node(spec, "loss")["params"].update(steps=steps, lr=lr, warmup_steps=1)
    return spec


def wait(client, path: str, done, timeout: float = TIMEOUT_S) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(path).json()
        if done(body):
            return body
        assert time.monotonic() < deadline, f"timed out waiting on {path}: {body}"
        time.sleep(0.2)


def run_to_end(client, spec: dict) -> dict:
    r = client.post("/api/runs", json=spec)
    assert r.status_code == 201, r.text
    return wait(client, f"/api/runs/{r.json()['id']}", lambda b: b["state"] in FINAL)


def metrics_file(root, run_id: str) -> list[dict]:
    lines = (root / "runs" / run_id / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line]


def best_val(records: list[dict]) -> float:
    return min(r["val_loss"] for r in records if r["val_loss"] is not None)


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    with studio_client(tmp_path_factory.mktemp("studio-compare"), timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def two_runs(studio):
    """Two finished runs that differ in the learning rate only; the second states a default
    (GPTBlock dropout 0) that the first leaves out."""
    a = run_to_end(studio, tiny_spec(6, lr=3e-3, name="a"))
    spec_b = tiny_spec(6, lr=1e-3, name="b")
    node(spec_b, "b0")["params"]["dropout"] = 0.0
    b = run_to_end(studio, spec_b)
    assert a["state"] == b["state"] == "finished", (a["message"], b["message"])
    return a, b


@pytest.mark.slow  # trains in a worker process
def test_comparison_numbers_are_the_metrics_files(studio, two_runs):
    from pyggml_train.checkpoint import load_checkpoint

    a, b = two_runs
    r = studio.get(f"/api/compare?runs={a['id']},{b['id']}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert [row["id"] for row in body["runs"]] == [a["id"], b["id"]]
    for row in body["runs"]:
        records = metrics_file(studio.root, row["id"])
        vals = [rec["val_loss"] for rec in records if rec["val_loss"] is not None]
        assert len(vals) >= 2
        assert row["final_val_loss"] == vals[-1]
        assert row["best_val_loss"] == min(vals)
        assert records[row["best_val_step"] - 1]["val_loss"] == min(vals)
        assert row["final_train_loss"] == records[-1]["train_loss"]
        rates = [rec["tokens_per_s"] for rec in records]
        assert row["tokens_per_s"] == pytest.approx(statistics.fmean(rates), rel=1e-12)
        ckpt = load_checkpoint(studio.root / "runs" / row["id"] / "checkpoint.npz")
        assert row["parameters"] == sum(p.size for p in ckpt.params.values())
        # 1 block of width 16, vocab 65, 64 learned positions, a head with bias, by hand
        block = 2 * 16 + (16 * 48 + 48) + (16 * 16 + 16) + 2 * 16 + (16 * 64 + 64) + (64 * 16 + 16)
        assert row["parameters"] == 65 * 16 + 64 * 16 + block + 2 * 16 + (16 * 65 + 65)
        curves = row["curves"]
        assert curves["step"] == [rec["step"] for rec in records] == list(range(1, 7))
        assert curves["tokens"] == [s * 2 * 8 for s in curves["step"]]  # batch 2 x block 8
        assert curves["elapsed_s"] == [rec["elapsed_s"] for rec in records]
        assert curves["val_loss"] == [rec["val_loss"] for rec in records]
    # only the learning rate differs: the stated default dropout is no difference
    assert body["differences"] == [{"field": "loss.lr", "values": [3e-3, 1e-3]}]


@pytest.mark.slow  # trains in a worker process
def test_compare_refuses_bad_input(studio, two_runs):
    a, _ = two_runs
    for query, status, words in [
        ("", 400, "no runs"),
        ("?runs=", 400, "no runs"),
        (f"?runs={a['id']},nope", 404, "nope"),
        ("?runs=..%2Fspecs", 400, "not allowed"),
        ("?runs=" + ",".join([a["id"]] * 21), 400, "at most"),
    ]:
        r = studio.get("/api/compare" + query)
        assert r.status_code == status and words in r.json()["error"], (query, r.text)


@pytest.mark.slow  # trains in a worker process
def test_rename_and_delete_runs(studio, two_runs):
    a, _ = two_runs
    url = f"/api/runs/{a['id']}"
    r = studio.patch(url, json={"name": "  lr 3e-3  "})
    assert r.status_code == 200 and r.json()["name"] == "lr 3e-3", r.text
    assert studio.get(url).json()["name"] == "lr 3e-3"
    on_disk = json.loads((studio.root / "runs" / a["id"] / "run.json").read_text())
    assert on_disk["name"] == "lr 3e-3"
    assert studio.get(f"/api/compare?runs={a['id']}").json()["runs"][0]["name"] == "lr 3e-3"
    for bad in ({"name": ""}, {"name": "   "}, {"name": 5}, {}, {"name": "x" * 101}):
        r = studio.patch(url, json=bad)
        assert r.status_code == 400 and "name" in r.json()["error"], (bad, r.text)
    assert studio.patch(url, content=b"{oops").status_code == 400
    assert studio.patch("/api/runs/nope", json={"name": "x"}).status_code == 404
    assert studio.get(url).json()["name"] == "lr 3e-3"  # the refusals changed nothing

    doomed = run_to_end(studio, tiny_spec(2, name="doomed"))
    assert studio.delete(f"/api/runs/{doomed['id']}").json() == {"deleted": doomed["id"]}
    assert not (studio.root / "runs" / doomed["id"]).exists()
    assert studio.get(f"/api/runs/{doomed['id']}").status_code == 404
    assert doomed["id"] not in [run["id"] for run in studio.get("/api/runs").json()]
    assert studio.delete(f"/api/runs/{doomed['id']}").status_code == 404

    active = studio.post("/api/runs", json=tiny_spec(5000, name="active")).json()
    r = studio.delete(f"/api/runs/{active['id']}")
    assert r.status_code == 409 and "stop it" in r.json()["error"], r.text
    studio.post(f"/api/runs/{active['id']}/stop")
    wait(studio, f"/api/runs/{active['id']}", lambda b: b["state"] in FINAL)
    assert (studio.root / "runs" / active["id"] / "spec.json").is_file()  # still there


def sweep_request(steps: int) -> dict:
    return {
        "spec": tiny_spec(steps, name="grid"),
        "axes": [
            {"node": "loss", "param": "lr", "values": [3e-3, 1e-2]},
            {"node": "data", "param": "batch_size", "values": [2, 4]},
        ],
    }


@pytest.mark.slow  # trains in a worker process
def test_a_2x2_sweep_trains_every_combination_and_marks_the_best(studio, two_runs):
    r = studio.post("/api/sweeps", json=sweep_request(5))
    assert r.status_code == 201, r.text
    sweep = r.json()
    assert [i["values"] for i in sweep["items"]] == [
        {"loss.lr": lr, "data.batch_size": b} for lr in (3e-3, 1e-2) for b in (2, 4)
    ]
    again = studio.post("/api/sweeps", json=sweep_request(5))
    assert again.status_code == 409 and "one sweep at a time" in again.json()["error"]

    url = f"/api/sweeps/{sweep['id']}"
    done = wait(studio, url, lambda s: s["state"] not in ("running", "stopping"), 4 * TIMEOUT_S)
    assert done["state"] == "finished" and done["done"] == 4, done
    assert studio.get("/api/sweeps").json()[-1]["id"] == sweep["id"]  # what a reload reads
    losses = {}
    for item in done["items"]:
        assert item["state"] == "finished", item
        spec = json.loads((studio.root / "runs" / item["run"] / "spec.json").read_text())
        assert node(spec, "loss")["params"]["lr"] == item["values"]["loss.lr"]
        assert node(spec, "data")["params"]["batch_size"] == item["values"]["data.batch_size"]
        records = metrics_file(studio.root, item["run"])
        assert [rec["step"] for rec in records] == list(range(1, 6))
        losses[item["run"]] = best_val(records)
        assert item["best_val_loss"] == losses[item["run"]]
    assert done["best"] == min(losses, key=losses.get)
    # one at a time: each run was created after the previous one had finished
    created = [studio.get(f"/api/runs/{i['run']}").json()["created"] for i in done["items"]]
    ends = [
        created[k] + metrics_file(studio.root, i["run"])[-1]["elapsed_s"]
        for k, i in enumerate(done["items"])
    ]
    assert all(ends[k] <= created[k + 1] for k in range(3)), (created, ends)

    r = studio.post(f"{url}/stop")
    assert r.status_code == 409 and "finished" in r.json()["error"]


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        (lambda q: q["axes"][0].update(values=[]), 400, "no values"),
        (lambda q: q.update(axes=[]), 400, "one or two"),
        (lambda q: q["axes"].append(dict(q["axes"][0])), 400, "one or two"),
        (lambda q: q["axes"][1].update(node="nope"), 400, "no node 'nope'"),
        (lambda q: q["axes"][1].update(param="width"), 400, "no parameter 'width'"),
        (lambda q: q["axes"][0].update(values=[1e-3, 1e-3]), 400, "repeats"),
        (lambda q: q["axes"][1].update(node="loss", param="lr"), 400, "different"),
        (lambda q: q["axes"][0].update(values=list(range(1, 18))), 400, "at most 16"),
        (lambda q: q["axes"][0].update(values=[1e-3, -1.0]), 422, "lr=-1.0"),
        (lambda q: q.update(spec=[1]), 400, "spec"),
        (lambda q: q.pop("axes"), 400, "axes"),
    ],
)
def test_a_bad_sweep_is_refused_and_nothing_runs(studio, change, status, words):
    before = studio.get("/api/runs").json()
    query = sweep_request(5)
    change(query)
    r = studio.post("/api/sweeps", json=query)
    assert r.status_code == status and words in r.json()["error"], r.text
    assert studio.get("/api/runs").json() == before


def test_unknown_sweep_is_404(studio):
    assert studio.get("/api/sweeps/nope").status_code == 404
    assert studio.post("/api/sweeps/nope/stop").status_code == 404
    assert studio.get("/api/sweeps/..%2Fruns").status_code in (400, 404)


@pytest.mark.slow  # trains in a worker process
def test_stopping_a_sweep_stops_its_run_and_cancels_the_rest(studio, two_runs):
    query = sweep_request(5000)
    query["axes"].pop()
    sweep = studio.post("/api/sweeps", json=query).json()
    url = f"/api/sweeps/{sweep['id']}"
    first = wait(studio, url, lambda s: s["items"][0]["run"] is not None)["items"][0]["run"]
    wait(studio, f"/api/runs/{first}", lambda b: b["step"] >= 1)
    r = studio.post(f"{url}/stop")
    assert r.status_code == 200 and r.json()["state"] in ("stopping", "stopped"), r.text
    done = wait(studio, url, lambda s: s["state"] == "stopped")
    assert [i["state"] for i in done["items"]] == ["stopped", "cancelled"]
    assert done["items"][1]["run"] is None and "after 1 of 2" in done["message"]
    run = studio.get(f"/api/runs/{first}").json()
    assert run["state"] == "stopped" and run["step"] < 5000
    assert not [r for r in studio.get("/api/runs").json() if r["state"] in ("running", "starting")]
    assert json.loads((studio.root / "sweeps" / f"{sweep['id']}.json").read_text())["state"] == (
        "stopped"
    )


@pytest.mark.slow  # trains in a worker process
def test_a_sweep_carries_on_after_a_server_restart(tmp_path):
    require_studio()
    import httpx

    root = seed_data_dir(tmp_path / "studio")
    query = sweep_request(2000)  # long enough to be mid-run after its first checkpoint
    query["axes"].pop()
    with running_studio(root) as base, httpx.Client(base_url=base, timeout=60) as client:
        sweep = client.post("/api/sweeps", json=query).json()
        url = f"/api/sweeps/{sweep['id']}"
        first = wait(client, url, lambda s: s["items"][0]["run"] is not None)["items"][0]["run"]
        wait(client, f"/api/runs/{first}", lambda b: b["checkpoint"] and b["step"] < 2000)
    # the server shut down mid-run: its run stopped at a checkpoint, the sweep is still queued
    assert json.loads((root / "sweeps" / f"{sweep['id']}.json").read_text())["state"] == "running"
    with running_studio(root) as base, httpx.Client(base_url=base, timeout=60) as client:
        done = wait(client, url, lambda s: s["state"] != "running", 4 * TIMEOUT_S)
        assert done["state"] == "finished", done
        assert [i["state"] for i in done["items"]] == ["finished", "finished"]
        assert done["items"][0]["run"] == first  # resumed, not started again
        records = metrics_file(root, first)
        assert [rec["step"] for rec in records] == list(range(1, 2001))


def width_grouped_spec(steps: int) -> dict:
    """tiny()'s layers as one group, "model", exposing the width they share: the one way to
    sweep a width (a sweep varies one node's parameter)."""
    spec = tiny_spec(steps, name="wide")
    layers = [n for n in spec["nodes"] if n["id"] not in ("data", "loss")]
    chain = [n["id"] for n in layers]
    spec["groups"] = {
        "model": {
            "title": "model",
            "nodes": layers,
            "links": [
                {"from": [a, 0], "to": [b, 0]} for a, b in zip(chain[:-1], chain[1:], strict=True)
            ],
            "inputs": [{"name": "ids", "to": [["emb", 0]]}],
            "outputs": [{"name": "logits", "from": ["head", 0]}],
            "params": [
                {
                    "name": "width",
                    "binds": [
                        ["emb", "embedding_dim"],
                        ["b0", "d_model"],
                        ["ln", "normalized_shape"],
                        ["head", "in_features"],
                    ],
                }
            ],
        }
    }
    group = {"id": "model", "type": "Group", "group": "model", "params": {"width": 16}}
    spec["nodes"] = [node(spec, "data"), group, node(spec, "loss")]
    spec["links"] = [
        {"from": ["data", 0], "to": ["model", 0]},
        {"from": ["model", 0], "to": ["loss", 0]},
        {"from": ["data", 1], "to": ["loss", 1]},
    ]
    return spec


@pytest.mark.slow  # trains in a worker process
def test_a_sweep_varies_a_width_shared_by_several_nodes_through_a_group(studio, two_runs):
    from pyggml_train.checkpoint import load_checkpoint

    widths = [16, 24]
    r = studio.post(
        "/api/sweeps",
        json={
            "spec": width_grouped_spec(4),
            "axes": [
                {"node": "loss", "param": "lr", "values": [3e-3, 1e-2]},
                {"node": "model", "param": "width", "values": widths},
            ],
        },
    )
    assert r.status_code == 201, r.text
    url = f"/api/sweeps/{r.json()['id']}"
    done = wait(studio, url, lambda s: s["state"] not in ("running", "stopping"), 4 * TIMEOUT_S)
    assert done["state"] == "finished" and done["done"] == 4, done
    for item in done["items"]:
        width = item["values"]["model.width"]
        spec = json.loads((studio.root / "runs" / item["run"] / "spec.json").read_text())
        assert node(spec, "model")["params"]["width"] == width
        # every layer took the width: the embedding table is (vocabulary, width)
        params = load_checkpoint(studio.root / "runs" / item["run"] / "checkpoint.npz").params
        tables = [a.shape for a in params.values() if a.ndim == 2 and a.shape[0] == 65]
        assert tables and all(shape == (65, width) for shape in tables), tables
    bad = studio.post(
        "/api/sweeps",
        json={
            "spec": width_grouped_spec(4),
            "axes": [{"node": "model", "param": "depth", "values": [1, 2]}],
        },
    )
    assert bad.status_code == 400 and "['repeat', 'width']" in bad.json()["error"], bad.text
