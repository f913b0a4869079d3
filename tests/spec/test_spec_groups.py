"""Groups: a block of nodes used as one node, repeated N times, with exposed parameters.
A grouped spec, its flattened form and the same spec written out by hand check, compile
and train identically; errors inside a group name the inner node and the group."""

import copy
import json
import random

import numpy as np
import pytest
from helpers.specs import DATA_DIR, gpt2_spec, grouped_unit, hand_written_unit, tiny, unit_group

from pyggml_train.checkpoint import load_checkpoint
from pyggml_train.recipes import train_spec
from pyggml_train.spec import (
    SpecError,
    as_gpt2,
    check_spec,
    flatten_spec,
    group_interface,
    parse_spec,
)
from pyggml_train.spec.groups import flatten


def structure(spec: dict) -> list:
    """What the compiler reads of a parsed spec: nodes in order, their params and inputs."""
    parsed = parse_spec(spec, DATA_DIR)
    return [(n.id, n.type, n.params, n.inputs) for n in parsed.nodes.values()]


def messages(spec: dict) -> list[str]:
    return [e["message"] for e in check_spec(spec, DATA_DIR)["errors"]]


def test_a_spec_without_groups_is_untouched():
    spec = tiny()
    assert flatten(spec).spec is spec
    result = check_spec(spec, DATA_DIR)
    assert result["ok"] and all("path" not in e for e in result["errors"])


@pytest.mark.parametrize("repeat", [1, 2, 3])
def test_grouped_flattened_and_hand_written_specs_are_the_same_graph(repeat):
    grouped, hand = grouped_unit(repeat), hand_written_unit(repeat)
    assert structure(grouped) == structure(hand)
    assert structure(flatten_spec(grouped)) == structure(hand)
    ours, theirs = check_spec(grouped, DATA_DIR), check_spec(hand, DATA_DIR)
    assert ours["ok"] and theirs["ok"]
    assert {k: v for k, v in ours["shapes"].items() if k in theirs["shapes"]} == theirs["shapes"]
    # the group node's output is its last copy's; inside, the first copy's shapes
    assert ours["shapes"]["blocks:0"] == theirs["shapes"][f"blocks_{repeat - 1}_res2:0"]
    assert ours["shapes"]["blocks/fc:0"] == [2, 8, 64]
    assert ours["shapes"]["blocks/res2:0"] == theirs["shapes"]["blocks_0_res2:0"]


def test_exposed_parameters_set_every_parameter_they_bind():
    spec = grouped_unit(repeat=2, width=24, heads=4)
    inner = [n for n in flatten_spec(spec)["nodes"] if n["id"].startswith("blocks_")]
    assert len(inner) == 16
    for n in inner:
        wide = {k: v for k, v in n["params"].items() if k in ("normalized_shape", "embed_dim")}
        assert all(v == 24 for v in wide.values()), n
        if n["type"] == "MultiheadAttention":
            assert n["params"]["num_heads"] == 4 and n["params"]["dropout"] == 0.1
        if n["type"] == "Linear":
            assert 24 in (n["params"]["in_features"], n["params"]["out_features"])
    # the group's width must now match the positions' 16: the first inner node says so
    err = check_spec(spec, DATA_DIR)["errors"][0]
    assert err == {
        "node": "blocks",
        "path": ["blocks", "ln1"],
        "message": 'LayerNorm "ln1" in group "unit" (copy 1 of 2): normalized_shape 24 '
        "but its input is 16 wide",
    }


@pytest.mark.slow
def test_grouped_flattened_and_hand_written_specs_train_bit_identically(tmp_path):
    fast = {"eval_interval": 2, "eval_steps": 1, "sample_interval": 0, "threads": 2}
    fast["max_steps"] = 4
    runs = {}
    for name, spec in [
        ("grouped", grouped_unit(2)),
        ("flat", flatten_spec(grouped_unit(2))),
        ("hand", hand_written_unit(2)),
    ]:
        runs[name] = train_spec(spec, tmp_path / name, DATA_DIR, overrides=fast, log=lambda _: 0)
    losses = {name: r.train_losses for name, r in runs.items()}
    assert losses["grouped"] == losses["flat"] == losses["hand"], losses
    assert len(losses["hand"]) == 4
    assert abs(losses["hand"][0] - np.log(65)) < 0.3  # a fresh model guesses near uniform
    weights = {name: load_checkpoint(r.checkpoint).params for name, r in runs.items()}
    assert list(weights["grouped"]) == list(weights["hand"])  # same names, same order
    for key, value in weights["hand"].items():
        assert np.array_equal(weights["grouped"][key], value), key
        assert np.array_equal(weights["flat"][key], value), key
    # the grouped run's checkpoint keeps the grouped spec
    assert load_checkpoint(runs["grouped"].checkpoint).spec == grouped_unit(2)


