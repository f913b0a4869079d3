"""Checking a spec: every problem reported on the node that causes it, and the shape of
every link inferred before anything runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .groups import Flat, flatten
from .nodes import NODE_TYPES
from .schema import (
    ID_PATTERN,
    MAX_ID_LENGTH,
    PORT_KINDS,
    SPEC_VERSION,
    InferState,
    Node,
    Shape,
    Spec,
    SpecError,
)


def _label(raw: dict, index: int) -> str:
    nid = raw.get("id") if isinstance(raw, dict) else None
    return f'node "{nid}"' if isinstance(nid, str) else f"node #{index}"


class _Checker:
    """Collects every problem of one spec; shapes are inferred where the inputs allow."""

    def __init__(self, data: Any, data_dir: str | Path | None, vocab_size: int | None):
        self.data = data
        self.errors: list[dict[str, Any]] = []
        self.nodes: dict[str, Node] = {}
        self.order: list[str] = []
        self.shapes: dict[tuple[str, int], Shape] = {}
        self.bad: set[str] = set()  # nodes with invalid parameters
        data_path = Path(data_dir) if data_dir is not None else None
        self.state = InferState(self.nodes, data_path, vocab_size)
        self.flat = Flat(data)

    def error(self, node: str | None, message: str) -> None:
        self.errors.append({"node": node, "message": message})

    def attributed(self) -> list[dict[str, Any]]:
        """The errors, those of a node inside a group put on the group node (top level) with
        the ``path`` down to the inner node: what the studio marks."""
        out = []
        for err in self.errors:
            origin = self.flat.origins.get(err["node"])
            if origin is not None:
                err = {"node": origin.path[0], "path": list(origin.path), "message": err["message"]}
            out.append(err)
        return out

    def run(self) -> None:
        data = self.data
        if not isinstance(data, dict):
            self.error(None, f"a spec is a JSON object, got {type(data).__name__}")
            return
        unknown = sorted(set(data) - {"version", "name", "nodes", "links", "groups"})
        if unknown:
            self.error(
                None,
                f"unknown top-level key(s) {unknown}; expected version, name, nodes, links, groups",
            )
        if data.get("version") != SPEC_VERSION:
            self.error(None, f"version must be {SPEC_VERSION}, got {data.get('version')!r}")
        if not isinstance(data.get("name", ""), str):
            self.error(None, f"name must be a string, got {data.get('name')!r}")
        self.flat = flatten(data)
        if self.flat.errors:
            self.errors += self.flat.errors
            return
        data = self.flat.spec
        nodes, links = data.get("nodes"), data.get("links", [])
        if not isinstance(nodes, list):
            self.error(None, "nodes must be a list of {id, type, params} objects")
            return
        if not isinstance(links, list):
            self.error(None, "links must be a list of {from: [id, output], to: [id, input]}")
            links = []
        for i, raw in enumerate(nodes):
            self._node(i, raw)
        for i, raw in enumerate(links):
            self._link(i, raw)
        self._dangling()
        self._order()
        self._roles()
        self._infer()

    def _node(self, index: int, raw: Any) -> None:
        where = _label(raw, index)
        if not isinstance(raw, dict):
            self.error(None, f"{where}: a node is an object {{id, type, params}}, got {raw!r}")
            return
        nid, ntype = raw.get("id"), raw.get("type")
        if not isinstance(nid, str) or not ID_PATTERN.fullmatch(nid):
            self.error(
                None,
                f"{where}: id must be 1 to {MAX_ID_LENGTH} letters, digits, '_' or '-' (it "
                f"prefixes the node's parameter names), got {nid!r}",
            )
            return
        if nid in self.nodes:
            self.error(nid, f"{where}: duplicate id; every node needs its own")
            return
        extra = sorted(set(raw) - {"id", "type", "title", "params", "ui"})
        if extra:
            self.error(
                nid, f"{where}: unknown key(s) {extra}; expected id, type, title, params, ui"
            )
        if not isinstance(ntype, str) or ntype not in NODE_TYPES:
            self.error(
                nid,
                f"{where}: unknown node type {ntype!r}; known types: {', '.join(NODE_TYPES)}",
            )
            return
        title = raw.get("title") or nid
        if not isinstance(title, str):
            title = nid
        spec_type = NODE_TYPES[ntype]
        ui = raw.get("ui") if isinstance(raw.get("ui"), dict) else {}
        node = Node(nid, ntype, title, {}, [None] * len(spec_type.inputs), ui)
        if nid in self.flat.origins:
            node.within = self.flat.origins[nid].within
        given = raw.get("params", {})
        if not isinstance(given, dict):
            self.error(nid, f"{node.label}: params must be an object, got {given!r}")
            given = {}
        valid = [p.name for p in spec_type.params]
        for name in sorted(set(given) - set(valid)):
            self.error(
                nid,
                f"{node.label}: unknown parameter {name!r}; valid: {', '.join(valid) or 'none'}",
            )
        bad = False
        for p in spec_type.params:
            try:
                node.params[p.name] = p.check(given[p.name]) if p.name in given else p.default
            except ValueError as exc:
                self.error(nid, f"{node.label}: {exc}")
                bad = True
        self.nodes[nid] = node
        if bad:
            self.bad.add(nid)  # its shapes can't be inferred

    def _endpoint(self, raw: Any, key: str, index: int) -> tuple[Node, int] | None:
        end = raw.get(key)
        if (
            not isinstance(end, list | tuple)
            or len(end) != 2
            or not isinstance(end[0], str)
            or isinstance(end[1], bool)
            or not isinstance(end[1], int)
        ):
            self.error(None, f"link #{index}: {key!r} must be [node_id, port_index], got {end!r}")
            return None
        nid, port = end
        node = self.nodes.get(nid)
        if node is None:
            self.error(None, f"link #{index}: {key} names node {nid!r}, which does not exist")
            return None
        ports = NODE_TYPES[node.type].outputs if key == "from" else NODE_TYPES[node.type].inputs
        if not 0 <= port < len(ports):
            what = "output" if key == "from" else "input"
            have = ", ".join(f"{i} ({p.name})" for i, p in enumerate(ports)) or "none"
            self.error(nid, f"{node.label}: has no {what} {port}; its {what}s: {have}")
            return None
        return node, port

    def _link(self, index: int, raw: Any) -> None:
        if not isinstance(raw, dict):
            self.error(None, f"link #{index}: a link is an object {{from, to}}, got {raw!r}")
            return
        src, dst = self._endpoint(raw, "from", index), self._endpoint(raw, "to", index)
        if src is None or dst is None:
            return
        (a, out), (b, inp) = src, dst
        out_port, in_port = NODE_TYPES[a.type].outputs[out], NODE_TYPES[b.type].inputs[inp]
        if out_port.kind != in_port.kind:
            self.error(
                b.id,
                f"{b.label}: input {inp} ({in_port.name}) takes {PORT_KINDS[in_port.kind]} "
                f"but {a.label} output {out} ({out_port.name}) gives {PORT_KINDS[out_port.kind]}",
            )
            return
        if b.inputs[inp] is not None:
            first = self.nodes[b.inputs[inp][0]]
            self.error(
                b.id,
                f"{b.label}: input {inp} ({in_port.name}) is linked twice, from {first.label} "
                f"and from {a.label}; an input takes one link",
            )
            return
        b.inputs[inp] = (a.id, out)

    def _dangling(self) -> None:
        used = {src[0] for n in self.nodes.values() for src in n.inputs if src is not None}
        for node in self.nodes.values():
            ports = NODE_TYPES[node.type].inputs
            for i, src in enumerate(node.inputs):
                if src is None:
                    self.error(
                        node.id, f"{node.label}: input {i} ({ports[i].name}) is not connected"
                    )
            if NODE_TYPES[node.type].category == "layer" and node.id not in used:
                self.error(
                    node.id, f"{node.label}: its output goes nowhere; connect it or delete it"
                )

    def _order(self) -> None:
        """Kahn's topological sort; nodes left over sit on (or behind) a cycle."""
        pending = {nid: {s[0] for s in n.inputs if s is not None} for nid, n in self.nodes.items()}
        while True:
            ready = [nid for nid, deps in pending.items() if not deps]
            if not ready:
                break
            for nid in ready:
                self.order.append(nid)
                del pending[nid]
            for deps in pending.values():
                deps.difference_update(ready)
        if pending:
            cycle = self._find_cycle(pending)
            path = " -> ".join(self.nodes[n].label for n in [*cycle, cycle[0]])
            for nid in cycle:
                self.error(nid, f"{self.nodes[nid].label}: is on a cycle: {path}")

    def _find_cycle(self, pending: dict[str, set[str]]) -> list[str]:
        """One cycle among the unsorted nodes: walk inputs until a node repeats."""
        walk, seen = [next(iter(pending))], set()
        while walk[-1] not in seen:
            seen.add(walk[-1])
            walk.append(next(iter(pending[walk[-1]])))
        start = walk.index(walk[-1])
        return walk[start:-1][::-1]  # in data-flow order

    def _roles(self) -> None:
        for category, what in (("data", "TextDataset"), ("loss", "Loss")):
            found = [n for n in self.nodes.values() if NODE_TYPES[n.type].category == category]
            if not found:
                self.error(None, f"the spec has no {what} node; add one")
            for extra in found[1:]:
                self.error(
                    extra.id, f"{extra.label}: a spec has one {what} node; {found[0].label} is it"
                )

    def _infer(self) -> None:
        for nid in self.order:
            node = self.nodes[nid]
            if nid in self.bad:
                continue
            sources = node.inputs
            if any(s is None or s not in self.shapes for s in sources):
                continue  # an input is missing or failed: reported already
            ins = [self.shapes[s] for s in sources]
            try:
                outs = NODE_TYPES[node.type].infer(node, ins, self.state)
            except SpecError as exc:
                self.error(exc.node, exc.message)
                continue
            for i, shape in enumerate(outs):
                self.shapes[(nid, i)] = shape


