"""The model spec: node type declarations, parsing, shape inference and every error kind."""

import copy
import json
import random

import pytest
from helpers.env import REPO_ROOT
from helpers.specs import DATA_DIR, insert_encoder, node, tiny

from pyggml_train.spec import NODE_TYPES, SpecError, check_spec, node_types_json, parse_spec

EXAMPLES = REPO_ROOT / "examples" / "specs"


def errors(spec) -> list[dict]:
    result = check_spec(spec, DATA_DIR)
    assert result["ok"] is (not result["errors"])
    json.dumps(result)  # the studio sends it as is
    return result["errors"]


def messages(spec) -> list[str]:
    return [e["message"] for e in errors(spec)]


def corpus_vocab(name: str) -> int:
    return len(set((DATA_DIR / name).read_text(encoding="utf-8")))


# ---- declarations --------------------------------------------------------------------------
def test_node_types_cover_the_issue_and_serialise():
    expected = {
        "TextDataset",
        "Embedding",
        "PositionalEncoding",
        "GPTBlock",
        "TransformerEncoderLayer",
        "MultiheadAttention",
        "LayerNorm",
        "Linear",
        "Activation",
        "Dropout",
        "Add",
        "Loss",
        "RMSNorm",  # the Llama nodes (issue 23)
        "RotaryAttention",
        "SwiGLU",
        "LlamaBlock",
    }
    assert set(NODE_TYPES) == expected
    declared = json.loads(json.dumps(node_types_json()))
    assert set(declared["types"]) == expected
    for name, t in declared["types"].items():
        assert t["category"] in ("data", "layer", "loss") and t["doc"]
        for port in t["inputs"] + t["outputs"]:
            assert port["kind"] in declared["port_kinds"]
        for p in t["params"]:
            assert p["type"] in ("int", "float", "bool", "str", "choice") and p["doc"], (name, p)
            assert NODE_TYPES[name].param(p["name"]).check(p["default"]) == p["default"]
            if p["type"] == "choice":
                assert p["default"] in p["choices"]
    loss = declared["types"]["Loss"]["params"]
    assert {p["name"]: p.get("choices") for p in loss}["optimizer"] == ["adamw", "adam", "sgd"]


def test_param_checks_normalise_and_reject():
    width = NODE_TYPES["GPTBlock"].param("d_model")
    assert width.check(128.0) == 128 and isinstance(width.check(128.0), int)
    for bad in (0, -3, 1.5, "128", True, None, float("nan")):
        with pytest.raises(ValueError, match="d_model"):
            width.check(bad)
    p = NODE_TYPES["Dropout"].param("p")
    assert p.check(0) == 0.0 and p.check(0.5) == 0.5
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        p.check(1.0)


# ---- examples and inference ----------------------------------------------------------------
@pytest.mark.parametrize(
    "name, c, blocks, heads, ff, vocab",
    [
        ("small-gpt", 128, 3, 4, 512, 65),
        ("medium-gpt", 256, 6, 8, 1024, 65),
        ("large-gpt", 512, 12, 8, 2048, 50257),
        ("gpt2-124m", 768, 12, 12, 3072, 50257),
    ],
)
def test_examples_check_and_have_the_issue_sizes(name, c, blocks, heads, ff, vocab):
    data = json.loads((EXAMPLES / f"{name}.json").read_text())
    result = check_spec(data, DATA_DIR)
    assert result["ok"], result["errors"]
    spec = parse_spec(data, DATA_DIR)
    gpt_blocks = [n for n in spec.nodes.values() if n.type == "GPTBlock"]
    assert len(gpt_blocks) == blocks
    assert {
        (n.params["d_model"], n.params["nhead"], n.params["dim_feedforward"]) for n in gpt_blocks
    } == {(c, heads, ff)}
    d = spec.nodes[spec.data].params
    b, t = d["batch_size"], d["block_size"]
    assert result["shapes"]["data:0"] == [b, t]
    assert result["shapes"]["wte:0"] == [b, t, c]
    assert result["shapes"]["lm_head:0"] == [b, t, vocab]
    expected_vocab = corpus_vocab("tinyshakespeare.txt") if d["tokenizer"] == "char" else 50257
    assert spec.vocab_size == expected_vocab
    if name == "small-gpt":
        assert spec.nodes[spec.loss].params["lr"] == 1e-3