def test_interface_types_exposed_parameters_after_what_they_bind():
    face = group_interface({"unit": unit_group()}, "unit")
    assert face["inputs"] == [{"name": "x", "kind": "tensor"}]
    assert face["outputs"] == [{"name": "y", "kind": "tensor"}]
    names = [(p["name"], p["type"], p["default"], p.get("min")) for p in face["params"]]
    assert names == [("repeat", "int", 1, 1), ("width", "int", 16, 1), ("heads", "int", 2, 1)]


def test_a_cycle_inside_a_group_names_the_inner_nodes_and_the_group():
    spec = grouped_unit(repeat=1)
    unit = spec["groups"]["unit"]
    unit["links"] = [lk for lk in unit["links"] if lk["to"] != ["res1", 1]]
    unit["links"].append({"from": ["res2", 0], "to": ["res1", 1]})
    (err,) = check_spec(spec, DATA_DIR)["errors"]
    # the walk starts at the smallest id on a cycle ("act") and follows the smallest input
    assert err == {
        "node": "blocks",
        "path": ["blocks", "act"],
        "message": 'group "unit": its links form a cycle: Activation "act" -> Linear "proj" -> '
        'Add "res2" -> Add "res1" -> LayerNorm "ln2" -> Linear "fc" -> Activation "act"; '
        "data flows one way through a group: remove one of these links",
    }
    with pytest.raises(SpecError, match="its links form a cycle"):
        parse_spec(spec, DATA_DIR)


def test_a_cycle_through_a_group_names_its_inner_nodes():
    spec = grouped_unit(repeat=1)
    spec["nodes"][3]["group"] = "unit"
    spec["nodes"].insert(4, {"id": "mix", "type": "Add"})
    spec["links"] = [lk for lk in spec["links"] if lk["to"] != ["blocks", 0]]
    spec["links"] += [
        {"from": ["pos", 0], "to": ["mix", 0]},
        {"from": ["blocks", 0], "to": ["mix", 1]},
        {"from": ["mix", 0], "to": ["blocks", 0]},
    ]
    errors = check_spec(spec, DATA_DIR)["errors"]
    on_cycle = {tuple(e.get("path") or [e["node"]]) for e in errors if "cycle" in e["message"]}
    assert ("mix",) in on_cycle and ("blocks", "res2") in on_cycle
    inner = next(e for e in errors if e.get("path") == ["blocks", "res2"])
    assert inner["node"] == "blocks"
    assert inner["message"].startswith('Add "res2" in group "unit": is on a cycle: ')


def test_a_group_that_contains_itself_is_refused():
    spec = grouped_unit(repeat=1)
    outer = {
        "nodes": [{"id": "again", "type": "Group", "group": "outer"}],
        "inputs": [{"name": "x", "to": [["again", 0]]}],
        "outputs": [{"name": "y", "from": ["again", 0]}],
    }
    spec["groups"]["outer"] = outer
    spec["nodes"][3]["group"] = "outer"
    spec["nodes"][3]["params"] = {}
    (err,) = check_spec(spec, DATA_DIR)["errors"]
    assert err["node"] == "blocks"
    assert "group 'outer' contains itself (outer -> outer)" in err["message"], err


