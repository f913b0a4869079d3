"""The package's imports point one way: no cycle, and no module imports from a layer above
its own (docs/architecture.md), counting imports inside functions and TYPE_CHECKING blocks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers.env import REPO_ROOT

PACKAGE = REPO_ROOT / "pyggml_train"

# bottom to top; a module may import from its own layer and the ones below it
LAYERS: list[set[str]] = [
    {
        "_load",
        "shape",
        "atomic",
        "schedule",
        "metrics",
        "config",
        "tokenizer",
        "io.bf16",
        "adapters",
    },
    {"memory"},  # estimates from the configs
    {"ggml", "data", "checkpoint", "distributed"},
    {"datasets"},  # named datasets and finding a run's text (over data's read_corpus)
    {"kernels", "layers", "optim"},
    {"loss", "step", "recompute"},
    {"model"},
    {"sample", "gpt2", "hf_gpt2", "llama"},
    {"spec", "io"},  # the spec package; the formats (hf_gpt2's names for GPT-2)
    {"models"},
    {"train"},
    {"recipes"},
    {"cli", "studio", "__main__"},
]


def module_name(path: Path) -> str:
    """``pyggml_train/spec/nodes.py`` -> ``spec.nodes``; a package is its __init__."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every package module ``name`` imports, wherever the import statement sits."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if name else []
    base = here if is_package else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names if a.name.startswith("pyggml_train")]
            targets = [t.removeprefix("pyggml_train").lstrip(".") for t in targets]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                module = ".".join([*anchor, *([node.module] if node.module else [])])
            elif node.module and node.module.startswith("pyggml_train"):
                module = node.module.removeprefix("pyggml_train").lstrip(".")
            else:
                continue
            targets = []
            for alias in node.names:
                sub = f"{module}.{alias.name}" if module else alias.name
                targets.append(sub if sub in known else module)
        else:
            continue
        for target in targets:
            # a module's own package (or an ancestor) runs first anyway: not an edge
            if target and target in known and not name.startswith(target + ".") and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items() if name}


def layer_of(name: str) -> int:
    for i, layer in enumerate(LAYERS):
        if any(name == m or name.startswith(m + ".") for m in layer):
            return i
    raise AssertionError(f"pyggml_train.{name} is in no layer of test_imports.LAYERS: add it")


def test_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])


def test_imports_point_down():
    upward = [
        f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})"
        for name, targets in graph().items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(name)
    ]
    assert not upward, "\n".join(upward)


def test_the_parser_sees_imports_inside_functions():
    """The check is only as good as its parser: an import in a function body counts."""
    edges = graph()
    assert "gpt2" in edges["models"]  # top level
    assert "io" in edges["models"]
    assert any("models" in targets for name, targets in edges.items() if name.startswith("studio"))
