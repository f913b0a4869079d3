"""Groups: a named block of nodes used as one node, with exposed parameters, repeatable.

A spec may define blocks under ``groups`` and use them as nodes of type ``Group``::

    "groups": {"attn_mlp": {
        "nodes": [...], "links": [...],               # the inside, as in a spec
        "inputs": [{"name": "x", "to": [["ln1", 0], ["res1", 0]]}],
        "outputs": [{"name": "y", "from": ["res2", 0]}],
        "params": [{"name": "width", "binds": [["ln1", "normalized_shape"], ...]}]}},
    "nodes": [..., {"id": "blocks", "type": "Group", "group": "attn_mlp",
                    "params": {"repeat": 3, "width": 128}}, ...]

Everything downstream sees the flattened spec (:func:`flatten`): each copy ``k`` of an
instance ``blocks`` holds the inside under ids ``blocks_<k>_<inner id>``, copy k's output i
feeds copy k+1's input i, and an exposed parameter sets every inner parameter it binds. So
a grouped spec and its flattened form check, compile and train identically; the origins
kept here let messages name the inner node and the group it sits in.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .nodes import NODE_TYPES
from .schema import ID_PATTERN, MAX_ID_LENGTH, ParamSpec, SpecError

GROUP_TYPE = "Group"  # the node type of a group instance (not a NODE_TYPES entry)
REPEAT = ParamSpec(
    "repeat", "int", 1, "copies chained one after another (output i feeds input i)", 1, 1000
)
_DEFINITION_KEYS = {"title", "nodes", "links", "inputs", "outputs", "params"}


@dataclass(frozen=True)
class Origin:
    """Where a flattened node comes from: instance ids from the top level down, then its
    id inside, and how messages say so (``group "blocks" (copy 2 of 3)``)."""

    path: tuple[str, ...]
    within: str


@dataclass
class Flat:
    """A spec with its groups expanded, and what maps the result back to the groups."""

    spec: Any  # the flattened JSON (the input itself when it uses no groups)
    origins: dict[str, Origin] = field(default_factory=dict)  # flat id -> origin
    errors: list[dict[str, Any]] = field(default_factory=list)  # problems of the groups
    # "<path>" -> flat node id for the nodes of every instance's first copy, and
    # "<path>:<output>" -> (flat id, output) for every instance's outputs (the last copy's)
    views: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, tuple[str, int]] = field(default_factory=dict)


def uses_groups(data: Any) -> bool:
    return isinstance(data, dict) and (
        "groups" in data
        or any(isinstance(n, dict) and n.get("type") == GROUP_TYPE for n in _list(data, "nodes"))
    )


def flatten(data: Any, only: str | None = None) -> Flat:
    """``data`` with every Group node replaced by its copies; problems of the groups go
    to ``errors`` (then ``spec`` is None). A spec without groups comes back as it is.
    ``only``: the id of the one top-level group node to replace (an "ungroup"; the other
    group nodes and the definitions stay)."""
    if not uses_groups(data):
        return Flat(data)
    groups = data.get("groups", {})
    if not isinstance(groups, dict):
        return Flat(None, errors=[_err(None, (), f"groups must be an object, got {groups!r}")])
    top = _list(data, "nodes")
    if only is not None and not any(
        isinstance(n, dict) and n.get("type") == GROUP_TYPE and n.get("id") == only for n in top
    ):
        return Flat(None, errors=[_err(None, (), f"no group node {only!r} at the top level")])
    expander = _Expander(groups, only)
    nodes, links, _, _ = expander.level(top, _list(data, "links"), (), "", "", ())
    if expander.errors:
        return Flat(None, errors=expander.errors)
    flat = {k: v for k, v in data.items() if k != "groups" or only is not None}
    flat["nodes"] = nodes if isinstance(data.get("nodes"), list) else data.get("nodes")
    flat["links"] = links if isinstance(data.get("links", []), list) else data.get("links")
    return Flat(flat, expander.origins, [], expander.views, expander.outputs)


def flatten_spec(data: Any, only: str | None = None) -> dict[str, Any]:
    """The flattened spec JSON (no groups left; with ``only``, that group node replaced),
    or SpecError naming the group's problem."""
    flat = flatten(data, only)
    if flat.errors:
        first = flat.errors[0]
        raise SpecError(first["node"], first["message"], flat.errors)
    return flat.spec