def test_shapes_of_every_link_and_topological_order():
    data = tiny(c=16, blocks=2)
    data["nodes"].reverse()  # order in the file does not matter
    result = check_spec(data, DATA_DIR)
    assert result["ok"], result["errors"]
    assert result["shapes"] == {
        "data:0": [2, 8],
        "data:1": [2, 8],
        "emb:0": [2, 8, 16],
        "pos:0": [2, 8, 16],
        "b0:0": [2, 8, 16],
        "b1:0": [2, 8, 16],
        "ln:0": [2, 8, 16],
        "head:0": [2, 8, 65],
    }
    spec = parse_spec(data, DATA_DIR)
    order = list(spec.nodes)
    for n in spec.nodes.values():
        for src in n.inputs:
            assert order.index(src[0]) < order.index(n.id)
    assert spec.data == "data" and spec.loss == "loss"
    assert spec.nodes["emb"].params["embedding_dim"] == 16
    assert spec.nodes["pos"].params["kind"] == "learned"  # default filled in


def test_char_vocab_follows_the_corpus():
    data = tiny(vocab=100)
    node(data, "data")["params"]["source"] = "the-verdict"
    spec = parse_spec(data, DATA_DIR)
    assert spec.vocab_size == corpus_vocab("the-verdict.txt")
    node(data, "data")["params"]["tokenizer"] = "gpt2"
    assert errors(data)[0]["node"] == "emb"  # 100 < 50257


# ---- every error kind ----------------------------------------------------------------------
def test_width_mismatch_names_node_and_both_widths():
    data = tiny(c=128, blocks=3)
    node(data, "b2")["params"]["d_model"] = 256
    errs = errors(data)
    assert errs[0] == {
        "node": "b2",
        "message": 'GPTBlock "block 2": d_model 256 but its input is 128 wide',
    }
    # the error stops inference downstream of block 2 only; upstream shapes are still given
    shapes = check_spec(data, DATA_DIR)["shapes"]
    assert shapes["b1:0"] == [2, 8, 128] and "b2:0" not in shapes and "ln:0" not in shapes


@pytest.mark.parametrize(
    "nid, param, value, message",
    [
        (
            "ln",
            "normalized_shape",
            32,
            'LayerNorm "ln": normalized_shape 32 but its input is 16 wide',
        ),
        ("head", "in_features", 8, 'Linear "head": in_features 8 but its input is 16 wide'),
        ("b0", "nhead", 3, 'GPTBlock "block 0": d_model 16 is not divisible by nhead 3'),
        (
            "emb",
            "num_embeddings",
            50,
            'Embedding "emb": num_embeddings 50 but the tokenizer of '
            'TextDataset "data" has 65 tokens',
        ),
        (
            "head",
            "out_features",
            60,
            'Loss "loss": its logits are 60 wide but the tokenizer of '
            'TextDataset "data" has 65 tokens',
        ),
        ("pos", "max_len", 4, 'PositionalEncoding "pos": max_len 4 but its input has 8 positions'),
    ],
)
def test_shape_errors(nid, param, value, message):
    data = tiny()
    node(data, nid)["params"][param] = value
    errs = errors(data)
    assert len(errs) == 1 and errs[0]["message"].startswith(message), errs
    assert errs[0]["node"] == ("loss" if message.startswith("Loss") else nid)


def test_tied_weights_must_match_an_embedding():
    data = tiny()
    node(data, "head")["params"].update(tie_weights="emb", bias=False)
    assert errors(data) == []
    node(data, "head")["params"]["tie_weights"] = "ln"
    assert "not an Embedding node" in messages(data)[0]
    node(data, "head")["params"]["tie_weights"] = "emb"
    node(data, "emb")["params"]["num_embeddings"] = 70
    node(data, "head")["params"]["out_features"] = 65
    assert messages(data) == [
        'Linear "head": (out_features, in_features) (65, 16) but the tied Embedding "emb" '
        "weight is (num_embeddings, embedding_dim) (70, 16)"
    ]


