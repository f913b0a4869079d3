"""The workbench in Debian's headless Chromium (Playwright), and what a person does on its
canvas: click a node, drag a link, press a widget's arrow. Positions come from the page's
own LiteGraph state, converted to screen pixels."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from helpers.env import require
from helpers.studio_server import require_studio, running_studio, seed_data_dir

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

# records every text drawn on the graph canvas with its size on screen (CSS pixels)
RECORD_TEXT = """
(() => {
  const fill = CanvasRenderingContext2D.prototype.fillText;
  window.drawnText = [];
  CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) {
    const el = this.canvas;
    if (el.id === "graph-canvas" && String(text).trim()) {
      const px = parseFloat(/([\\d.]+)px/.exec(this.font)[1]);
      const screen = el.getBoundingClientRect().width / el.width;
      window.drawnText.push({ text: String(text), px: px * this.getTransform().a * screen });
    }
    return fill.call(this, text, ...rest);
  };
})();
"""


@contextlib.contextmanager
def studio_page(root: Path, width: int = 1500, height: int = 860) -> Iterator:
    """The workbench on a fresh server over ``root`` (seeded with tiny shakespeare)."""
    require_studio()
    require(CHROMIUM.is_file(), "Debian's chromium is missing: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright is missing: pip install '.[test]'")
    seed_data_dir(root)
    with running_studio(root) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.add_init_script(RECORD_TEXT)
        page.goto(base)
        page.wait_for_function("window.studio && window.studio.ready", timeout=30_000)
        page.base_url = base
        yield page
        browser.close()
        assert not errors, errors


# canvas coordinates -> page pixels; the canvas's pixels are CSS pixels scaled by k
_SCREEN = """
const c = studio.editor.canvas;
const r = c.canvas.getBoundingClientRect();
const k = r.width / c.canvas.width;
const screen = (x, y) => {
  const [ox, oy] = c.ds.convertOffsetToCanvas([x, y]);
  return [r.left + ox * k, r.top + oy * k];
};
"""


def to_screen(page, x: float, y: float) -> tuple[float, float]:
    """Canvas coordinates -> page pixels."""
    return tuple(page.evaluate(f"([x, y]) => {{ {_SCREEN} return screen(x, y); }}", [x, y]))


def node_box(page, spec_id: str) -> dict:
    """A node's title bar and body on screen: {x, y, width, height} (page pixels)."""
    return page.evaluate(
        f"""(id) => {{ {_SCREEN}
        const n = studio.editor.nodeBySpecId(id);
        const t = LiteGraph.NODE_TITLE_HEIGHT;
        const [x, y] = screen(n.pos[0], n.pos[1] - t);
        const s = c.ds.scale * k;
        return {{ x, y, width: n.size[0] * s, height: (n.size[1] + t) * s }}; }}""",
        spec_id,
    )


def bring_into_view(page, spec_id: str) -> None:
    """Scroll the canvas (as dragging it would) so the node sits in the middle."""
    page.evaluate(
        "(id) => { const e = studio.editor; e.canvas.centerOnNode(e.nodeBySpecId(id));"
        " e.canvas.setDirty(true, true); e.canvas.draw(true, true); }",
        spec_id,
    )


def click_title(page, spec_id: str, modifiers: list[str] | None = None) -> None:
    """Click a node's title bar (selects it; Control adds it to the selection)."""
    bring_into_view(page, spec_id)
    page.wait_for_timeout(400)  # LiteGraph takes any two presses within 300 ms for a double-click
    box = node_box(page, spec_id)
    for key in modifiers or []:
        page.keyboard.down(key)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + 10)
    for key in modifiers or []:
        page.keyboard.up(key)


def slot_position(page, spec_id: str, slot: int, output: bool) -> tuple[float, float]:
    x, y = page.evaluate(
        "([id, slot, output]) => studio.editor.nodeBySpecId(id).getConnectionPos(!output, slot)",
        [spec_id, slot, output],
    )
    return to_screen(page, x, y)


def drag_link(page, src: str, out: int, dst: str, inp: int) -> None:
    """Drag from an output slot to an input slot, as a person links two nodes."""
    x0, y0 = slot_position(page, src, out, True)
    x1, y1 = slot_position(page, dst, inp, False)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=5)
    page.mouse.move(x1, y1, steps=5)
    page.mouse.up()


def click_widget_arrow(page, spec_id: str, name: str, right: bool = True) -> None:
    """Press the increment (right) or decrement arrow of a node's number widget."""
    bring_into_view(page, spec_id)
    page.wait_for_timeout(400)  # two quick presses on one node would be a double-click
    x, y = page.evaluate(
        "([id, name, right]) => { const n = studio.editor.nodeBySpecId(id);"
        " const w = n.widgetsByName[name]; const h = LiteGraph.NODE_WIDGET_HEIGHT;"
        " return [n.pos[0] + (right ? n.size[0] - 25 : 25), n.pos[1] + w.last_y + h / 2]; }",
        [spec_id, name, right],
    )
    sx, sy = to_screen(page, x, y)
    page.mouse.click(sx, sy)


def type_into_widget(page, spec_id: str, name: str, value: str) -> None:
    """Click the middle of a number widget and type a value into LiteGraph's prompt."""
    bring_into_view(page, spec_id)
    x, y = page.evaluate(
        "([id, name]) => { const n = studio.editor.nodeBySpecId(id);"
        " const w = n.widgetsByName[name];"
        " const h = LiteGraph.NODE_WIDGET_HEIGHT;"
        " return [n.pos[0] + n.size[0] / 2, n.pos[1] + w.last_y + h / 2]; }",
        [spec_id, name],
    )
    # LiteGraph opens its prompt for a press shorter than 200 ms that is no double-click;
    # on a loaded machine a press can take longer, so a person would click again
    for _ in range(4):
        page.wait_for_timeout(400)
        page.mouse.click(*to_screen(page, x, y))
        field = page.query_selector(".graphdialog input.value")
        if field is None:
            with contextlib.suppress(Exception):
                field = page.wait_for_selector(".graphdialog input.value", timeout=2_000)
        if field is not None:
            break
    else:
        raise AssertionError(f"no value prompt opened on {spec_id}.{name}")
    field.fill(value)
    field.press("Enter")
    page.wait_for_selector(".graphdialog", state="detached", timeout=5_000)


def screen_boxes(page) -> dict[str, dict]:
    """Every node's box on screen, by spec id (boundary nodes inside a group left out)."""
    ids = page.evaluate("studio.editor.specNodes().map((n) => n.specId)")
    return {nid: node_box(page, nid) for nid in ids}


def overlap(a: dict, b: dict) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


def set_param(page, node_id: str, name: str, value) -> None:
    """What typing into a node's widget does: the widget holds the new value."""
    page.evaluate(
        "([id, name, value]) => {"
        " const n = studio.editor.nodeBySpecId(id); n.widgetsByName[name].value = value;"
        " studio.editor.canvas.setDirty(true, true); }",
        [node_id, name, value],
    )
