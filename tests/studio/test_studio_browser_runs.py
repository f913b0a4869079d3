"""Comparing runs and sweeping parameters in Debian's headless Chromium, clicking as a person
does: train two tiny runs, tick them in the comparison view, read their numbers (equal to the
runs' metrics files and checkpoints) and curves, rename one, delete the other; queue a 2 x 2
sweep, watch it finish with the best run marked and the comparison open on its runs, reload
the page and find it again, then stop a long sweep by its button. Also the feedback fixes:
generated text goes when a new run starts, the HF export downloads as a zip, the lr axis
reads like a number.
With PYGGML_SCREENSHOTS=1 it saves docs/compare.png and docs/sweep.png (docs/workbench.md)."""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
from helpers.env import REPO_ROOT
from helpers.specs import gpt2_spec, node
from helpers.studio_browser import set_param, studio_page
from helpers.studio_server import seed_data_dir

pytestmark = pytest.mark.slow  # drives a browser and trains

TIMEOUT_MS = 300_000
SHOWN = "(studio.state.runs.get(studio.state.shown) || {})"


def tiny_spec(steps: int, name: str) -> dict:
    """GPT-2's shape (so it exports as HF), 16 wide, 1 block, 8 tokens, batch 2."""
    spec = gpt2_spec(c=16, blocks=1, heads=2, t=8)
    spec["name"] = name
    node(spec, "loss")["params"].update(steps=steps, lr=3e-3, warmup_steps=4)
    return spec


def records(root: Path, run_id: str) -> list[dict]:
    text = (root / "runs" / run_id / "metrics.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line]


def vals(rows: list[dict]) -> list[float]:
    return [r["val_loss"] for r in rows if r["val_loss"] is not None]


def upload(page, tmp_path: Path, spec: dict) -> None:
    path = tmp_path / f"{spec['name']}.json"
    path.write_text(json.dumps(spec))
    page.set_input_files("#upload-file", str(path))
    page.wait_for_function(f"document.querySelector('#spec-name').value === {spec['name']!r}")
    page.wait_for_function("studio.state.check && studio.state.check.ok", timeout=30_000)


def train_to_end(page) -> str:
    before = page.evaluate("studio.state.shown")
    page.click("#train")
    page.wait_for_function(f"studio.state.shown && studio.state.shown !== {json.dumps(before)}")
    page.wait_for_function(f"['finished', 'failed'].includes({SHOWN}.state)", timeout=TIMEOUT_MS)
    assert page.evaluate(f"{SHOWN}.state") == "finished", page.evaluate(f"{SHOWN}.message")
    return page.evaluate("studio.state.shown")


def shot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path))
    if os.environ.get("PYGGML_SCREENSHOTS") == "1":
        shutil.copy(path, REPO_ROOT / "docs" / name)


def table(page, selector: str) -> list[dict]:
    """A table's rows as {header: cell text}, with the row's run id under "run id"."""
    return page.evaluate(
        """(sel) => {
          const rows = [...document.querySelectorAll(sel + ' tr')];
          const head = [...rows[0].children].map((c) => c.textContent);
          return rows.slice(1).map((r) => Object.fromEntries([
            ['run id', r.dataset.run], ['class', r.className],
            ...[...r.children].map((c, i) => [head[i], c.textContent])]));
        }""",
        selector,
    )


@pytest.fixture
def studio(tmp_path):
    root = seed_data_dir(tmp_path / "studio")
    with studio_page(root) as page:
        yield page, root