def test_add_needs_equal_shapes_and_mha_chain_checks():
    data = tiny(blocks=0)
    data["nodes"] += [
        {"id": "attn", "type": "MultiheadAttention", "params": {"embed_dim": 16, "num_heads": 4}},
        {"id": "res", "type": "Add"},
        {"id": "act", "type": "Activation", "params": {"function": "relu"}},
    ]
    data["links"] = [lk for lk in data["links"] if lk["from"] != ["pos", 0]]
    data["links"] += [
        {"from": ["pos", 0], "to": ["attn", 0]},
        {"from": ["pos", 0], "to": ["res", 0]},
        {"from": ["attn", 0], "to": ["res", 1]},
        {"from": ["res", 0], "to": ["act", 0]},
        {"from": ["act", 0], "to": ["ln", 0]},
    ]
    assert errors(data) == []
    assert check_spec(data, DATA_DIR)["shapes"]["res:0"] == [2, 8, 16]
    # a (B, T, V) tensor added to a (B, T, C) one
    data["links"][-4] = {"from": ["head", 0], "to": ["res", 1]}
    data["links"].append({"from": ["attn", 0], "to": ["loss", 0]})
    errs = errors(data)
    assert any("is on a cycle" in e["message"] for e in errs), errs


def test_add_shape_mismatch():
    data = tiny(blocks=0)
    data["nodes"] += [
        {"id": "up", "type": "Linear", "params": {"in_features": 16, "out_features": 32}},
        {"id": "res", "type": "Add"},
    ]
    data["links"] = [lk for lk in data["links"] if lk["from"] != ["pos", 0]]
    data["links"] += [
        {"from": ["pos", 0], "to": ["up", 0]},
        {"from": ["pos", 0], "to": ["res", 0]},
        {"from": ["up", 0], "to": ["res", 1]},
        {"from": ["res", 0], "to": ["ln", 0]},
    ]
    assert messages(data) == ['Add "res": input a is [2, 8, 16] but input b is [2, 8, 32]']


def test_cycle_is_an_error_on_each_node_of_it():
    data = tiny(blocks=2)
    data["links"] = [lk for lk in data["links"] if lk["to"] != ["b0", 0]]
    data["links"].append({"from": ["b1", 0], "to": ["b0", 0]})  # b0 -> b1 -> b0
    errs = errors(data)
    cyc = [e for e in errs if "cycle" in e["message"]]
    assert {e["node"] for e in cyc} == {"b0", "b1"}
    assert 'GPTBlock "block 0" -> GPTBlock "block 1" -> GPTBlock "block 0"' in cyc[0][
        "message"
    ] or ('GPTBlock "block 1" -> GPTBlock "block 0" -> GPTBlock "block 1"' in cyc[0]["message"])
    # pos now goes nowhere: said too
    assert {
        "node": "pos",
        "message": 'PositionalEncoding "pos": its output goes nowhere; connect it or delete it',
    } in errs


def test_self_loop_is_a_cycle():
    data = tiny(blocks=1)
    data["links"] = [lk for lk in data["links"] if lk["to"] != ["b0", 0]]
    data["links"].append({"from": ["b0", 0], "to": ["b0", 0]})
    assert any(e["node"] == "b0" and "cycle" in e["message"] for e in errors(data))


def test_dangling_input_and_unused_output():
    data = tiny()
    data["links"] = [lk for lk in data["links"] if lk["to"] != ["ln", 0]]
    errs = errors(data)
    assert {"node": "ln", "message": 'LayerNorm "ln": input 0 (x) is not connected'} in errs
    assert {
        "node": "b1",
        "message": 'GPTBlock "block 1": its output goes nowhere; connect it or delete it',
    } in errs


