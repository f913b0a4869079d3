"""What a spec is made of: its node types' declarations (ports, parameters) and a parsed spec.

Shapes are numpy order: tokens (B, T), activations (B, T, C).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPEC_VERSION = 1
MAX_ID_LENGTH = 40  # "<id>.attn.c_attn.weight" stays within ggml's 63-character tensor names
ID_PATTERN = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_ID_LENGTH}}}")
Shape = tuple[int, ...]

# what flows along a link: token ids (B, T) into an Embedding, next-token targets (B, T)
# into the Loss, and float activations (B, T, C) everywhere else
PORT_KINDS = {
    "tokens": "token ids (B, T), int",
    "targets": "next-token ids (B, T), int",
    "tensor": "activations (B, T, C), float",
}


class SpecError(ValueError):
    """A spec problem, attributed to a node (``node`` is its id) or to the whole spec (None)."""

    def __init__(self, node: str | None, message: str, errors: list[dict] | None = None):
        super().__init__(message)
        self.node = node
        self.message = message
        self.errors = errors or [{"node": node, "message": message}]  # every problem found


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter, shown as a widget; ``type`` is int, float, bool, str or choice."""

    name: str
    type: str
    default: Any
    doc: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    max_exclusive: bool = False  # e.g. dropout p in [0, 1)
    node_ref: bool = False  # the value is a node's id (a group renames it with the node)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "default": self.default}
        for key in ("min", "max"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.max_exclusive:
            out["max_exclusive"] = True
        if self.choices is not None:
            out["choices"] = list(self.choices)
        out["doc"] = self.doc
        return out

    def check(self, value: Any) -> Any:
        """The value, normalised (int-valued floats for ints), or ValueError saying why not."""
        if self.type == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{self.name} must be true or false, got {value!r}")
            return value
        if self.type in ("str", "choice"):
            if not isinstance(value, str):
                raise ValueError(f"{self.name} must be a string, got {value!r}")
            if self.choices is not None and value not in self.choices:
                raise ValueError(
                    f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}"
                )
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{self.name} must be a number, got {value!r}")
        if self.type == "int":
            if not float(value).is_integer():
                raise ValueError(f"{self.name} must be an integer, got {value!r}")
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"{self.name} must be finite, got {value!r}")
        low_ok = self.min is None or value >= self.min
        high_ok = self.max is None or (
            value < self.max if self.max_exclusive else value <= self.max
        )
        if not (low_ok and high_ok):
            raise ValueError(f"{self.name} must be in {self.range_text()}, got {value!r}")
        return value

    def range_text(self) -> str:
        low = "-inf" if self.min is None else f"{self.min:g}"
        high = "inf" if self.max is None else f"{self.max:g}"
        return f"[{low}, {high}{')' if self.max_exclusive or self.max is None else ']'}"


@dataclass(frozen=True)
class Port:
    name: str
    kind: str  # a key of PORT_KINDS
    doc: str


@dataclass(frozen=True)
class NodeType:
    """A node type: what it takes, gives and is configured by, and how shapes flow through it."""

    name: str
    category: str  # "data", "layer" or "loss": where the palette lists it
    doc: str
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    params: tuple[ParamSpec, ...]
    # (node, input shapes, inference state) -> output shapes; raises SpecError
    infer: Callable[[Node, list[Shape], InferState], list[Shape]] = field(repr=False)
    # the layers.py object the node compiles to (None for the data and loss nodes)
    build: Callable[[Node, BuildContext], Any] | None = field(default=None, repr=False)
    streams: int = 0  # dropout streams its layer draws, each its own mask
    # its attention layer, for a net that decodes with KV caches (the layer then takes one)
    attention: Callable[[Any], Any] | None = field(default=None, repr=False)
    takes_positions: bool = False  # the layer is called with the decoding positions
    causal: Callable[[Node], bool] = field(default=lambda node: True, repr=False)

    def param(self, name: str) -> ParamSpec:
        return next(p for p in self.params if p.name == name)

    def to_json(self) -> dict[str, Any]:
        port = lambda p: {"name": p.name, "kind": p.kind, "doc": p.doc}  # noqa: E731
        return {
            "category": self.category,
            "doc": self.doc,
            "inputs": [port(p) for p in self.inputs],
            "outputs": [port(p) for p in self.outputs],
            "params": [p.to_json() for p in self.params],
        }


@dataclass
class Node:
    """A node of a parsed spec, with every parameter present (defaults filled in)."""

    id: str
    type: str
    title: str
    params: dict[str, Any]
    inputs: list[tuple[str, int] | None]  # per input: (from node id, output index)
    ui: dict[str, Any] = field(default_factory=dict)
    within: str = ""  # the group it came from: 'group "blocks" (copy 2 of 3)'

    @property
    def label(self) -> str:
        """How messages name the node: ``GPTBlock "block 2"``, ``LayerNorm "ln1" in group
        "blocks" (copy 2 of 3)``."""
        return f'{self.type} "{self.title}"' + (f" in {self.within}" if self.within else "")

    def error(self, message: str) -> SpecError:
        return SpecError(self.id, f"{self.label}: {message}")


@dataclass
class Spec:
    """A valid spec: nodes in an order where every input comes first, and inferred shapes."""

    name: str
    nodes: dict[str, Node]  # topological order
    shapes: dict[tuple[str, int], Shape]  # (node id, output index) -> shape
    data: str  # id of the TextDataset node
    loss: str  # id of the Loss node
    vocab_size: int | None  # of the data's tokenizer; None if the corpus is not at hand yet
    source: dict[str, Any]  # the JSON the spec was parsed from

    def input_shapes(self, node: Node) -> list[Shape]:
        return [self.shapes[src] for src in node.inputs if src is not None]


@dataclass
class InferState:
    """What shape rules may consult beyond a node's inputs."""

    nodes: dict[str, Node]
    data_dir: Path | None
    vocab_size: int | None = None  # given (the tokenizer in use), or found by the data node's rule
    data_node: Node | None = None


@dataclass
class BuildContext:
    """What a node's ``build`` may consult: the spec, the layers built before it (in
    topological order), the width of its first input, and its first dropout stream."""

    spec: Spec
    layers: dict[str, Any]
    width: int
    stream: int
    n_blocks: int  # GPTBlock nodes in the spec (GPT-2's init scales with depth)
