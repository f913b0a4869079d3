"""Named datasets in the workbench, clicked as a person would in Debian's headless Chromium
(Playwright), offline: pick WikiText-2 in the Data panel and see the error on the data node
(the file, where to put it, its URL), press Fetch and read why it could not be downloaded;
upload a text file of one's own and train-ready the spec on it; pick tiny shakespeare back,
then the uploaded text again from the data directory's list."""

from __future__ import annotations

import os

import pytest
from helpers.env import REPO_ROOT
from helpers.studio_browser import studio_page
from helpers.studio_server import seed_data_dir

from pyggml_train import datasets

pytestmark = pytest.mark.slow  # drives a browser

WIKITEXT_URL = "https://wikitext.smerity.com/wikitext-2-raw-v1.zip"
SCREENSHOT = REPO_ROOT / "docs" / "workbench-datasets.png"  # PYGGML_SCREENSHOTS=1 writes it
DATA_ERRORS = "studio.editor.nodeBySpecId('data').specErrors.join('\\n')"


@pytest.fixture
def offline_studio(tmp_path, monkeypatch):
    """The page on a server (in this process) over a data dir holding tiny shakespeare, with
    an empty cache, no other dataset folders and downloads switched off."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(datasets.DATASETS_ENV, raising=False)
    monkeypatch.setenv(datasets.OFFLINE_ENV, "1")
    root = seed_data_dir(tmp_path / "studio")
    with studio_page(root) as page:
        yield page, root, tmp_path / "xdg" / "pyggml_train"


def test_pick_a_dataset_offline_see_why_then_train_on_an_uploaded_text(offline_studio, tmp_path):
    page, root, cache = offline_studio
    page.click("[data-example=small-gpt]")
    page.wait_for_function("studio.state.check && studio.state.check.ok", timeout=30_000)
    assert page.inner_text("[data-status=tinyshakespeare]") == "at hand"
    assert page.is_visible("[data-fetch=wikitext-2]")  # not here: it offers to fetch it

    page.click("[data-dataset=wikitext-2]")
    page.wait_for_function(f"{DATA_ERRORS}.includes('wikitext-2-raw-v1.zip')", timeout=30_000)
    assert page.evaluate("studio.editor.nodeBySpecId('data').widgetsByName.source.value") == (
        "wikitext-2"
    )
    problems = page.inner_text("#errors")
    if os.environ.get("PYGGML_SCREENSHOTS") == "1":
        page.screenshot(path=str(SCREENSHOT))
    assert "WikiText-2 (raw): wikitext-2-raw-v1.zip is not at hand" in problems
    assert WIKITEXT_URL in problems and str(cache) in problems and str(root / "data") in problems
    assert page.is_disabled("#train")

    page.click("[data-fetch=wikitext-2]")
    toast = page.wait_for_selector("#toast:not([hidden])", timeout=30_000)
    message = toast.inner_text()
    assert "could not be downloaded ($PYGGML_OFFLINE=1)" in message
    assert WIKITEXT_URL in message and str(cache) in message
    page.wait_for_selector("[data-fetch=wikitext-2]:has-text('Fetch')")  # still not here

    # a text of one's own, from this computer: 20 distinct characters, under the 65 rows
    mine = tmp_path / "my notes.txt"
    text = "the quick brown fox jumps over a lazy dog\n" * 200
    mine.write_text(text, encoding="utf-8")
    page.set_input_files("#upload-text-file", str(mine))
    page.wait_for_function("studio.state.check && studio.state.check.ok", timeout=30_000)
    widgets = "studio.editor.nodeBySpecId('data').widgetsByName"
    assert page.evaluate(f"[{widgets}.source.value, {widgets}.path.value]") == [
        "file",
        "my notes.txt",
    ]
    assert (root / "data" / "my notes.txt").read_text(encoding="utf-8") == text
    assert page.is_enabled("#train")

    page.click("[data-dataset=tinyshakespeare]")
    page.wait_for_function(
        f"{widgets}.source.value === 'tinyshakespeare' && studio.state.check.ok", timeout=30_000
    )
    assert page.evaluate(f"{widgets}.path.value") == ""
    # the data directory's own texts are listed to pick again (not the datasets' files)
    assert page.eval_on_selector_all("[data-file]", "bs => bs.map(b => b.textContent)") == [
        "my notes.txt"
    ]
    page.click("[data-file='my notes.txt']")
    page.wait_for_function(f"{widgets}.path.value === 'my notes.txt'")
    assert page.evaluate(f"{widgets}.source.value") == "file"