def test_compare_two_runs_rename_and_delete(studio, tmp_path):
    import httpx

    from pyggml_train.checkpoint import load_checkpoint

    page, root = studio
    upload(page, tmp_path, tiny_spec(8, "cmp"))
    first = train_to_end(page)

    # the lr axis at step 1 reads as a number (it read "1.0500000E-5"): the run's first record
    step1 = records(root, first)[0]
    ticks = page.evaluate(
        "(e) => { studio.curves.clear(); studio.curves.add(e, false); studio.curves.update();"
        " return studio.curves.rate.scales.y.ticks.map((t) => [t.value, t.label]); }",
        step1,
    )
    assert len(ticks) >= 2 and step1["lr"] < 1e-3, (ticks, step1)
    for value, label in ticks:
        assert len(label) <= 7 and "E" not in label, label
        assert float(label) == pytest.approx(value, rel=0.01, abs=1e-12), (value, label)

    # HF export: a zip downloads, holding the exported directory
    with page.expect_download() as download:
        page.click("#export-hf")
    hf = root / "runs" / first / "exports" / "hf"
    with zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())) as z:
        names = set(z.namelist())
    assert names == {f"hf/{f.relative_to(hf).as_posix()}" for f in hf.rglob("*") if f.is_file()}
    assert "hf/config.json" in names

    # text generated from the first run goes when the next run starts
    page.fill("#prompt", "ROMEO:")
    page.fill("#max-tokens", "20")
    page.click("#generate")
    page.wait_for_function("document.querySelector('#generated').textContent.length === 26")
    set_param(page, "loss", "lr", 1e-3)
    page.wait_for_function(
        "studio.state.check && studio.state.check.ok && studio.state.checkedText.includes('0.001')"
    )
    second = train_to_end(page)
    assert page.inner_text("#generated") == ""

    # tick both runs in the comparison view
    page.click("#compare-open")
    page.wait_for_selector("#compare-view[open]")
    for run in (first, second):
        box = f"#compare-view li[data-run='{run}'] input[type=checkbox]"
        if not page.is_checked(box):
            page.check(box)
    page.wait_for_function("document.querySelectorAll('#compare-view .cmp-table tr').length === 3")
    rows = {r["run id"]: r for r in table(page, "#compare-view .cmp-table")}
    for run, lr in ((first, "0.003"), (second, "0.001")):
        recs = records(root, run)
        params = load_checkpoint(root / "runs" / run / "checkpoint.npz").params
        best = min(vals(recs))
        best_step = next(r["step"] for r in recs if r["val_loss"] == best)
        row = rows[run]
        assert row["final val"] == f"{vals(recs)[-1]:.4f}", row
        assert row["best val (step)"] == f"{best:.4f} ({best_step})", row
        assert row["parameters"] == f"{sum(p.size for p in params.values()):,}", row
        assert row["steps"] == "8" and row["loss.lr"] == lr, row
    assert [c for c in rows[first] if "." in c and c != "best val (step)"] == ["loss.lr"]

    # both runs' curves are drawn; against tokens, x is step x 16 (batch 2 x 8 tokens)
    drawn = page.evaluate("studio.compare.chart.drawn()")
    train = {d["run"]: d["points"] for d in drawn if d["series"] == "train"}
    assert set(train) == {first, second}
    for run, points in train.items():
        assert [p["x"] for p in points] == list(range(1, 9))
        assert [p["y"] for p in points] == [r["train_loss"] for r in records(root, run)]
        assert all(p["px"] is not None for p in points)
    page.select_option("#compare-view .cmp-x", "tokens")
    drawn = page.evaluate("studio.compare.chart.drawn()")
    assert [p["x"] for p in drawn[0]["points"]] == [16 * s for s in range(1, 9)]
    shot(page, tmp_path, "compare.png")

    # rename the first: click the pencil, type, Enter
    page.click(f"#compare-view li[data-run='{first}'] button.rename")
    page.fill(f"#compare-view li[data-run='{first}'] input[type=text]", "lr 3e-3")
    page.press(f"#compare-view li[data-run='{first}'] input[type=text]", "Enter")
    page.wait_for_function(
        f"[...document.querySelectorAll('#compare-view .cmp-table tr')]"
        f".some((r) => r.dataset.run === '{first}' && r.textContent.includes('lr 3e-3'))"
    )
    with httpx.Client(base_url=page.base_url) as client:
        assert client.get(f"/api/runs/{first}").json()["name"] == "lr 3e-3"

        # delete the second: the bin, then confirm
        page.once("dialog", lambda dialog: dialog.accept())
        page.click(f"#compare-view li[data-run='{second}'] button.delete")
        gone = f"#compare-view li[data-run='{second}']"
        page.wait_for_function(f"!document.querySelector({gone!r})")
        assert client.get(f"/api/runs/{second}").status_code == 404
    assert not (root / "runs" / second).exists()
    page.wait_for_function("document.querySelectorAll('#compare-view .cmp-table tr').length === 2")
    assert [r["run id"] for r in table(page, "#compare-view .cmp-table")] == [first]
    options = page.evaluate("[...document.querySelectorAll('#runs option')].map((o) => o.value)")
    assert options == [first]


