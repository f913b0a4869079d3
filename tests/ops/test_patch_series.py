"""The ggml pin and the patch series stay consistent with the code that depends on them.

The pin is written once, in cmake/GgmlPin.cmake: the extension must be built from it, the
ggml/ submodule must point at it, and no other file may repeat it (a bump would leave the
copy behind). The binding's list of differentiable ops (csrc/bindings/graph.cpp,
``has_backward``) must match the ops that ``ggml_compute_backward`` of the patched ggml
differentiates, so a pin bump that adds or drops a backward cannot pass unnoticed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers.env import REPO_ROOT, require

import pyggml_train as pg

PIN_FILE = REPO_ROOT / "cmake" / "GgmlPin.cmake"

# Ops ggml_compute_backward handles that the binding does not offer to differentiate, and
# why. An op moves to graph.cpp's list when a test covers its gradient.
NOT_OFFERED = {
    "GGML_OP_ROPE": "no rope in the Python API",
    "GGML_OP_IM2COL": "no convolutions in the Python API",
    "GGML_OP_POOL_2D": "no pooling in the Python API",
    "GGML_OP_WIN_PART": "shares the UNARY case upstream; no window ops in the Python API",
    "GGML_OP_WIN_UNPART": "shares the UNARY case upstream; no window ops in the Python API",
    "GGML_OP_GLU": "only split SWIGLU has a backward; no GLU in the Python API",
    "GGML_UNARY_OP_EXPM1": "no expm1 in the Python API",
    "GGML_UNARY_OP_SOFTPLUS": "no softplus in the Python API",
}


def pin(name: str) -> str:
    """The value of ``set(NAME "...")`` in cmake/GgmlPin.cmake."""
    m = re.search(rf'^set\({name} "([^"]*)"\)$', PIN_FILE.read_text(), re.M)
    assert m, f"{PIN_FILE} does not set {name}"
    return m.group(1)


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=True
    ).stdout


def has_git_checkout() -> bool:
    return shutil.which("git") is not None and (REPO_ROOT / ".git").exists()


def test_extension_is_built_at_the_pin() -> None:
    commit, _ = pg.ggml_version()
    assert commit == pin("PYGGML_GGML_COMMIT")


def test_pin_is_written_once() -> None:
    require(has_git_checkout(), "needs git and a git checkout of the project")
    values = [pin(n) for n in ("PYGGML_GGML_COMMIT", "PYGGML_SDIST_SPEC", "PYGGML_SDIST_SHA256")]
    copies = []
    for value in values:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "grep", "-l", "-I", "-F", value],
            capture_output=True,
            text=True,
        ).stdout.split()
        copies += [f for f in out if f != "cmake/GgmlPin.cmake"]
    assert not copies, f"the pin is repeated in {copies}: read it from cmake/GgmlPin.cmake"


def test_submodule_points_at_the_pin() -> None:
    require(has_git_checkout(), "needs git and a git checkout of the project")
    entry = git("ls-tree", "HEAD", "ggml").split()  # mode, "commit", sha, path
    assert entry and entry[1] == "commit", "ggml/ is not a submodule"
    assert entry[2] == pin("PYGGML_GGML_COMMIT"), (
        "the ggml/ submodule and cmake/GgmlPin.cmake disagree; bump both"
    )


# ---- graph.cpp's differentiable ops against ggml_compute_backward ---------------------------


def pristine_ggml() -> Path | None:
    """The pristine tree the build uses (cmake/GgmlSource.cmake's order), if present."""
    commit = pin("PYGGML_GGML_COMMIT")
    cache = os.environ.get("PYGGML_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "pyggml_train"
    )
    for d in (
        os.environ.get("PYGGML_GGML_SOURCE_DIR", ""),
        str(REPO_ROOT / "ggml"),
        os.path.join(cache, f"ggml-{commit}"),
    ):
        if d and (Path(d) / "src" / "ggml.c").is_file():
            return Path(d)
    return None


@pytest.fixture(scope="module")
def patched_ggml_c(tmp_path_factory: pytest.TempPathFactory) -> str:
    """src/ggml.c with the whole series applied, as the build makes it."""
    src = pristine_ggml()
    require(
        src is not None and shutil.which("git") is not None,
        "needs git and the pristine ggml tree (build the project once, or check out ggml/)",
    )
    work = tmp_path_factory.mktemp("ggml")
    (work / "src").mkdir()
    shutil.copy(src / "src" / "ggml.c", work / "src" / "ggml.c")
    for patch in sorted((REPO_ROOT / "csrc" / "patches").glob("*.patch")):
        subprocess.run(
            ["git", "apply", "--include=src/ggml.c", "--whitespace=nowarn", str(patch)],
            cwd=work,
            env={**os.environ, "GIT_CEILING_DIRECTORIES": str(work.parent)},
            check=True,
        )
    return (work / "src" / "ggml.c").read_text()


def function_body(source: str, signature: str) -> str:
    """The text of the function whose definition starts with ``signature``, braces matched."""
    start = source.index(signature)
    depth, i = 0, source.index("{", start)
    for j in range(i, len(source)):
        depth += {"{": 1, "}": -1}.get(source[j], 0)
        if depth == 0:
            return source[i : j + 1]
    raise AssertionError(f"unbalanced braces after {signature}")


def switch_cases(body: str, selector: str) -> dict[str, str]:
    """{case label: text up to the next label} of the ``switch (selector)`` in ``body``,
    without nested switches' labels; fall-through labels share their group's text, and
    ``default`` is a label of its own."""
    block = function_body(body, f"switch ({selector})")
    cases: dict[str, str] = {}
    pending: list[str] = []
    depth, text = 0, ""
    for line in block[1:-1].splitlines():
        label = re.match(r"\s*(?:case (\w+)|(default))\s*:", line)
        if depth == 0 and label:
            if text.strip() and pending:
                cases.update(dict.fromkeys(pending, text))
                pending, text = [], ""
            pending.append(label.group(1) or label.group(2))
            line = line[label.end() :]
        text += line + "\n"
        depth += line.count("{") - line.count("}")
    cases.update(dict.fromkeys(pending, text))
    return cases


def ggml_backward_ops(ggml_c: str) -> set[str]:
    """Ops (and unary ops) ggml_compute_backward differentiates instead of aborting."""
    body = function_body(ggml_c, "static void ggml_compute_backward(")
    top = switch_cases(body, "tensor->op")
    ops = {op for op, text in top.items() if "GGML_ABORT" not in text.split("switch")[0]}
    unary = switch_cases(top["GGML_OP_UNARY"], "ggml_get_unary_op(tensor)")
    ops |= {op for op, text in unary.items() if "GGML_ABORT" not in text}
    return ops - {"GGML_OP_COUNT", "default"}


def binding_backward_ops() -> set[str]:
    """Ops graph.cpp's has_backward() accepts (any source)."""
    source = (REPO_ROOT / "csrc" / "bindings" / "graph.cpp").read_text()
    body = function_body(source, "bool has_backward(")
    top = switch_cases(body, "t->op")
    ops = {op for op, text in top.items() if "return false" not in text.split("switch")[0]}
    unary = switch_cases(top["GGML_OP_UNARY"], "ggml_get_unary_op(t)")
    ops |= {op for op, text in unary.items() if "return true" in text}
    return ops - {"default"}


def test_parsers_see_the_switches(patched_ggml_c: str) -> None:
    ours, ggml = binding_backward_ops(), ggml_backward_ops(patched_ggml_c)
    # ops of upstream, of our patches, and a unary op: each parser finds all three kinds
    for op in ("GGML_OP_MUL_MAT", "GGML_OP_NORM", "GGML_OP_DROPOUT", "GGML_UNARY_OP_GELU"):
        assert op in ours and op in ggml, op
    assert "GGML_OP_UNARY" in ours and "GGML_OP_RMS_NORM_BACK" not in ggml


def test_binding_offers_only_ops_ggml_differentiates(patched_ggml_c: str) -> None:
    missing = binding_backward_ops() - ggml_backward_ops(patched_ggml_c)
    assert not missing, (
        f"graph.cpp's has_backward() accepts {sorted(missing)}, but ggml_compute_backward "
        "of the patched ggml has no backward for them: a graph would abort in ggml"
    )


def test_every_ggml_backward_is_offered_or_explained(patched_ggml_c: str) -> None:
    unexplained = ggml_backward_ops(patched_ggml_c) - binding_backward_ops() - set(NOT_OFFERED)
    assert not unexplained, (
        f"ggml_compute_backward differentiates {sorted(unexplained)}: add them to "
        "graph.cpp's has_backward() with a gradient test, or to NOT_OFFERED with the reason"
    )
    stale = set(NOT_OFFERED) - ggml_backward_ops(patched_ggml_c)
    assert not stale, f"NOT_OFFERED lists {sorted(stale)}, which ggml no longer differentiates"
