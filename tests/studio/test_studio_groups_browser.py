"""Groups in the workbench, in Debian's headless Chromium, clicked as a person would: group
"block 0" of the small GPT into a block exposing its width, repeat it 3 times in place of
the 3 blocks, see its shapes and errors outside and inside, open and leave it, save it as
a block in the palette, use it in a new spec and ungroup it there. PYGGML_SCREENSHOTS=1 saves
docs/workbench-group.png (the group node) and docs/workbench-group-inside.png."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from helpers.env import REPO_ROOT
from helpers.studio_browser import (
    click_title,
    click_widget_arrow,
    drag_link,
    node_box,
    studio_page,
    type_into_widget,
)

pytestmark = pytest.mark.slow  # drives a browser

DOCS = REPO_ROOT / "docs"
SMALL_GPT = json.loads((REPO_ROOT / "examples" / "specs" / "small-gpt.json").read_text())


@pytest.fixture
def page(tmp_path):
    with studio_page(tmp_path / "studio") as page:
        page.root = tmp_path / "studio"
        yield page


def screenshot(page, tmp_path, name: str) -> None:
    shot = tmp_path / name
    page.screenshot(path=str(shot))
    if os.environ.get("PYGGML_SCREENSHOTS") == "1":
        shutil.copy(shot, DOCS / name)


def flattened(page) -> dict:
    """What the server makes of the spec on the canvas without its groups."""
    return page.evaluate(
        "fetch('/api/flatten', {method: 'POST', body: JSON.stringify(studio.currentSpec())})"
        ".then((r) => r.json())"
    )


def layers(spec: dict) -> list[tuple[str, dict]]:
    return [(n["type"], n["params"]) for n in spec["nodes"]]


def wait_checked(page, ok: bool) -> None:
    page.wait_for_function(
        f"studio.state.check && studio.state.check.ok === {json.dumps(ok)} && "
        "studio.state.checkedText !== null",
        timeout=30_000,
    )


def test_group_repeat_open_leave_and_reuse_a_block(page, tmp_path):
    page.click("[data-example=small-gpt]")
    wait_checked(page, True)
    downloaded = page.evaluate("studio.currentSpec()")  # the example with every default

    # select block 0 and group it, exposing d_model as "width"
    click_title(page, "block0")
    page.click("#group")
    page.fill("#group-name", "gptblock")
    page.fill("#group-title", "GPT block")
    page.fill("#group-params input[data-node=block0][data-param=d_model]", "width")
    page.click("#group-ok")
    page.wait_for_function("studio.editor.graph._nodes.some((n) => n.groupName === 'gptblock')")
    group = page.evaluate("studio.editor.graph._nodes.find((n) => n.groupName).specId")
    assert page.evaluate("studio.editor.nodeBySpecId('block0')") is None
    wait_checked(page, True)  # the same model: block 0 is now the group's inside
    assert layers(flattened(page)) == layers(downloaded)

    # repeat it 3 times (two clicks on the widget's arrow) in place of blocks 0, 1 and 2
    repeat = f"studio.editor.nodeBySpecId('{group}').widgetsByName.repeat.value"
    for n in (2, 3):
        click_widget_arrow(page, group, "repeat")
        page.wait_for_function(f"{repeat} === {n}", timeout=5_000)
    assert page.evaluate(f"studio.editor.nodeBySpecId('{group}').widgetsByName.repeat.value") == 3
    assert page.evaluate(f"studio.editor.nodeBySpecId('{group}').getTitle()") == "GPT block × 3"
    for block in ("block1", "block2"):
        click_title(page, block)
        page.keyboard.press("Delete")
        page.wait_for_function(f"!studio.editor.nodeBySpecId('{block}')", timeout=5_000)
    drag_link(page, group, 0, "ln_f", 0)
    wait_checked(page, True)
    flat = flattened(page)
    # the flattened spec is the example: three GPT blocks with the example's parameters
    assert layers(flat) == layers(downloaded)
    chain = [n["id"] for n in flat["nodes"]]
    assert chain[3:6] == [f"{group}_{k}_block0" for k in range(3)]
    links = {(lk["from"][0], lk["to"][0]) for lk in flat["links"]}
    assert {(chain[2], chain[3]), (chain[3], chain[4]), (chain[4], chain[5])} <= links
    assert (chain[5], "ln_f") in links
    label = page.evaluate(f"studio.editor.nodeBySpecId('{group}').outputs[0].label")
    assert label == "y [16, 128, 128]"
    page.click("#arrange")
    page.evaluate(f"studio.editor.focus('{group}')")  # scrolled to, as a person would
    screenshot(page, tmp_path, "workbench-group.png")

    # a width that does not fit: the error names the inner node and the group, on the group
    type_into_widget(page, group, "width", "96")
    wait_checked(page, False)
    errors = page.evaluate(f"studio.editor.nodeBySpecId('{group}').specErrors")
    assert errors[0] == (
        'GPTBlock "block 0" in group "GPT block" (copy 1 of 3): d_model 96 but its input is '
        "128 wide"
    )
    # open it (double-click its title): the inside, with the same error on block 0
    click_title(page, group)
    for _ in range(3):  # a busy page may see the two presses too far apart: try again
        page.wait_for_timeout(400)
        box = node_box(page, group)
        page.mouse.dblclick(box["x"] + box["width"] / 2, box["y"] + 10)
        page.wait_for_timeout(1_000)
        if page.evaluate("studio.editor.stack.length") == 1:
            break
    assert page.evaluate("studio.editor.stack.length") == 1
    assert page.inner_text("#crumbs") == "spec › gptblock"
    assert page.is_visible("#leave-group")
    inside = page.evaluate("studio.editor.specNodes().map((n) => n.specId)")
    assert inside == ["block0"]
    page.wait_for_function("studio.editor.nodeBySpecId('block0').specErrors.length > 0")
    assert page.evaluate("studio.editor.nodeBySpecId('block0').specErrors[0]") == errors[0]
    # edit the inside: a dropout of 0.1 on every copy
    type_into_widget(page, "block0", "dropout", "0.1")
    screenshot(page, tmp_path, "workbench-group-inside.png")
    page.click("#leave-group")
    page.wait_for_function("studio.editor.stack.length === 0")
    assert page.inner_text("#crumbs") == "spec"
    type_into_widget(page, group, "width", "128")
    wait_checked(page, True)
    flat = flattened(page)
    dropouts = [n["params"]["dropout"] for n in flat["nodes"] if n["type"] == "GPTBlock"]
    assert dropouts == [0.1, 0.1, 0.1]

    # save it as a block: it is in the data directory and in the palette
    click_title(page, group)
    page.click("#save-block")
    page.wait_for_selector("#templates [data-template=gptblock]")
    saved = json.loads((page.root / "templates" / "gptblock.json").read_text())
    assert saved["groups"]["gptblock"]["params"] == [
        {"name": "width", "binds": [["block0", "d_model"]]}
    ]
    assert page.inner_text("#templates [data-template=gptblock]") == "GPT block"

    # a new spec (asked first: the edits are not saved), then the block from the palette
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#new")
    page.wait_for_function("studio.editor.graph._nodes.length === 0")
    page.click("#templates [data-template=gptblock]")
    page.wait_for_function("studio.editor.graph._nodes.length === 1")
    node = page.evaluate(
        "(() => { const n = studio.editor.graph._nodes[0]; return {group: n.groupName,"
        " params: n.paramSpecs.map((p) => p.name), inputs: n.inputs.map((s) => s.name),"
        " outputs: n.outputs.map((s) => s.name)}; })()"
    )
    assert node == {
        "group": "gptblock",
        "params": ["repeat", "width"],
        "inputs": ["x"],
        "outputs": ["y"],
    }
    spec = page.evaluate("studio.currentSpec()")
    assert spec["groups"]["gptblock"] == saved["groups"]["gptblock"]

    # Ungroup: the group node gives way to its inside (the block, with the group's width)
    added = page.evaluate("studio.editor.graph._nodes[0].specId")
    type_into_widget(page, added, "width", "64")
    click_title(page, added)
    page.click("#ungroup")
    page.wait_for_function(
        "studio.editor.graph._nodes.length === 1 && !studio.editor.graph._nodes[0].groupName"
    )
    (inner,) = page.evaluate("studio.currentSpec()")["nodes"]
    assert inner["id"] == f"{added}_0_block0" and inner["type"] == "GPTBlock"
    assert inner["params"]["d_model"] == 64 and inner["params"]["dropout"] == 0.1
