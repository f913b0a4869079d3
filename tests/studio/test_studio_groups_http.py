"""Groups over the studio's HTTP API: a grouped spec checks with errors on its inner nodes,
flattens, describes its groups' ports and parameters, and group templates save, list, load
and delete in the data directory; broken groups and bad names get a 4xx."""

from __future__ import annotations

import copy
import json

import pytest
from helpers.specs import grouped_unit, hand_written_unit, unit_group
from helpers.studio_server import studio_client

from pyggml_train.spec import flatten_spec, group_interface


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    with studio_client(tmp_path_factory.mktemp("studio")) as client:
        yield client


def cyclic_unit() -> dict:
    """The unit with res2 fed back into res1: a cycle among the group's own links."""
    unit = unit_group()
    unit["links"] = [lk for lk in unit["links"] if lk["to"] != ["res1", 1]]
    unit["links"].append({"from": ["res2", 0], "to": ["res1", 1]})
    return unit


def test_check_of_a_grouped_spec_shows_the_group_and_its_inside(studio):
    result = studio.post("/api/check", json=grouped_unit(3)).json()
    hand = studio.post("/api/check", json=hand_written_unit(3)).json()
    assert result["ok"] and hand["ok"]
    assert result["shapes"]["blocks:0"] == hand["shapes"]["blocks_2_res2:0"] == [2, 8, 16]
    assert result["shapes"]["blocks/fc:0"] == hand["shapes"]["blocks_0_fc:0"] == [2, 8, 64]
    bad = grouped_unit(2, heads=3)
    errors = studio.post("/api/check", json=bad).json()["errors"]
    assert errors[0]["node"] == "blocks" and errors[0]["path"] == ["blocks", "attn"]
    assert errors[0]["message"].startswith('MultiheadAttention "attn" in group "unit" (copy 1')


def test_flatten_gives_the_spec_without_groups(studio):
    r = studio.post("/api/flatten", json=grouped_unit(2))
    assert r.status_code == 200
    assert r.json() == flatten_spec(grouped_unit(2))
    assert [n["id"] for n in r.json()["nodes"]] == [n["id"] for n in hand_written_unit(2)["nodes"]]
    looped = grouped_unit(1)
    looped["groups"]["unit"] = cyclic_unit()
    r = studio.post("/api/flatten", json=looped)
    assert r.status_code == 422
    assert "its links form a cycle" in r.json()["error"]
    assert r.json()["errors"][0]["path"] == ["blocks", "act"]


def test_flatten_only_one_group_node_keeps_the_others(studio):
    spec = grouped_unit(2)
    spec["nodes"].insert(4, {"id": "more", "type": "Group", "group": "unit", "title": "more"})
    spec["links"] = [lk for lk in spec["links"] if lk["to"] != ["ln", 0]]
    spec["links"] += [
        {"from": ["blocks", 0], "to": ["more", 0]},
        {"from": ["more", 0], "to": ["ln", 0]},
    ]
    r = studio.post("/api/flatten?only=blocks", json=spec)
    assert r.status_code == 200, r.text
    once = r.json()
    ids = [n["id"] for n in once["nodes"]]
    assert ids[3:20] == [n["id"] for n in hand_written_unit(2)["nodes"][3:19]] + ["more"]
    assert once["groups"] == spec["groups"]
    assert {"from": ["blocks_1_res2", 0], "to": ["more", 0]} in once["links"]
    # the same model as before: flattening the rest gives what flattening all gives
    rest, whole = flatten_spec(once), flatten_spec(spec)
    assert rest["nodes"] == whole["nodes"]
    link = lambda lk: (*lk["from"], *lk["to"])  # noqa: E731
    assert sorted(map(link, rest["links"])) == sorted(map(link, whole["links"]))
    r = studio.post("/api/flatten?only=ln", json=spec)
    assert r.status_code == 422 and "no group node 'ln' at the top level" in r.json()["error"]


def test_groups_answers_each_definitions_interface_or_its_errors(studio):
    groups = {"unit": unit_group(), "looped": cyclic_unit()}
    body = studio.post("/api/groups", json={"groups": groups}).json()
    assert body["interfaces"] == {"unit": group_interface(groups, "unit")}
    (err,) = body["errors"]
    assert err["group"] == "looped" and "its links form a cycle" in err["message"]
    assert studio.post("/api/groups", json={"groups": [1]}).status_code == 400


