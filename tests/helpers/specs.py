"""Small model specs on tiny shakespeare (shared data): a GPT, one of GPT-2's shape, an
encoder layer put in, and a node by id. Shared by the spec tests."""

from helpers.env import SHARED

DATA_DIR = SHARED / "data"

VOCAB = 65  # tiny shakespeare's characters


def tiny(c: int = 16, blocks: int = 2, heads: int = 2, vocab: int = 65, t: int = 8) -> dict:
    """A small GPT spec on tiny shakespeare (char vocabulary 65)."""
    nodes = [
        {"id": "data", "type": "TextDataset", "params": {"block_size": t, "batch_size": 2}},
        {"id": "emb", "type": "Embedding", "params": {"num_embeddings": vocab, "embedding_dim": c}},
        {"id": "pos", "type": "PositionalEncoding", "params": {"max_len": 64}},
    ]
    for i in range(blocks):
        params = {"d_model": c, "nhead": heads, "dim_feedforward": 4 * c}
        nodes.append({"id": f"b{i}", "type": "GPTBlock", "title": f"block {i}", "params": params})
    nodes += [
        {"id": "ln", "type": "LayerNorm", "params": {"normalized_shape": c}},
        {"id": "head", "type": "Linear", "params": {"in_features": c, "out_features": vocab}},
        {"id": "loss", "type": "Loss", "params": {"steps": 10, "warmup_steps": 2}},
    ]
    chain = ["emb", "pos", *[f"b{i}" for i in range(blocks)], "ln", "head"]
    links = [{"from": ["data", 0], "to": ["emb", 0]}]
    links += [{"from": [a, 0], "to": [b, 0]} for a, b in zip(chain[:-1], chain[1:], strict=True)]
    links += [{"from": ["head", 0], "to": ["loss", 0]}, {"from": ["data", 1], "to": ["loss", 1]}]
    return {"version": 1, "name": "tiny", "nodes": nodes, "links": links}


def insert_encoder(spec: dict, after: str, dropout: float) -> None:
    """Put a TransformerEncoderLayer "enc" (d_model 16, as tiny()'s default) between node
    ``after`` and the final LayerNorm of a tiny() spec."""
    spec["nodes"].append(
        {
            "id": "enc",
            "type": "TransformerEncoderLayer",
            "params": {"d_model": 16, "nhead": 2, "dim_feedforward": 32, "dropout": dropout},
        }
    )
    spec["links"] = [lk for lk in spec["links"] if lk["to"] != ["ln", 0]]
    spec["links"] += [{"from": [after, 0], "to": ["enc", 0]}, {"from": ["enc", 0], "to": ["ln", 0]}]


def node(spec: dict, nid: str) -> dict:
    return next(n for n in spec["nodes"] if n["id"] == nid)


def gpt2_spec(c: int, blocks: int, heads: int, t: int) -> dict:
    """A spec of GPT-2's shape: tied LM head without bias, learned positions."""
    data = tiny(c=c, blocks=blocks, heads=heads, t=t)
    node(data, "head")["params"].update(bias=False, tie_weights="emb")
    node(data, "pos")["params"]["max_len"] = t
    return data


# a custom attention + MLP unit as a group: x -> x + attn(ln1(x)) -> + proj(act(fc(ln2(.))))
_UNIT = [
    ("ln1", "LayerNorm", {"normalized_shape": 16}),
    ("attn", "MultiheadAttention", {"embed_dim": 16, "num_heads": 2, "dropout": 0.1}),
    ("res1", "Add", {}),
    ("ln2", "LayerNorm", {"normalized_shape": 16}),
    ("fc", "Linear", {"in_features": 16, "out_features": 64}),
    ("act", "Activation", {"function": "gelu"}),
    ("proj", "Linear", {"in_features": 64, "out_features": 16}),
    ("res2", "Add", {}),
]
_UNIT_LINKS = [
    (("ln1", 0), ("attn", 0)),
    (("attn", 0), ("res1", 1)),
    (("res1", 0), ("ln2", 0)),
    (("ln2", 0), ("fc", 0)),
    (("fc", 0), ("act", 0)),
    (("act", 0), ("proj", 0)),
    (("res1", 0), ("res2", 0)),
    (("proj", 0), ("res2", 1)),
]
UNIT_INPUTS = [("ln1", 0), ("res1", 0)]  # what the unit's input x feeds
UNIT_WIDTH = [
    ["ln1", "normalized_shape"],
    ["attn", "embed_dim"],
    ["ln2", "normalized_shape"],
    ["fc", "in_features"],
    ["proj", "out_features"],
]


def _link(a: tuple, b: tuple) -> dict:
    return {"from": list(a), "to": list(b)}


def unit_group() -> dict:
    """The attention + MLP unit as a group definition, exposing width and heads."""
    return {
        "title": "attention + MLP",
        "nodes": [{"id": i, "type": t, "params": dict(p)} for i, t, p in _UNIT],
        "links": [_link(a, b) for a, b in _UNIT_LINKS],
        "inputs": [{"name": "x", "to": [list(e) for e in UNIT_INPUTS]}],
        "outputs": [{"name": "y", "from": ["res2", 0]}],
        "params": [
            {"name": "width", "binds": UNIT_WIDTH},
            {"name": "heads", "binds": [["attn", "num_heads"]]},
        ],
    }


def _around(middle: list[dict], links: list[dict], first: list[tuple], last: tuple) -> dict:
    """tiny()'s data, embedding and positions, then ``middle`` (fed by pos into ``first``,
    giving ``last``), then tiny()'s final norm, head and loss."""
    spec = tiny(c=16, blocks=0)
    nodes = spec["nodes"]
    spec["nodes"] = nodes[:3] + middle + nodes[3:]
    spec["links"] = [lk for lk in spec["links"] if lk["to"] != ["ln", 0]]
    spec["links"] += [_link(("pos", 0), e) for e in first] + links + [_link(last, ("ln", 0))]
    return spec


def grouped_unit(repeat: int = 2, width: int = 16, heads: int = 2) -> dict:
    """tiny() whose blocks are the unit group, used once and repeated ``repeat`` times."""
    params = {"repeat": repeat, "width": width, "heads": heads}
    inst = {"id": "blocks", "type": "Group", "group": "unit", "title": "unit", "params": params}
    spec = _around([inst], [], [("blocks", 0)], ("blocks", 0))
    spec["groups"] = {"unit": unit_group()}
    return spec


def hand_written_unit(repeat: int = 2) -> dict:
    """The spec grouped_unit(repeat) stands for, written out node by node (no groups)."""
    nodes, links = [], []
    for k in range(repeat):
        name = lambda i, k=k: f"blocks_{k}_{i}"  # noqa: E731
        nodes += [{"id": name(i), "type": t, "params": dict(p)} for i, t, p in _UNIT]
        links += [_link((name(a), pa), (name(b), pb)) for (a, pa), (b, pb) in _UNIT_LINKS]
        if k:
            links += [_link((f"blocks_{k - 1}_res2", 0), (name(i), p)) for i, p in UNIT_INPUTS]
    first = [(f"blocks_0_{i}", p) for i, p in UNIT_INPUTS]
    return _around(nodes, links, first, (f"blocks_{repeat - 1}_res2", 0))
