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
