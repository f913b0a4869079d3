"""The workbench as a person uses it, in Debian's headless Chromium driven by Playwright:
open the page, load the small GPT example, train, watch the loss curve fall, generate
text, stop the run. With PYGGML_SCREENSHOTS=1 it saves docs/workbench.png, the picture
docs/workbench.md shows."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from helpers.env import REPO_ROOT
from helpers.studio_browser import set_param, studio_page
from helpers.studio_server import seed_data_dir

pytestmark = pytest.mark.slow  # drives a browser

SCREENSHOT = REPO_ROOT / "docs" / "workbench.png"


@pytest.fixture
def page(tmp_path):
    with studio_page(seed_data_dir(tmp_path / "studio")) as page:
        yield page


def test_train_watch_generate_stop_in_the_browser(page, tmp_path):
    page.click("[data-example=small-gpt]")
    page.wait_for_function("studio.state.check && studio.state.check.ok", timeout=30_000)
    assert page.evaluate("studio.editor.graph._nodes.length") == 9
    # a shape inferred by the server is drawn on the LM head's output
    label = page.evaluate("studio.editor.nodeBySpecId('lm_head').outputs[0].label")
    assert label == "y [16, 128, 65]", label

    # download the spec, upload it back under another name: the same graph returns
    with page.expect_download() as download:
        page.click("#download")
    spec = json.loads(Path(download.value.path()).read_text())
    example = json.loads((REPO_ROOT / "examples" / "specs" / "small-gpt.json").read_text())
    assert [n["id"] for n in spec["nodes"]] == [n["id"] for n in example["nodes"]]
    assert spec["links"] == example["links"]
    for ours, theirs in zip(spec["nodes"], example["nodes"], strict=True):
        assert ours["params"] | theirs["params"] == ours["params"], ours["id"]  # + defaults
    spec["name"] = "uploaded"
    upload = tmp_path / "uploaded.json"
    upload.write_text(json.dumps(spec))
    page.set_input_files("#upload-file", str(upload))
    page.wait_for_function("document.querySelector('#spec-name').value === 'uploaded'")
    page.wait_for_function("studio.state.check && studio.state.check.ok")
    assert page.evaluate("studio.editor.graph._nodes.length") == 9

    # a person makes the steps cheaper and the warmup short (the run of 2000 steps is still
    # going when the test stops it; it checkpoints every 50), and breaks then mends a block
    set_param(page, "data", "batch_size", 8)
    set_param(page, "loss", "warmup_steps", 4)
    set_param(page, "block1", "d_model", 96)
    page.wait_for_function(
        "studio.state.check && !studio.state.check.ok && "
        "studio.editor.nodeBySpecId('block1').specErrors.length > 0"
    )
    assert "96" in page.inner_text("#errors")
    assert page.is_disabled("#train")
    set_param(page, "block1", "d_model", 128)
    page.wait_for_function("studio.state.check && studio.state.check.ok")

    page.click("#train")
    # at least two train-loss points drawn by the chart, from the live WebSocket events
    shown = "(studio.state.runs.get(studio.state.shown) || {})"
    page.wait_for_function(
        f"studio.curves.drawnLoss().length >= 12 || {shown}.state === 'failed'", timeout=300_000
    )
    assert page.evaluate(f"{shown}.state") == "running", page.evaluate(f"{shown}.message")
    drawn = page.evaluate("studio.curves.drawnLoss()")
    assert all(p["px"] is not None and p["py"] is not None for p in drawn)
    steps = [p["step"] for p in drawn]
    assert steps == list(range(1, len(steps) + 1))
    first, last = drawn[0]["loss"], drawn[-1]["loss"]
    assert last < first - 0.2, (first, last)  # the loss falls (ln 65 = 4.17 at the start)
    assert drawn[-1]["py"] > drawn[0]["py"]  # and is drawn lower (canvas y grows downwards)

    page.wait_for_selector("#generate:enabled", timeout=300_000)  # the checkpoint of step 50
    page.fill("#prompt", "ROMEO:")
    page.fill("#temperature", "0.8")
    page.fill("#top-k", "20")
    page.fill("#max-tokens", "60")
    page.click("#generate")
    page.wait_for_function(
        "document.querySelector('#generated').textContent.startsWith('ROMEO:') && "
        "document.querySelector('#generated').textContent.length > 6",
        timeout=60_000,
    )
    text = page.inner_text("#generated")
    assert len(text) == len("ROMEO:") + 60, text

    shot = tmp_path / "workbench.png"
    page.screenshot(path=str(shot))
    if os.environ.get("PYGGML_SCREENSHOTS") == "1":
        shutil.copy(shot, SCREENSHOT)

    assert page.evaluate(f"{shown}.state") == "running"
    page.click("#stop")
    page.wait_for_function(f"{shown}.state === 'stopped'", timeout=60_000)
    assert page.evaluate(f"{shown}.resumable")  # stopped at a checkpoint
    assert page.is_enabled("#resume") and page.is_enabled("#train")