def test_unknown_type_param_and_keys():
    data = tiny()
    data["nodes"].append({"id": "x", "type": "Conv2d"})
    node(data, "ln")["params"]["epsilon"] = 1e-5
    node(data, "ln")["colour"] = "red"
    data["extra"] = 1
    msgs = messages(data)
    assert any(
        m.startswith("node \"x\": unknown node type 'Conv2d'; known types: TextDataset")
        for m in msgs
    )
    assert "LayerNorm \"ln\": unknown parameter 'epsilon'; valid: normalized_shape, eps" in msgs
    assert any("unknown key(s) ['colour']" in m for m in msgs)
    assert any("unknown top-level key(s) ['extra']" in m for m in msgs)


@pytest.mark.parametrize(
    "nid, param, value, fragment",
    [
        ("b0", "d_model", -1, "d_model must be in [1, 65536], got -1"),
        ("b0", "dim_feedforward", "big", "dim_feedforward must be a number, got 'big'"),
        ("emb", "embedding_dim", 2.5, "embedding_dim must be an integer, got 2.5"),
        ("loss", "optimizer", "lbfgs", "optimizer must be one of adamw, adam, sgd, got 'lbfgs'"),
        ("loss", "lr", 0, "lr must be in [1e-09, 10], got 0.0"),
        ("head", "bias", 1, "bias must be true or false, got 1"),
        ("data", "tokenizer", "bpe", "tokenizer must be one of char, gpt2, got 'bpe'"),
        ("data", "batch_size", 0, "batch_size must be in [1, 65536], got 0"),
        ("pos", "dropout", 1.0, "dropout must be in [0, 1), got 1.0"),
    ],
)
def test_bad_values(nid, param, value, fragment):
    data = tiny()
    node(data, nid)["params"][param] = value
    errs = errors(data)
    assert errs[0]["node"] == nid and fragment in errs[0]["message"], errs


def test_loss_schedule_values():
    data = tiny()
    node(data, "loss")["params"].update(lr=1e-4, min_lr=1e-3)
    assert messages(data) == ['Loss "loss": min_lr 0.001 exceeds lr 0.0001; lower min_lr']
    node(data, "loss")["params"].update(lr=1e-3, warmup_steps=20)
    assert messages(data) == ['Loss "loss": warmup_steps 20 exceeds steps 10']


def test_dropout_is_accepted_on_every_layer_that_has_it():
    data = tiny()
    node(data, "pos")["params"]["dropout"] = 0.1
    node(data, "b1")["params"]["dropout"] = 0.2
    assert errors(data) == []
    data = tiny(blocks=0)
    insert_encoder(data, after="pos", dropout=0.1)
    assert errors(data) == []


def test_link_errors():
    data = tiny()
    data["links"] += [
        {"from": ["nowhere", 0], "to": ["ln", 0]},
        {"from": ["b0", 3], "to": ["ln", 0]},
        {"from": ["data", 1], "to": ["emb", 0]},  # targets into an Embedding
        {"from": ["b0", 0], "to": ["ln", 0]},  # ln already has an input
        {"from": "b0", "to": ["ln", 0]},
        "b0->ln",
    ]
    msgs = messages(data)
    assert "link #8: from names node 'nowhere', which does not exist" in msgs
    assert 'GPTBlock "block 0": has no output 3; its outputs: 0 (y)' in msgs
    assert (
        'Embedding "emb": input 0 (ids) takes token ids (B, T), int but TextDataset "data" '
        "output 1 (targets) gives next-token ids (B, T), int" in msgs
    )
    assert any("is linked twice" in m for m in msgs)
    assert "link #12: 'from' must be [node_id, port_index], got 'b0'" in msgs
    assert any(m.startswith("link #13: a link is an object") for m in msgs)