def test_templates_save_list_load_delete(studio):
    groups = {"unit": unit_group(), "unused": unit_group()}
    r = studio.put("/api/templates/unit", json={"groups": groups})
    assert r.status_code == 200, r.text
    saved = json.loads((studio.root / "templates" / "unit.json").read_text())
    assert saved == {"name": "unit", "groups": {"unit": unit_group()}}  # only what it uses
    listed = studio.get("/api/templates").json()
    assert [t["name"] for t in listed] == ["unit"]
    assert listed[0]["title"] == "attention + MLP"
    assert listed[0]["interface"] == group_interface(groups, "unit")
    assert studio.get("/api/templates/unit").json() == listed[0]
    assert studio.delete("/api/templates/unit").status_code == 200
    assert studio.get("/api/templates/unit").status_code == 404
    assert studio.get("/api/templates").json() == []


def test_a_template_of_a_group_using_a_group_carries_both(studio):
    two = {
        "nodes": [{"id": "u", "type": "Group", "group": "unit", "params": {"repeat": 2}}],
        "inputs": [{"name": "x", "to": [["u", 0]]}],
        "outputs": [{"name": "y", "from": ["u", 0]}],
    }
    r = studio.put("/api/templates/two", json={"groups": {"two": two, "unit": unit_group()}})
    assert r.status_code == 200, r.text
    assert set(r.json()["groups"]) == {"two", "unit"}
    assert studio.delete("/api/templates/two").status_code == 200


@pytest.mark.parametrize(
    ("name", "groups", "status", "says"),
    [
        ("looped", {"looped": cyclic_unit()}, 422, 'its links form a cycle: Activation "act"'),
        (
            "self",
            {"self": {"nodes": [{"id": "me", "type": "Group", "group": "self"}]}},
            422,
            "contains itself (self -> self)",
        ),
        ("unit", {"other": unit_group()}, 400, "holding the group 'unit'"),
        (
            "data",
            {"data": {**unit_group(), "nodes": [{"id": "d", "type": "TextDataset"}]}},
            422,
            "a group holds layers only",
        ),
        ("has space", {"has space": unit_group()}, 422, "a group's name is 1 to 40 letters"),
    ],
)
def test_a_broken_template_is_refused_and_nothing_is_written(studio, name, groups, status, says):
    r = studio.put(f"/api/templates/{name}", json={"groups": copy.deepcopy(groups)})
    assert r.status_code == status, r.text
    assert says in r.json()["error"], r.json()
    assert list((studio.root / "templates").iterdir()) == []


@pytest.mark.parametrize("name", ["../escape", "..", ".hidden", "a/b", "..%2F..%2Fspecs%2Fx"])
def test_template_names_never_leave_the_data_dir(studio, name):
    before = sorted(p.relative_to(studio.root) for p in studio.root.rglob("*"))
    r = studio.put(f"/api/templates/{name}", json={"groups": {name: unit_group()}})
    assert r.status_code in (400, 404), (name, r.status_code, r.text)
    assert studio.get(f"/api/templates/{name}").status_code in (400, 404)
    assert studio.delete(f"/api/templates/{name}").status_code in (400, 404)
    assert sorted(p.relative_to(studio.root) for p in studio.root.rglob("*")) == before


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/api/templates/unit", b"{not json"),
        ("PUT", "/api/templates/unit", b"[1, 2]"),
        ("POST", "/api/flatten", b"{not json"),
        ("POST", "/api/groups", b'"groups"'),
    ],
)
def test_malformed_bodies_are_a_4xx_and_the_server_keeps_serving(studio, method, path, body):
    r = studio.request(method, path, content=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]
    assert studio.get("/api/templates").status_code == 200


def test_a_template_file_broken_by_hand_is_listed_with_its_problem(studio):
    (studio.root / "templates" / "junk.json").write_text("{oops")
    try:
        (entry,) = studio.get("/api/templates").json()
        assert entry["name"] == "junk" and "template junk.json is not usable" in entry["error"]
    finally:
        (studio.root / "templates" / "junk.json").unlink()


def test_a_run_of_a_spec_with_a_broken_group_is_refused(studio):
    spec = grouped_unit(1)
    spec["groups"]["unit"] = cyclic_unit()
    r = studio.post("/api/runs", json=spec)
    assert r.status_code == 422
    assert r.json()["errors"][0]["node"] == "blocks"
    assert studio.get("/api/runs").json() == []