def interface(groups: Any, name: str) -> dict[str, Any]:
    """A group's ports (name, kind) and parameters (``repeat`` first, then the exposed ones,
    typed by the inner parameter each binds): what a Group node shows. Raises SpecError."""
    expander = _Expander(groups if isinstance(groups, dict) else {})
    found = expander.interface(name, (), (name,))
    if expander.errors or found is None:
        errors = expander.errors or [_err(None, (), f"no group {name!r}")]
        raise SpecError(None, errors[0]["message"], errors)
    return {
        "inputs": [{"name": n, "kind": k} for n, k in found.inputs],
        "outputs": [{"name": n, "kind": k} for n, k in found.outputs],
        "params": [REPEAT.to_json(), *(p.to_json() for p in found.params.values())],
    }


def used_groups(groups: dict[str, Any], name: str) -> dict[str, Any]:
    """The definition ``name`` and every definition it uses, inside groups too (what a
    template must carry); definitions it names that do not exist are left out."""
    found: dict[str, Any] = {}
    todo = [name]
    while todo:
        n = todo.pop()
        if n in found or not isinstance(groups.get(n), dict):
            continue
        found[n] = groups[n]
        inner = groups[n].get("nodes")
        for raw in inner if isinstance(inner, list) else []:
            if isinstance(raw, dict) and isinstance(raw.get("group"), str):
                todo.append(raw["group"])
    return found


def _list(data: dict, key: str) -> list:
    value = data.get(key, [])
    return value if isinstance(value, list) else []


def _err(node: str | None, path: tuple[str, ...], message: str) -> dict[str, Any]:
    return {"node": node, "path": list(path), "message": message}


@dataclass
class _Interface:
    inputs: list[tuple[str, str]]  # (name, port kind)
    outputs: list[tuple[str, str]]
    params: dict[str, ParamSpec]  # exposed name -> the spec of what it sets


