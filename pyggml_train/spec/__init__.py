"""The model spec: a JSON graph of nodes and links, checked and compiled into a model.

A spec is plain JSON (docs/spec.md)::

    {"version": 1, "name": "small GPT",
     "nodes": [{"id": "data", "type": "TextDataset", "params": {...}}, ...],
     "links": [{"from": ["data", 0], "to": ["emb", 0]}, ...]}

One module per job:

- ``schema``: what a spec is made of (ParamSpec, Port, NodeType, Node, Spec, SpecError);
- ``nodes``: the node types, each declared once (widgets, shape rule, the layer it
  builds, dropout streams); the studio's palette is :func:`node_types_json`;
- ``corpus``: where a TextDataset's text comes from (a named dataset or a file);
- ``groups``: blocks of nodes used as one node (exposed parameters, repeat N), and
  :func:`flatten_spec`, the same spec without them, which is what everything below reads;
- ``checker``: :func:`check_spec` reports every problem on its node and infers every
  link's shape; :func:`parse_spec` gives a :class:`Spec` or raises the first problem;
- ``compiler``: :class:`SpecNet` (layers), :class:`SpecModel` (trainable), the run's
  TrainConfig (:func:`train_config_for`);
- ``exchange``: :func:`as_gpt2`, a GPT-2-shaped spec under GPT-2's names.

Training a spec and exporting a script that reproduces it are recipes (recipes.py).
"""

from .checker import check_spec, load_spec, parse_spec
from .compiler import SpecModel, SpecNet, build_model, summary, train_config_for
from .corpus import SOURCES, load_corpus
from .exchange import as_gpt2
from .groups import GROUP_TYPE, REPEAT, flatten_spec, used_groups
from .groups import interface as group_interface
from .nodes import NODE_TYPES, node_types_json
from .schema import SPEC_VERSION, Node, NodeType, ParamSpec, Port, Spec, SpecError

__all__ = [
    "GROUP_TYPE",
    "NODE_TYPES",
    "REPEAT",
    "SOURCES",
    "SPEC_VERSION",
    "Node",
    "NodeType",
    "ParamSpec",
    "Port",
    "Spec",
    "SpecError",
    "SpecModel",
    "SpecNet",
    "as_gpt2",
    "build_model",
    "check_spec",
    "flatten_spec",
    "group_interface",
    "load_corpus",
    "load_spec",
    "node_types_json",
    "parse_spec",
    "summary",
    "train_config_for",
    "used_groups",
]