def test_groups_nest():
    spec = grouped_unit(repeat=1)
    spec["groups"]["two"] = {
        "nodes": [{"id": "u", "type": "Group", "group": "unit", "params": {"repeat": 2}}],
        "inputs": [{"name": "x", "to": [["u", 0]]}],
        "outputs": [{"name": "y", "from": ["u", 0]}],
        "params": [{"name": "w", "binds": [["u", "width"]]}],
    }
    spec["nodes"][3].update(group="two", params={"repeat": 1, "w": 16})
    result = check_spec(spec, DATA_DIR)
    assert result["ok"], result["errors"]
    assert result["shapes"]["blocks/u/attn:0"] == [2, 8, 16]
    ids = [n for n, *_ in structure(spec) if n.startswith("blocks")]
    assert ids[0] == "blocks_0_u_0_ln1" and ids[-1] == "blocks_0_u_1_res2" and len(ids) == 16
    # the same as the unit repeated twice, up to the ids
    plain = structure(grouped_unit(2))
    assert [t[1:3] for t in structure(spec)] == [t[1:3] for t in plain]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda s: s["nodes"][3].update(group="nope"),
            "unknown group 'nope'; this spec defines: unit",
        ),
        (
            lambda s: s["nodes"][3]["params"].update(depth=2),
            "unknown parameter(s) ['depth']; valid: repeat, width, heads",
        ),
        (lambda s: s["nodes"][3]["params"].update(repeat=0), "repeat must be in [1, 1000], got 0"),
        (
            lambda s: s["groups"]["unit"]["nodes"].append({"id": "d", "type": "TextDataset"}),
            'node "d" is a TextDataset, a data node; a group holds layers only',
        ),
        (
            lambda s: s["groups"]["unit"]["inputs"][0]["to"].append(["ghost", 0]),
            "input 'x' feeds ['ghost', 0] is not [inner node id, port index]",
        ),
        (
            lambda s: s["groups"]["unit"]["params"][0]["binds"].append(["fc", "eps"]),
            "parameter 'width' binds ['fc', 'eps'], which is no [inner id, parameter]",
        ),
        (
            lambda s: s["groups"]["unit"]["outputs"].append({"name": "z", "from": ["fc", 0]}),
            "repeat 2 feeds each copy's output i into the next copy's input i",
        ),
        (lambda s: s.update(groups=[]), "groups must be an object, got []"),
        (lambda s: s.update(nodes=3), "nodes must be a list of {id, type, params} objects"),
        (lambda s: s["nodes"][3].update(id="ln"), 'node "ln": duplicate id; every node needs'),
        (lambda s: s.update(links={}), "links must be a list of {from: [id, output], to"),
        (lambda s: s["nodes"][3].update(id="b" * 35), "is 42 characters, over the 40 allowed"),
    ],
)
def test_bad_groups_get_a_clear_error(change, expected):
    spec = copy.deepcopy(grouped_unit(repeat=2))
    change(spec)
    found = messages(spec)
    assert any(expected in m for m in found), found


def dicts(value) -> list[dict]:
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def test_random_corruptions_of_groups_never_raise():
    """Mutated groups and group nodes (values, types, ports, bindings) give errors, never
    exceptions, and every error of a group's inside carries its path."""
    rng = random.Random(0)
    junk = [None, -1, 0, 1, 2.5, "x", "", True, [], {}, [0], ["ln1", 0], ["ln1", 9], {"a": 1}]
    junk += ["unit", "Group", ["blocks", 0], [["ln1", 0]], [["fc", "eps"]]]
    for _ in range(600):
        data = grouped_unit(repeat=2)
        unit = data["groups"]["unit"]
        for _ in range(rng.randint(1, 3)):
            parts = [data["nodes"][3], unit, *dicts(unit.get("nodes"))]
            for key in ("inputs", "outputs", "params", "links"):
                parts += dicts(unit.get(key))
            where = rng.choice(parts)
            key = rng.choice([*where, "bogus", "group", "params", "type", "id"])
            where[key] = rng.choice(junk)
        result = check_spec(data, DATA_DIR)
        json.dumps(result)
        assert result["ok"] is (not result["errors"])
        for err in result["errors"]:
            if err.get("path"):
                assert err["node"] == err["path"][0]


def test_a_gpt2_whose_blocks_are_a_group_exports_as_gpt2():
    flat = gpt2_spec(c=16, blocks=3, heads=2, t=8)
    grouped = copy.deepcopy(flat)
    blocks = [n for n in grouped["nodes"] if n["type"] == "GPTBlock"]
    grouped["groups"] = {
        "block": {
            "nodes": [{"id": "b", "type": "GPTBlock", "params": blocks[0]["params"]}],
            "inputs": [{"name": "x", "to": [["b", 0]]}],
            "outputs": [{"name": "y", "from": ["b", 0]}],
        }
    }
    at = grouped["nodes"].index(blocks[0])
    grouped["nodes"] = [n for n in grouped["nodes"] if n["type"] != "GPTBlock"]
    grouped["nodes"].insert(
        at, {"id": "h", "type": "Group", "group": "block", "params": {"repeat": 3}}
    )
    grouped["links"] = [
        lk
        for lk in grouped["links"]
        if lk["from"][0] not in ("b0", "b1") and lk["to"][0] not in ("b1", "b2")
    ]
    for lk in grouped["links"]:
        lk["to"] = ["h", 0] if lk["to"] == ["b0", 0] else lk["to"]
        lk["from"] = ["h", 0] if lk["from"] == ["b2", 0] else lk["from"]
    config, names = as_gpt2(parse_spec(grouped, DATA_DIR))
    want_config, want_names = as_gpt2(parse_spec(flat, DATA_DIR))
    assert config == want_config and config.n_layer == 3
    assert sorted(names.values()) == sorted(want_names.values())
    assert names["h_2_b.mlp.c_fc.weight"] == "transformer.h.2.mlp.c_fc.weight"