def test_a_2x2_sweep_in_the_browser(studio, tmp_path):
    page, root = studio
    upload(page, tmp_path, tiny_spec(6, "grid"))
    page.click("#sweep-open")
    page.wait_for_selector("#sweep-view[open]")
    axis = "#sweep-view .axis[data-axis='{}'] .{}"
    page.select_option(axis.format(0, "node"), "loss")
    page.select_option(axis.format(0, "param"), "lr")
    page.fill(axis.format(0, "values"), "0.003, 0.01")
    page.select_option(axis.format(1, "node"), "data")
    page.select_option(axis.format(1, "param"), "batch_size")
    page.fill(axis.format(1, "values"), "2, 4")
    assert page.inner_text("#sweep-view .count") == "4 runs"
    page.click("#sweep-view .start")
    page.wait_for_function("document.querySelectorAll('#sweep-view .sweep-table tr').length === 5")
    assert page.is_disabled("#sweep-view .start")  # one sweep at a time

    # when it finishes, the comparison opens on its four runs
    page.wait_for_selector("#compare-view[open]", timeout=4 * TIMEOUT_MS)
    page.wait_for_function("document.querySelectorAll('#compare-view .cmp-table tr').length === 5")
    compared = {r["run id"] for r in table(page, "#compare-view .cmp-table")}
    page.click("#compare-view .close")

    page.click("#sweep-open")
    rows = table(page, "#sweep-view .sweep-table")
    assert {r["run id"] for r in rows} == compared and len(compared) == 4
    best = {}
    for row in rows:
        assert row["state"] == "finished", row
        spec = json.loads((root / "runs" / row["run id"] / "spec.json").read_text())
        assert row["loss.lr"] == str(node(spec, "loss")["params"]["lr"])
        assert row["data.batch_size"] == str(node(spec, "data")["params"]["batch_size"])
        best[row["run id"]] = min(vals(records(root, row["run id"])))
        assert row["best val"] == f"{best[row['run id']]:.4f}"
    assert {(r["loss.lr"], r["data.batch_size"]) for r in rows} == {
        (lr, b) for lr in ("0.003", "0.01") for b in ("2", "4")
    }
    marked = [r["run id"] for r in rows if r["best"] == "★"]
    assert marked == [min(best, key=best.get)]
    assert "4 of 4" in page.inner_text("#sweep-view .state")
    shot(page, tmp_path, "sweep.png")

    # the sweep lives on the server: a reloaded page shows it again
    page.reload()
    page.wait_for_function("window.studio && window.studio.ready", timeout=30_000)
    page.click("#sweep-open")
    page.wait_for_function("document.querySelectorAll('#sweep-view .sweep-table tr').length === 5")
    again = table(page, "#sweep-view .sweep-table")
    assert [(r["run id"], r["best"]) for r in again] == [(r["run id"], r["best"]) for r in rows]

    # a long sweep, stopped by its button: its run stops at a checkpoint, the rest is cancelled
    page.click("#sweep-view .close")
    upload(page, tmp_path, tiny_spec(5000, "long"))
    page.click("#sweep-open")
    page.select_option(axis.format(0, "node"), "loss")
    page.select_option(axis.format(0, "param"), "lr")
    page.fill(axis.format(0, "values"), "0.003, 0.01")
    page.select_option(axis.format(1, "node"), "")
    assert page.inner_text("#sweep-view .count") == "2 runs"
    page.click("#sweep-view .start")
    page.wait_for_function(f"{SHOWN}.state === 'running' && {SHOWN}.step >= 1", timeout=TIMEOUT_MS)
    page.click("#sweep-view .stop")
    page.wait_for_function(
        "document.querySelector('#sweep-view .state').textContent.startsWith('stopped')",
        timeout=TIMEOUT_MS,
    )
    states = [r["state"] for r in table(page, "#sweep-view .sweep-table")]
    assert states == ["stopped", "cancelled"], states
    assert "after 1 of 2 runs" in page.inner_text("#sweep-view .state")
    assert page.evaluate(f"{SHOWN}.state") == "stopped" and page.is_enabled("#train")