def test_roles_version_and_structure():
    data = tiny()
    data["nodes"] = [n for n in data["nodes"] if n["id"] != "loss"]
    data["links"] = [lk for lk in data["links"] if lk["to"][0] != "loss"]
    assert "the spec has no Loss node; add one" in messages(data)
    data = tiny()
    data["nodes"].append({"id": "data2", "type": "TextDataset"})
    assert any(
        e["node"] == "data2" and "one TextDataset node" in e["message"] for e in errors(data)
    )
    data = tiny()
    data["version"] = 2
    assert messages(data) == ["version must be 1, got 2"]
    data["nodes"].append(dict(node(data, "ln")))
    assert any("duplicate id" in m for m in messages(data))
    for bad in (None, [], "spec", {"version": 1}, {"version": 1, "nodes": {}, "links": []}):
        result = check_spec(bad)
        assert not result["ok"] and result["errors"][0]["node"] is None


def test_missing_corpus_is_an_error_on_the_data_node(tmp_path, monkeypatch):
    data = tiny()
    node(data, "data")["params"]["source"] = "the-verdict"
    (tmp_path / "the-verdict.txt").write_text("not the verdict")  # the data dir is searched first
    errs = check_spec(data, tmp_path)["errors"]
    assert (
        errs[0]["node"] == "data" and "is not The Verdict (Edith Wharton)'s" in errs[0]["message"]
    )
    (tmp_path / "the-verdict.txt").unlink()
    monkeypatch.delenv("PYGGML_DATASETS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    # a named dataset not at hand yet: fetched when training starts; its vocabulary unknown
    assert check_spec(data, tmp_path)["errors"] == []
    assert parse_spec(data, tmp_path).vocab_size is None
    node(data, "data")["params"].update(source="file", path="missing.txt")
    errs = check_spec(data, tmp_path)["errors"]
    assert errs[0]["node"] == "data" and "path 'missing.txt' is not a file" in errs[0]["message"]
    (tmp_path / "mine.txt").write_text("abcabc" * 20)
    node(data, "data")["params"]["path"] = "mine.txt"
    errs = check_spec(data, tmp_path)["errors"]  # 3 characters, vocab 65 tables are fine
    assert errs == []
    assert parse_spec(data, tmp_path).vocab_size == 3


def test_parse_spec_raises_the_first_error_with_all_of_them():
    data = tiny()
    node(data, "b0")["params"]["d_model"] = 32
    node(data, "ln")["params"]["eps"] = -1.0
    with pytest.raises(SpecError) as info:
        parse_spec(data, DATA_DIR)
    assert info.value.node in ("b0", "ln")
    assert {e["node"] for e in info.value.errors} == {"b0", "ln"}


def dicts(value) -> list[dict]:
    """The objects of a list that is still a list of objects after earlier mutations."""
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def test_random_corruptions_never_raise():
    """Mutated specs (values, types, links, keys) give errors, never exceptions."""
    rng = random.Random(0)
    junk = [None, -1, 0, 1, 2.5, 1e30, "x", "", True, [], {}, [0], ["b0", 0], ["b0", -1], {"a": 1}]
    base = tiny()
    for _ in range(1000):
        data = copy.deepcopy(base)
        for _ in range(rng.randint(1, 3)):
            nodes, links = dicts(data.get("nodes")), dicts(data.get("links"))
            kind = rng.randrange(4)
            if kind == 0 and nodes and isinstance(params := rng.choice(nodes).get("params"), dict):
                params[rng.choice([*params, "bogus"])] = rng.choice(junk)
            elif kind == 1 and links:
                rng.choice(links)[rng.choice(["from", "to"])] = rng.choice(junk)
            elif kind == 2 and nodes:
                n = rng.choice(nodes)
                n[rng.choice(["id", "type", "params", "title", "ui"])] = rng.choice(junk)
            elif kind == 3:
                data[rng.choice(["nodes", "links", "version", "name"])] = rng.choice(junk)
        result = check_spec(data, DATA_DIR)
        json.dumps(result)
        assert result["ok"] is (not result["errors"])


@pytest.mark.parametrize("bad", ["a.b", "x" * 41, "", "sp ace", 7])
def test_node_ids_must_fit_parameter_names(bad):
    data = tiny()
    node(data, "ln")["id"] = bad
    errs = errors(data)
    assert any("id must be 1 to 40 letters, digits, '_' or '-'" in e["message"] for e in errs)