class _Expander:
    """Expands one level of nodes at a time, recursing into the groups a group uses."""

    def __init__(self, groups: dict[str, Any], only: str | None = None):
        self.groups = groups
        self.only = only  # the one top-level group node to expand (None: all)
        self.errors: list[dict[str, Any]] = []
        self.origins: dict[str, Origin] = {}
        self.views: dict[str, str] = {}
        self.outputs: dict[str, tuple[str, int]] = {}
        self._faces: dict[str, _Interface | None] = {}  # None: the definition is broken

    def error(self, where: tuple[str, ...], message: str) -> None:
        self.errors.append(_err(where[0] if where else None, where, message))

    # ---- one level: the top, or one copy of a group's inside ---------------------------------
    def level(
        self,
        nodes: list,
        links: list,
        path: tuple[str, ...],
        prefix: str,
        within: str,
        stack: tuple[str, ...],
        view: bool = True,
    ) -> tuple[list[dict], list[dict], dict, dict]:
        """Flat nodes and links of one level, and per group instance its inputs' targets and
        outputs' sources. ``prefix`` makes the ids of a copy unique; ``view``: this is the
        first copy all the way down (its shapes are what the inside of a group shows)."""
        out_nodes: list[dict] = []
        out_links: list[dict] = []
        ins: dict[str, list[list[tuple[str, int]]]] = {}
        outs: dict[str, list[tuple[str, int]]] = {}
        named = [n["id"] for n in nodes if isinstance(n, dict) and isinstance(n.get("id"), str)]
        ids = set(named)
        for raw in nodes:
            group = isinstance(raw, dict) and raw.get("type") == GROUP_TYPE
            if group and (path or self.only is None or raw.get("id") == self.only):
                if named.count(raw.get("id")) > 1:  # links to it would be ambiguous
                    self.error(
                        (*path, raw["id"]),
                        f'node "{raw["id"]}": duplicate id; every node needs its own',
                    )
                    continue
                expanded = self._instance(raw, path, prefix, within, stack, view)
                if expanded is not None:
                    inst_nodes, inst_links, ins[raw["id"]], outs[raw["id"]] = expanded
                    out_nodes += inst_nodes
                    out_links += inst_links
            else:
                out_nodes.append(self._leaf(raw, ids, path, prefix, within, view))
        for raw in links:
            out_links += self._link(raw, path, prefix, ins, outs)
        return out_nodes, out_links, ins, outs

    def _leaf(
        self, raw: Any, ids: set, path: tuple[str, ...], prefix: str, within: str, view: bool
    ) -> Any:
        if not prefix:
            return raw  # a top-level node stays as written
        inner = raw["id"]
        node = copy.deepcopy(raw)
        node["id"] = prefix + inner
        node["title"] = raw.get("title") or inner
        params = node.get("params", {})
        for p in NODE_TYPES[raw["type"]].params:  # e.g. a tie to an Embedding of this copy
            ref = params.get(p.name) if isinstance(params, dict) else None
            if p.node_ref and isinstance(ref, str) and ref in ids:
                params[p.name] = prefix + params[p.name]
        if len(node["id"]) > MAX_ID_LENGTH:
            self.error(
                (*path, inner),
                f'node "{inner}" in {within}: its id in the flattened spec, "{node["id"]}", '
                f"is {len(node['id'])} characters, over the {MAX_ID_LENGTH} allowed; "
                "shorten the group node's id or the inner node's",
            )
        self.origins[node["id"]] = Origin((*path, inner), within)
        if view:
            self.views["/".join((*path, inner))] = node["id"]
        return node

    def _link(
        self, raw: Any, path: tuple[str, ...], prefix: str, ins: dict, outs: dict
    ) -> list[dict]:
        """The link with group instances replaced by their inner ports (one link per inner
        input a group input feeds); a malformed top-level link stays for the checker."""
        ends = _endpoints(raw)
        if ends is None:
            return [raw] if not prefix else []
        (a, i), (b, j) = ends
        if a in outs:
            if not 0 <= i < len(outs[a]):
                self.error((*path, a), f'Group "{a}": has no output {i}; it has {len(outs[a])}')
                return []
            src = outs[a][i]
        else:
            src = (prefix + a, i)
        if b in ins:
            if not 0 <= j < len(ins[b]):
                self.error((*path, b), f'Group "{b}": has no input {j}; it has {len(ins[b])}')
                return []
            dsts = ins[b][j]
        else:
            dsts = [(prefix + b, j)]
        return [{"from": list(src), "to": list(d)} for d in dsts]

    def _instance(
        self,
        raw: dict,
        path: tuple[str, ...],
        prefix: str,
        within: str,
        stack: tuple[str, ...],
        view: bool,
    ) -> tuple[list[dict], list[dict], list, list] | None:
        """The copies of one group instance, chained; None after reporting a problem."""
        iid = raw.get("id")
        if not isinstance(iid, str) or not ID_PATTERN.fullmatch(iid):
            self.error(
                path, f"node {iid!r}: id must be 1 to {MAX_ID_LENGTH} letters, digits, '_' or '-'"
            )
            return None
        where = (*path, iid)
        label = f'Group "{raw.get("title") or iid}"'
        name = raw.get("group")
        if not isinstance(name, str) or name not in self.groups:
            known = ", ".join(self.groups) or "none"
            self.error(where, f"{label}: unknown group {name!r}; this spec defines: {known}")
            return None
        if name in stack:
            loop = " -> ".join((*stack, name))
            self.error(
                where,
                f"{label}: group {name!r} contains itself ({loop}); a group cannot hold "
                "a copy of itself",
            )
            return None
        face = self.interface(name, where, (*stack, name))
        if face is None:
            return None
        title = raw.get("title") or self.groups[name].get("title") or iid  # as the node shows
        label = f'Group "{title}"'
        given = raw.get("params", {})
        if not isinstance(given, dict):
            self.error(where, f"{label}: params must be an object, got {given!r}")
            return None
        valid = ["repeat", *face.params]
        unknown = sorted(set(given) - set(valid))
        if unknown:
            self.error(where, f"{label}: unknown parameter(s) {unknown}; valid: {', '.join(valid)}")
            return None
        try:
            repeat = REPEAT.check(given.get("repeat", 1))
            values = {k: face.params[k].check(v) for k, v in given.items() if k != "repeat"}
        except ValueError as exc:
            self.error(where, f"{label}: {exc}")
            return None
        if repeat > 1 and [k for _, k in face.inputs] != [k for _, k in face.outputs]:
            show = lambda ports: ", ".join(f"{n}: {k}" for n, k in ports) or "nothing"  # noqa: E731
            self.error(
                where,
                f"{label}: repeat {repeat} feeds each copy's output i into the next copy's "
                f"input i, so the group needs outputs matching its inputs; it takes "
                f"({show(face.inputs)}) and gives ({show(face.outputs)}); set repeat to 1",
            )
            return None
        defn = self.groups[name]
        binds = {p["name"]: p["binds"] for p in defn.get("params", [])}
        nodes: list[dict] = []
        links: list[dict] = []
        first_ins: list = []
        last_outs: list = []
        for k in range(repeat):
            copy_of = f" (copy {k + 1} of {repeat})" if repeat > 1 else ""
            inside = f'group "{title}"{copy_of}' + (f" in {within}" if within else "")
            inner = [_bound(n, values, binds) for n in defn["nodes"]]
            cprefix = f"{prefix}{iid}_{k}_"
            n, lk, inner_ins, inner_outs = self.level(
                inner,
                defn.get("links", []),
                where,
                cprefix,
                inside,
                (*stack, name),
                view and k == 0,
            )
            targets = [
                [
                    d
                    for a, j in inp["to"]
                    for d in (inner_ins[a][j] if a in inner_ins else [(cprefix + a, j)])
                ]
                for inp in defn.get("inputs", [])
            ]
            sources = [
                inner_outs[a][i] if a in inner_outs else (cprefix + a, i)
                for a, i in (o["from"] for o in defn.get("outputs", []))
            ]
            if k == 0:
                first_ins = targets
            else:
                links += [
                    {"from": list(last_outs[i]), "to": list(d)}
                    for i, ds in enumerate(targets)
                    for d in ds
                ]
            nodes += n
            links += lk
            last_outs = sources
        if view:
            for i, src in enumerate(last_outs):
                self.outputs[f"{'/'.join(where)}:{i}"] = src
        return nodes, links, first_ins, last_outs

    # ---- a definition's interface, checked once ------------------------------------------------
    def interface(
        self, name: str, where: tuple[str, ...], stack: tuple[str, ...]
    ) -> _Interface | None:
        if name in self._faces:
            return self._faces[name]
        face = self._check_definition(name, where, stack)
        self._faces[name] = face
        return face

    def _check_definition(
        self, name: str, where: tuple[str, ...], stack: tuple[str, ...]
    ) -> _Interface | None:
        defn = self.groups.get(name)
        label = f'group "{name}"'
        before = len(self.errors)

        def bad(message: str) -> None:
            self.error(where, f"{label}: {message}")

        if not isinstance(name, str) or not ID_PATTERN.fullmatch(name):
            bad(f"a group's name is 1 to {MAX_ID_LENGTH} letters, digits, '_' or '-'")
            return None
        if not isinstance(defn, dict):
            bad(f"a group is an object {{nodes, links, inputs, outputs, params}}, got {defn!r}")
            return None
        extra = sorted(set(defn) - _DEFINITION_KEYS)
        if extra:
            bad(f"unknown key(s) {extra}; expected {', '.join(sorted(_DEFINITION_KEYS))}")
            return None
        nodes = defn.get("nodes")
        if not isinstance(nodes, list) or not nodes:
            bad("nodes must be a non-empty list of {id, type, params} objects")
            return None
        # inner id -> (its input kinds, its output kinds, its parameters)
        ports: dict[str, tuple[list[str], list[str], dict[str, ParamSpec]]] = {}
        for raw in nodes:
            nid = raw.get("id") if isinstance(raw, dict) else None
            if not isinstance(nid, str) or not ID_PATTERN.fullmatch(nid):
                bad(f"node ids are 1 to {MAX_ID_LENGTH} letters, digits, '_' or '-', got {nid!r}")
                return None
            if nid in ports:
                bad(f'node "{nid}": duplicate id; every node needs its own')
                return None
            ntype = raw.get("type")
            if ntype == GROUP_TYPE:
                inner = raw.get("group")
                if not isinstance(inner, str) or inner not in self.groups:
                    known = ", ".join(self.groups)
                    bad(f'node "{nid}": unknown group {inner!r}; this spec defines: {known}')
                    return None
                if inner in stack:
                    loop = " -> ".join((*stack, inner))
                    bad(
                        f'node "{nid}": group {inner!r} contains itself ({loop}); a group '
                        "cannot hold a copy of itself"
                    )
                    return None
                face = self.interface(inner, where, (*stack, inner))
                if face is None:
                    return None
                ports[nid] = (
                    [k for _, k in face.inputs],
                    [k for _, k in face.outputs],
                    {"repeat": REPEAT, **face.params},
                )
            elif isinstance(ntype, str) and ntype in NODE_TYPES:
                t = NODE_TYPES[ntype]
                if t.category != "layer":
                    bad(
                        f'node "{nid}" is a {ntype}, a {t.category} node; a group holds layers '
                        "only: keep it outside and link it to the group's ports"
                    )
                    return None
                ports[nid] = (
                    [p.kind for p in t.inputs],
                    [p.kind for p in t.outputs],
                    {p.name: p for p in t.params},
                )
            else:
                bad(
                    f'node "{nid}": unknown node type {ntype!r}; known types: '
                    f"{', '.join(NODE_TYPES)}, {GROUP_TYPE}"
                )
                return None

        def port(end: Any, side: int, what: str) -> str | None:
            """The kind of an inner endpoint ([id, index]; side 0 inputs, 1 outputs)."""
            ok = (
                isinstance(end, list | tuple)
                and len(end) == 2
                and isinstance(end[0], str)
                and end[0] in ports
                and isinstance(end[1], int)
                and not isinstance(end[1], bool)
                and 0 <= end[1] < len(ports[end[0]][side])
            )
            if not ok:
                have = ", ".join(ports)
                bad(
                    f"{what} {end!r} is not [inner node id, port index] of this group's "
                    f"nodes ({have})"
                )
                return None
            return ports[end[0]][side][end[1]]

        links = _objects(defn, "links", bad)
        for i, link in enumerate(links):
            ends = _endpoints(link)
            if (
                ends is None
                or port(ends[0], 1, f"link #{i} from") is None
                or port(ends[1], 0, f"link #{i} to") is None
            ):
                if ends is None:
                    bad(f"link #{i} must be {{from: [id, output], to: [id, input]}}, got {link!r}")
                return None
        loop = _cycle([n["id"] for n in nodes], links)
        if loop:
            named = {n["id"]: f'{n["type"]} "{n.get("title") or n["id"]}"' for n in nodes}
            self.error(
                (*where, loop[0]),
                f"{label}: its links form a cycle: {' -> '.join(named[n] for n in loop)}; "
                "data flows one way through a group: remove one of these links",
            )
            return None
        inputs: list[tuple[str, str]] = []
        for i, inp in enumerate(_objects(defn, "inputs", bad)):
            targets = inp.get("to")
            if not isinstance(inp.get("name"), str) or not isinstance(targets, list) or not targets:
                bad(f"input #{i} must be {{name, to: [[inner id, input index], ...]}}, got {inp!r}")
                return None
            kinds = [port(t, 0, f"input {inp['name']!r} feeds") for t in targets]
            if None in kinds:
                return None
            if len(set(kinds)) > 1:
                bad(f"input {inp['name']!r} feeds ports of different kinds ({', '.join(kinds)})")
                return None
            inputs.append((inp["name"], kinds[0]))
        outputs: list[tuple[str, str]] = []
        for i, out in enumerate(_objects(defn, "outputs", bad)):
            if not isinstance(out.get("name"), str):
                bad(f"output #{i} must be {{name, from: [inner id, output index]}}, got {out!r}")
                return None
            kind = port(out.get("from"), 1, f"output {out['name']!r} comes from")
            if kind is None:
                return None
            outputs.append((out["name"], kind))
        params: dict[str, ParamSpec] = {}
        for i, p in enumerate(_objects(defn, "params", bad)):
            pname, binds = p.get("name"), p.get("binds")
            if not isinstance(pname, str) or not pname or pname in params or pname == "repeat":
                bad(f"parameter #{i}: a name of its own (not 'repeat') is needed, got {pname!r}")
                return None
            if not isinstance(binds, list) or not binds:
                bad(f"parameter {pname!r}: binds must list [[inner id, parameter], ...]")
                return None
            for b in binds:
                if not (
                    isinstance(b, list | tuple)
                    and len(b) == 2
                    and all(isinstance(x, str) for x in b)
                    and b[0] in ports
                    and b[1] in ports[b[0]][2]
                ):
                    bad(
                        f"parameter {pname!r} binds {b!r}, which is no [inner id, parameter] "
                        "of this group"
                    )
                    return None
            nid, inner_param = binds[0]
            target = ports[nid][2][inner_param]
            start = next(n for n in nodes if n["id"] == nid).get("params", {})
            default = (
                start.get(inner_param, target.default)
                if isinstance(start, dict)
                else target.default
            )
            params[pname] = dataclasses.replace(target, name=pname, default=default)
        if len(self.errors) > before:
            return None
        return _Interface(inputs, outputs, params)


