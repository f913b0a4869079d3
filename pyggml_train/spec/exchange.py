"""A GPT-2-shaped spec as GPT-2: its GPT2Config and its parameters under GPT-2's (HF)
names, so a spec's checkpoint exports and fine-tunes as a GPT-2."""

from __future__ import annotations

from ..config import GPT2Config
from .compiler import SpecNet
from .schema import Node, Spec, SpecError

_GPT2_SHAPE = (
    "data -> Embedding -> PositionalEncoding -> GPTBlock x N -> LayerNorm -> Linear -> Loss"
)


def as_gpt2(spec: Spec) -> tuple[GPT2Config, dict[str, str]]:
    """The GPT2Config of a GPT-2-shaped spec and its parameter names -> GPT-2's (HF) names.

    GPT-2-shaped: a chain data -> Embedding -> learned PositionalEncoding -> GPTBlock x N
    (dim_feedforward 4 C, GPT2Config has no MLP width) -> LayerNorm (eps 1e-5, the blocks')
    -> Linear tied to the embedding, no bias -> Loss. Such a spec computes GPT2's math with
    GPT2's parameters (tests/spec/test_spec_model.py), so its weights export as a GPT-2's.
    Raises SpecError naming the node that differs.
    """
    nodes = list(spec.nodes.values())
    layers = [n for n in nodes if n.type not in ("TextDataset", "Loss")]
    types = [n.type for n in layers]
    n_blocks = types.count("GPTBlock")
    expected = (
        ["Embedding", "PositionalEncoding"] + ["GPTBlock"] * n_blocks + ["LayerNorm", "Linear"]
    )
    if types != expected or not n_blocks:
        raise SpecError(
            None,
            f"the spec's layers are {' -> '.join(types)}; only GPT-2-shaped specs export "
            f"({_GPT2_SHAPE})",
        )
    emb, pos, *blocks, ln, head = layers

    def refuse(node: Node, why: str) -> SpecError:
        return node.error(f"{why}; only GPT-2-shaped specs export ({_GPT2_SHAPE})")

    for prev, node in zip([spec.nodes[spec.data], *layers], layers, strict=False):
        if node.inputs[0] != (prev.id, 0):
            raise refuse(node, f"its input is not {prev.label}'s output (a chain is expected)")
    if spec.nodes[spec.loss].inputs[0] != (head.id, 0):
        raise refuse(spec.nodes[spec.loss], f"its logits do not come from {head.label}")
    c, vocab = emb.params["embedding_dim"], emb.params["num_embeddings"]
    if spec.vocab_size is not None and vocab != spec.vocab_size:
        raise refuse(emb, f"{vocab} rows but the tokenizer has {spec.vocab_size} tokens")
    if pos.params["kind"] != "learned":
        raise refuse(pos, f"kind {pos.params['kind']!r}, GPT-2's positions are 'learned'")
    heads = blocks[0].params["nhead"]
    for b in blocks:
        if b.params["nhead"] != heads:
            raise refuse(b, f"nhead {b.params['nhead']} but the first block has {heads}")
        if b.params["dim_feedforward"] != 4 * c:
            raise refuse(
                b, f"dim_feedforward {b.params['dim_feedforward']}, GPT-2's is 4 C = {4 * c}"
            )
    if ln.params["eps"] != GPT2Config.ln_eps:
        raise refuse(ln, f"eps {ln.params['eps']}, GPT-2's is {GPT2Config.ln_eps}")
    if head.params["tie_weights"] != emb.id:
        raise refuse(head, "not tied to the embedding")
    if head.params["bias"]:
        raise refuse(head, "has a bias, GPT-2's LM head has none")
    config = GPT2Config(
        vocab_size=vocab, block_size=pos.params["max_len"], n_layer=n_blocks, n_head=heads, n_embd=c
    )
    prefixes = {emb.id: "wte", pos.id: "wpe", ln.id: "ln_f"}
    prefixes.update({b.id: f"h.{i}" for i, b in enumerate(blocks)})
    names = {}
    for p in SpecNet(spec).params():
        nid, rest = p.name.split(".", 1)
        names[p.name] = f"transformer.{prefixes[nid]}.{rest}"
    return config, names
