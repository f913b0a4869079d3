"""The studio's data directory: its layout, and the rule that no path leaves it.

    DATA_DIR/specs/<name>.json   specs saved from the browser
    DATA_DIR/templates/<name>.json   group templates: {"name", "groups"} (the palette's blocks)
    DATA_DIR/data/               text files a TextDataset may read (its data_dir)
    DATA_DIR/runs/<run id>/      one training run: spec.json, run.json, metrics.jsonl,
                                 checkpoint.npz, log.txt, exports
    DATA_DIR/sweeps/<id>.json    a sweep: its axes, its queue of runs, its state

Every name that arrives over HTTP or inside a spec is resolved here, and refused when it
is absolute or climbs out with ``..`` (also through a symlink).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,99}$")  # a file name of ours, no separators


class PathError(ValueError):
    """A name or path that would leave the data directory, or is not a valid name."""


def inside(root: Path, relative: str) -> Path:
    """root / relative, or PathError when that is absolute or resolves outside root."""
    if not isinstance(relative, str) or not relative:
        raise PathError(f"expected a non-empty relative path, got {relative!r}")
    if Path(relative).is_absolute() or relative.startswith("~"):
        raise PathError(
            f"path {relative!r} is absolute; give a path relative to the data directory {root}"
        )
    root = root.resolve()
    path = (root / relative).resolve()
    if path != root and root not in path.parents:
        raise PathError(f"path {relative!r} leaves the data directory {root}; remove the '..'")
    return path


def check_name(name: str, what: str) -> str:
    """A plain file name (letters, digits, ._- and spaces; no slashes, no leading dot)."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise PathError(
            f"{what} name {name!r} is not allowed: use up to 100 letters, digits, spaces, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    return name


class DataDir:
    """The directories of one studio, created on first use."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        for sub in (self.specs, self.templates, self.data, self.runs):
            sub.mkdir(parents=True, exist_ok=True)
        self.sweeps.mkdir(exist_ok=True)

    @property
    def specs(self) -> Path:
        return self.root / "specs"

    @property
    def templates(self) -> Path:
        return self.root / "templates"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def sweeps(self) -> Path:
        return self.root / "sweeps"

    def sweep_file(self, sweep_id: str) -> Path:
        return inside(self.sweeps, check_name(sweep_id, "sweep") + ".json")

    def spec_file(self, name: str) -> Path:
        """DATA_DIR/specs/<name>.json for a plain name (".json" optional)."""
        name = name.removesuffix(".json")
        return inside(self.specs, check_name(name, "spec") + ".json")

    def template_file(self, name: str) -> Path:
        """DATA_DIR/templates/<name>.json for a plain name (".json" optional)."""
        name = name.removesuffix(".json")
        return inside(self.templates, check_name(name, "template") + ".json")

    def data_file(self, name: str) -> Path:
        return inside(self.data, check_name(name, "data file"))

    def run_dir(self, run_id: str) -> Path:
        return inside(self.runs, check_name(run_id, "run"))

    def spec_path_errors(self, spec: Any) -> list[dict[str, Any]]:
        """One error per node whose ``path`` parameter would leave DATA_DIR/data."""
        errors = []
        nodes = spec.get("nodes") if isinstance(spec, dict) else None
        for node in nodes if isinstance(nodes, list) else []:
            params = node.get("params") if isinstance(node, dict) else None
            path = params.get("path") if isinstance(params, dict) else None
            if isinstance(path, str) and path:
                try:
                    inside(self.data, path)
                except PathError as exc:
                    nid = node.get("id") if isinstance(node.get("id"), str) else None
                    label = f'{node.get("type")} "{node.get("title") or nid}"'
                    errors.append({"node": nid, "message": f"{label}: {exc}"})
        return errors
