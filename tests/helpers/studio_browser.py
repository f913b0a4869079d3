"""The studio in Debian's headless Chromium, driven by Playwright, for the browser tests.

with studio_page(root) as page:   # the page loaded and ready (window.studio.ready)
    page.click("#train")
Page errors (uncaught exceptions) fail the block's end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from helpers.env import require
from helpers.studio_server import require_studio, running_studio

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextlib.contextmanager
def studio_page(root: Path) -> Iterator:
    """A studio serving data dir ``root``, open in a 1500 x 860 page."""
    require_studio()
    require(CHROMIUM.is_file(), "Debian's chromium is missing: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright is missing: pip install '.[test]'")
    with running_studio(root) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page(viewport={"width": 1500, "height": 860})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(base)
        page.wait_for_function("window.studio && window.studio.ready", timeout=30_000)
        page.base_url = base
        yield page
        browser.close()
        assert not errors, errors


def set_param(page, node_id: str, name: str, value) -> None:
    """What typing into a node's widget does: the widget holds the new value."""
    page.evaluate(
        "([id, name, value]) => {"
        " const n = studio.editor.nodeBySpecId(id); n.widgetsByName[name].value = value;"
        " studio.editor.canvas.setDirty(true, true); }",
        [node_id, name, value],
    )