def _run_checker(data: Any, data_dir: str | Path | None, vocab_size: int | None) -> _Checker:
    checker = _Checker(data, data_dir, vocab_size)
    checker.run()
    return checker


def check_spec(data: Any, data_dir: str | Path | None = None) -> dict[str, Any]:
    """Validate a spec and infer its shapes without raising for any bad spec.

    Returns {"ok": bool, "errors": [{"node": id | None, "message": str}],
    "shapes": {"<from_id>:<output_index>": [dims...]}} with the shape of every output
    that could be inferred (also when other parts of the spec have errors).
    """
    checker = _run_checker(data, data_dir, None)
    shapes = {f"{nid}:{i}": list(s) for (nid, i), s in checker.shapes.items()}
    flat = checker.flat
    for path, nid in flat.views.items():  # inside a group: its first copy's shapes
        shapes.update({f"{path}:{i}": list(s) for (n, i), s in checker.shapes.items() if n == nid})
    for key, src in flat.outputs.items():  # a group node's outputs: its last copy's
        if src in checker.shapes:
            shapes[key] = list(checker.shapes[src])
    return {"ok": not checker.errors, "errors": checker.attributed(), "shapes": shapes}


def parse_spec(
    data: Any, data_dir: str | Path | None = None, vocab_size: int | None = None
) -> Spec:
    """A checked :class:`Spec`, or SpecError with the first problem (``.errors`` has all).

    vocab_size: that of the tokenizer in use (e.g. a checkpoint's), instead of the one
    the data node's corpus gives.
    """
    checker = _run_checker(data, data_dir, vocab_size)
    if checker.errors:
        errors = checker.attributed()
        raise SpecError(errors[0]["node"], errors[0]["message"], errors)
    roles = {NODE_TYPES[n.type].category: n.id for n in checker.nodes.values()}
    return Spec(
        name=data.get("name", ""),
        nodes={nid: checker.nodes[nid] for nid in checker.order},
        shapes=checker.shapes,
        data=roles["data"],
        loss=roles["loss"],
        vocab_size=checker.state.vocab_size,
        source=data,
    )


def load_spec(path: str | Path, data_dir: str | Path | None = None) -> Spec:
    """Parse a spec file; JSON syntax errors become SpecError too."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(None, f"{path} is not valid JSON (truncated or garbled?): {exc}") from None
    try:
        return parse_spec(data, data_dir)
    except SpecError as exc:  # say which file the problem is in
        raise SpecError(exc.node, f"{path}: {exc.message}", exc.errors) from None