def _objects(defn: dict, key: str, bad: Any) -> list[dict]:
    items = defn.get(key, [])
    if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
        bad(f"{key} must be a list of objects, got {items!r}")
        return []
    return items


def _endpoints(raw: Any) -> tuple[tuple[str, int], tuple[str, int]] | None:
    """(from, to) of a well-formed link, else None."""
    if not isinstance(raw, dict):
        return None
    ends = []
    for key in ("from", "to"):
        end = raw.get(key)
        if not (
            isinstance(end, list | tuple)
            and len(end) == 2
            and isinstance(end[0], str)
            and isinstance(end[1], int)
            and not isinstance(end[1], bool)
        ):
            return None
        ends.append((end[0], end[1]))
    return ends[0], ends[1]


def _cycle(ids: list[str], links: list[dict]) -> list[str]:
    """A cycle among the nodes (first node repeated at the end), or [] when there is none."""
    feeds: dict[str, set[str]] = {n: set() for n in ids}  # node -> the nodes it reads
    for link in links:
        (a, _), (b, _) = _endpoints(link)  # type: ignore[misc]  # checked by the caller
        feeds[b].add(a)
    pending = dict(feeds)
    while ready := [n for n, deps in pending.items() if not deps & pending.keys()]:
        for n in ready:
            del pending[n]
    if not pending:
        return []
    walk = [min(pending)]
    while walk.count(walk[-1]) < 2:
        walk.append(min(feeds[walk[-1]] & pending.keys()))
    loop = walk[walk.index(walk[-1]) :]
    return loop[::-1]  # in data-flow order


def _bound(raw: dict, values: dict[str, Any], binds: dict[str, list]) -> dict:
    """A copy of an inner node with the instance's exposed parameter values set."""
    node = copy.deepcopy(raw)
    for pname, value in values.items():
        for nid, param in binds[pname]:
            params = node.setdefault("params", {})
            if nid == node["id"] and isinstance(params, dict):  # else the checker says why
                params[param] = value
    return node
