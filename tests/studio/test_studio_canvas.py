"""A tidy canvas, seen in Debian's headless Chromium: graphs laid out left to right (dagre),
an Arrange action, new nodes in free space, text readable at the default zoom, a problems
badge that covers no node, palette buttons that hold their names, and no unsaved edits lost
to Load, Upload or an example without asking. PYGGML_SCREENSHOTS=1 saves
docs/workbench-arrange.png."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from helpers.env import REPO_ROOT
from helpers.studio_browser import (
    click_title,
    node_box,
    overlap,
    screen_boxes,
    studio_page,
    type_into_widget,
)

pytestmark = pytest.mark.slow  # drives a browser

SCREENSHOT = REPO_ROOT / "docs" / "workbench-arrange.png"
SMALL_GPT = json.loads((REPO_ROOT / "examples" / "specs" / "small-gpt.json").read_text())


@pytest.fixture
def page(tmp_path):
    with studio_page(tmp_path / "studio") as page:
        yield page


def canvas_boxes(page) -> dict[str, list[float]]:
    """[x, y, width, height] of every node with its title, in canvas units."""
    return page.evaluate(
        "Object.fromEntries(studio.editor.specNodes().map((n) => [n.specId,"
        " [n.pos[0], n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT, n.size[0],"
        "  n.size[1] + LiteGraph.NODE_TITLE_HEIGHT]]))"
    )


def assert_tidy(page) -> None:
    """No two nodes overlap and every link runs left to right."""
    boxes = canvas_boxes(page)
    ids = list(boxes)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            p, q = boxes[a], boxes[b]
            apart = (
                p[0] + p[2] <= q[0]
                or q[0] + q[2] <= p[0]
                or p[1] + p[3] <= q[1]
                or q[1] + q[3] <= p[1]
            )
            assert apart, (a, b, p, q)
    for link in page.evaluate("studio.currentSpec().links"):
        src, dst = boxes[link["from"][0]], boxes[link["to"][0]]
        assert src[0] + src[2] < dst[0], link  # the target starts right of the source's end


def drawn_text(page) -> list[dict]:
    page.evaluate("window.drawnText = []; studio.editor.canvas.draw(true, true)")
    return page.evaluate("window.drawnText")


def test_example_opens_left_to_right_and_readable(page, tmp_path):
    page.click("[data-example=small-gpt]")
    page.wait_for_function("studio.state.check && studio.state.check.ok", timeout=30_000)
    assert_tidy(page)
    # the node order along x is the example's chain
    boxes = canvas_boxes(page)
    chain = [n["id"] for n in SMALL_GPT["nodes"]]
    assert sorted(chain, key=lambda n: boxes[n][0]) == chain
    scale = page.evaluate("studio.editor.canvas.ds.scale")
    assert scale >= 0.73
    texts = drawn_text(page)
    titles = {t["text"] for t in texts}
    assert {"token embedding", "block 0", "d_model", "y [16, 128, 128]"} <= titles, titles
    small = [t for t in texts if t["px"] < 12]
    assert not small, small[:5]
    shot = tmp_path / "arrange.png"
    page.screenshot(path=str(shot))
    if os.environ.get("PYGGML_SCREENSHOTS") == "1":
        shutil.copy(shot, SCREENSHOT)

    # an error drawn under a node is as readable, and the badge covers no node
    type_into_widget(page, "block0", "d_model", "96")
    page.wait_for_function("studio.editor.nodeBySpecId('block0').specErrors.length > 0")
    page.evaluate("studio.editor.focus('block0')")
    texts = drawn_text(page)
    (message,) = page.evaluate("studio.editor.nodeBySpecId('block0').specErrors")
    assert "d_model 96 but its input is 128 wide" in message
    error = [t for t in texts if t["text"] in message and len(t["text"]) > 8]  # its lines
    assert " ".join(t["text"] for t in error) == message
    assert min(t["px"] for t in error) >= 12, error
    assert not [t for t in texts if t["px"] < 12]
    assert page.inner_text("#check-status") == "1 problem"
    badge = page.locator("#check-status").bounding_box()
    canvas = page.locator("#graph-canvas").bounding_box()
    for nid, box in screen_boxes(page).items():
        assert not overlap(badge, box), nid
    assert badge["y"] + badge["height"] <= canvas["y"]  # above the canvas, never on it

    # every palette button holds its name (TransformerEncoderLayer included)
    widths = page.evaluate(
        "[...document.querySelectorAll('#palette button')].map((b) =>"
        " [b.textContent, b.scrollWidth, b.clientWidth])"
    )
    assert "TransformerEncoderLayer" in [w[0] for w in widths]
    assert all(scroll <= client for _, scroll, client in widths), widths


def test_new_nodes_land_in_free_space_and_arrange_tidies(page, tmp_path):
    page.click("[data-example=small-gpt]")
    page.wait_for_function("studio.state.check && studio.state.check.ok", timeout=30_000)
    before = set(canvas_boxes(page))
    for kind in ("LayerNorm", "LayerNorm", "Linear"):
        page.click(f"#node-list [data-type={kind}]")
    added = set(canvas_boxes(page)) - before
    assert len(added) == 3
    screen = screen_boxes(page)
    for nid in added:
        assert not any(overlap(screen[nid], b) for o, b in screen.items() if o != nid), nid
    # a new node is placed where the person is looking: inside the visible canvas
    canvas = page.locator("#graph-canvas").bounding_box()
    for nid in added:
        b = screen[nid]
        assert canvas["x"] <= b["x"] and b["x"] + b["width"] <= canvas["x"] + canvas["width"]

    # drag "block 1" onto "block 0", then Arrange: tidy again, chain order kept
    click_title(page, "block1")
    page.wait_for_timeout(400)  # two quick presses would be a double-click
    a, b = node_box(page, "block1"), node_box(page, "block0")
    page.mouse.move(a["x"] + 40, a["y"] + 10)
    page.mouse.down()
    page.mouse.move(b["x"] + 60, b["y"] + 30, steps=8)
    page.mouse.up()
    assert overlap(node_box(page, "block1"), node_box(page, "block0"))
    page.click("#arrange")
    assert_tidy(page)
    boxes = canvas_boxes(page)
    chain = [n["id"] for n in SMALL_GPT["nodes"]]
    assert sorted(chain, key=lambda n: boxes[n][0]) == chain


def test_replacing_an_edited_graph_asks_first(page, tmp_path):
    page.click("[data-example=small-gpt]")
    page.wait_for_function("studio.state.check && studio.state.check.ok", timeout=30_000)
    page.click("#save")  # saved as its name: no edits yet
    page.wait_for_function("[...document.querySelectorAll('#saved option')].length > 1")
    saved = page.evaluate("[...document.querySelectorAll('#saved option')].map(o => o.value)")[1]
    page.click("#node-list [data-type=Dropout]")  # an edit
    asked: list[str] = []

    def answer(accept: bool):
        def on_dialog(dialog):
            asked.append(dialog.message)
            dialog.accept() if accept else dialog.dismiss()

        return on_dialog

    page.once("dialog", answer(False))
    page.click("[data-example=medium-gpt]")
    page.wait_for_timeout(300)
    assert len(asked) == 1 and "unsaved edits will be lost" in asked[0]
    assert page.evaluate("studio.editor.graph._nodes.length") == 10  # kept, with the Dropout

    upload = tmp_path / "other.json"
    upload.write_text(json.dumps({**SMALL_GPT, "name": "uploaded"}))
    page.once("dialog", answer(False))
    page.set_input_files("#upload-file", str(upload))
    page.wait_for_timeout(300)
    assert len(asked) == 2 and page.input_value("#spec-name") != "uploaded"

    page.once("dialog", answer(True))
    page.select_option("#saved", saved)
    page.wait_for_function("studio.editor.graph._nodes.length === 9")
    assert len(asked) == 3
    # nothing edited since: the next replacement asks nothing
    page.click("[data-example=medium-gpt]")
    page.wait_for_function("studio.currentSpec().nodes.length === 12")
    assert len(asked) == 3
