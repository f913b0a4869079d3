"""The workbench in Debian's headless Chromium, driven by Playwright (its own browser
download is never used): the launch flags, and a page open on a running studio.

with studio_page(base) as page:   # window.studio ready; page errors fail the block
    page.click("[data-example=small-gpt]")
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from helpers.env import require

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
def studio_page(base: str, width: int = 1500, height: int = 860) -> Iterator[object]:
    """A Playwright page on the studio at ``base``, its scripts started; JavaScript errors
    thrown on the page fail the block."""
    require(CHROMIUM.is_file(), "Debian's chromium is missing: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright is missing: pip install '.[test]'")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(base)
        page.wait_for_function("window.studio && window.studio.ready", timeout=30_000)
        yield page
        browser.close()
        assert not errors, errors
