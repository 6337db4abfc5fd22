"""Merge through the admin command: three-way per document, strategies, conflicts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from ..processes import Process
from ..stacks import argon, own_stack

Client = MongoClient[dict[str, Any]]


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Process, Process]]:
    with own_stack() as pair:
        yield pair


@pytest.fixture
def c(stack: tuple[Process, Process]) -> Iterator[Client]:
    client: Client = MongoClient(stack[1].uri)
    yield client
    client.close()


def docs(c: Client, db: str, coll: str = "items") -> list[dict[str, Any]]:
    return list(c[db][coll].find({}, sort=[("_id", 1)]))


def fresh(c: Client, db: str, branch: str, rows: list[dict[str, Any]]) -> None:
    """``db.items`` holds ``rows`` on main and ``branch`` is created from it."""
    c[db].items.insert_many(rows)
    argon(c, "createBranch", name=branch, **{"from": "main"})


def test_clean_merge_applies_inserts_updates_deletes(c: Client) -> None:
    fresh(c, "m1", "feat", [{"_id": i, "v": i} for i in range(5)])
    b = c["m1@feat"].items
    b.update_one({"_id": 1}, {"$set": {"v": 10}})
    b.delete_one({"_id": 2})
    b.insert_one({"_id": 9, "v": 9})
    out = argon(c, "merge", source="feat", into="main")["merge"]
    assert out["status"] == "applied"
    assert out["fast_forward"] is True
    assert out["counts"] == {"inserted": 1, "updated": 1, "deleted": 1, "conflicts": 0}
    assert docs(c, "m1") == [
        {"_id": 0, "v": 0},
        {"_id": 1, "v": 10},
        {"_id": 3, "v": 3},
        {"_id": 4, "v": 4},
        {"_id": 9, "v": 9},
    ]
    log = argon(c, "log", branch="main", db="m1", collection="items")["entries"]
    assert {e["merge"] for e in log[:3]} == {out["id"]}
    again = argon(c, "merge", source="feat", into="main")["merge"]
    assert again["status"] == "up-to-date"


def test_field_level_merge_of_different_paths(c: Client) -> None:
    fresh(c, "m2", "m2f", [{"_id": 1, "a": {"b": 1, "c": 1}, "x": 1, "y": 1}])
    c["m2@m2f"].items.update_one({"_id": 1}, {"$set": {"a.b": 2, "x": 2}})
    c.m2.items.update_one({"_id": 1}, {"$set": {"a.c": 3, "y": 3}})
    out = argon(c, "merge", source="m2f", into="main")["merge"]
    assert out["fast_forward"] is False
    assert out["counts"]["conflicts"] == 0
    assert docs(c, "m2") == [{"_id": 1, "a": {"b": 2, "c": 3}, "x": 2, "y": 3}]


def test_same_path_conflicts_and_fail_applies_nothing(c: Client) -> None:
    fresh(c, "m3", "m3f", [{"_id": 1, "v": 1, "w": 1}, {"_id": 2, "v": 1}])
    c["m3@m3f"].items.update_one({"_id": 1}, {"$set": {"v": 2}})
    c["m3@m3f"].items.update_one({"_id": 2}, {"$set": {"v": 5}})
    c.m3.items.update_one({"_id": 1}, {"$set": {"v": 3}})
    with pytest.raises(OperationFailure) as err:
        argon(c, "merge", source="m3f", into="main")
    assert err.value.code == 2010
    info = err.value.details["errInfo"]["merge"]  # type: ignore[index]
    assert info["status"] == "conflicts"
    [conflict] = info["conflicts"]
    assert (conflict["docId"], conflict["kind"], conflict["paths"]) == (1, "both-changed", ["v"])
    assert (conflict["base"]["v"], conflict["ours"]["v"], conflict["theirs"]["v"]) == (1, 3, 2)
    assert docs(c, "m3") == [{"_id": 1, "v": 3, "w": 1}, {"_id": 2, "v": 1}]  # nothing applied

    # Resolve and complete the same merge.
    argon(c, "resolveConflict", id=info["id"], ns="m3.items", docId=1, take="theirs")
    done = argon(c, "applyMerge", id=info["id"])["merge"]
    assert done["status"] == "applied"
    assert docs(c, "m3") == [{"_id": 1, "v": 2, "w": 1}, {"_id": 2, "v": 5}]


@pytest.mark.parametrize("strategy,expected", [("ours", 3), ("theirs", 2)])
def test_strategies_resolve_conflicts(c: Client, strategy: str, expected: int) -> None:
    db = f"m4{strategy}"
    fresh(c, db, db + "f", [{"_id": 1, "v": 1, "w": 1}])
    c[f"{db}@{db}f"].items.update_one({"_id": 1}, {"$set": {"v": 2, "w": 2}})
    c[db].items.update_one({"_id": 1}, {"$set": {"v": 3}})
    out = argon(c, "merge", source=db + "f", into="main", strategy=strategy)["merge"]
    assert out["counts"]["conflicts"] == 1
    assert docs(c, db) == [{"_id": 1, "v": expected, "w": 2}]  # w merged either way


def test_update_delete_and_both_insert_conflict(c: Client) -> None:
    fresh(c, "m5", "m5f", [{"_id": 1, "v": 1}, {"_id": 2, "v": 1}])
    c["m5@m5f"].items.update_one({"_id": 1}, {"$set": {"v": 2}})
    c.m5.items.delete_one({"_id": 1})
    c["m5@m5f"].items.delete_one({"_id": 2})
    c.m5.items.update_one({"_id": 2}, {"$set": {"v": 7}})
    c["m5@m5f"].items.insert_one({"_id": 3, "v": "theirs"})
    c.m5.items.insert_one({"_id": 3, "v": "ours"})
    with pytest.raises(OperationFailure) as err:
        argon(c, "merge", source="m5f", into="main", dryRun=False)
    kinds = {x["docId"]: x["kind"] for x in err.value.details["errInfo"]["merge"]["conflicts"]}  # type: ignore[index]
    assert kinds == {1: "deleted-changed", 2: "changed-deleted", 3: "both-inserted"}
    argon(c, "merge", source="m5f", into="main", strategy="theirs")
    assert docs(c, "m5") == [{"_id": 1, "v": 2}, {"_id": 3, "v": "theirs"}]


def test_document_granularity(c: Client) -> None:
    fresh(c, "m6", "m6f", [{"_id": 1, "x": 1, "y": 1}])
    argon(c, "setMergeGranularity", db="m6", collection="items", granularity="document")
    c["m6@m6f"].items.update_one({"_id": 1}, {"$set": {"x": 2}})
    c.m6.items.update_one({"_id": 1}, {"$set": {"y": 2}})
    with pytest.raises(OperationFailure) as err:
        argon(c, "merge", source="m6f", into="main")
    [conflict] = err.value.details["errInfo"]["merge"]["conflicts"]  # type: ignore[index]
    assert conflict["kind"] == "both-changed"


def test_preview_then_apply_and_stale_preview(c: Client) -> None:
    fresh(c, "m7", "m7f", [{"_id": 1, "v": 1}])
    c["m7@m7f"].items.update_one({"_id": 1}, {"$set": {"v": 2}})
    preview = argon(c, "merge", source="m7f", into="main", dryRun=True)["merge"]
    assert preview["status"] == "preview"
    assert docs(c, "m7") == [{"_id": 1, "v": 1}]
    assert argon(c, "applyMerge", id=preview["id"])["merge"]["status"] == "applied"
    assert docs(c, "m7") == [{"_id": 1, "v": 2}]

    c["m7@m7f"].items.update_one({"_id": 1}, {"$set": {"v": 3}})
    preview = argon(c, "merge", source="m7f", into="main", dryRun=True)["merge"]
    c.m7.items.insert_one({"_id": 2})  # the target moves
    with pytest.raises(OperationFailure) as err:
        argon(c, "applyMerge", id=preview["id"])
    assert err.value.code == 2011
    assert docs(c, "m7") == [{"_id": 1, "v": 2}, {"_id": 2}]


def test_repeated_merges_use_the_last_merge_as_base(c: Client) -> None:
    fresh(c, "m8", "m8f", [{"_id": 1, "v": 1, "w": 1}])
    c["m8@m8f"].items.update_one({"_id": 1}, {"$set": {"v": 2}})
    argon(c, "merge", source="m8f", into="main")
    c.m8.items.update_one({"_id": 1}, {"$set": {"v": 5}})  # main moves on after the merge
    c["m8@m8f"].items.update_one({"_id": 1}, {"$set": {"w": 2}})
    out = argon(c, "merge", source="m8f", into="main")["merge"]
    assert out["counts"]["conflicts"] == 0
    assert docs(c, "m8") == [{"_id": 1, "v": 5, "w": 2}]
    # And back the other way: main's change reaches the branch without conflict.
    argon(c, "merge", source="main", into="m8f")
    assert docs(c, "m8@m8f") == [{"_id": 1, "v": 5, "w": 2}]


def test_merge_between_siblings_and_nested(c: Client) -> None:
    fresh(c, "m9", "m9a", [{"_id": 1, "v": 1}, {"_id": 2, "v": 1}])
    argon(c, "createBranch", name="m9b", **{"from": "main"})
    c["m9@m9a"].items.update_one({"_id": 2}, {"$set": {"v": "a"}})
    argon(c, "createBranch", name="m9a/child", **{"from": "m9a"})
    c["m9@m9a"].items.update_one({"_id": 1}, {"$set": {"v": "not seen by the child"}})
    c["m9@m9a~child"].items.update_one({"_id": 1}, {"$set": {"v": "child"}})
    argon(c, "merge", source="m9a/child", into="m9b")
    assert docs(c, "m9@m9b") == [{"_id": 1, "v": "child"}, {"_id": 2, "v": "a"}]
    assert docs(c, "m9") == [{"_id": 1, "v": 1}, {"_id": 2, "v": 1}]


def test_merge_refuses_bad_requests(c: Client) -> None:
    fresh(c, "m10", "m10f", [{"_id": 1}])
    for args, code in [
        ({"source": "m10f", "into": "m10f"}, 2),
        ({"source": "nope", "into": "main"}, 2001),
        ({"source": "m10f", "into": "main", "strategy": "yolo"}, 2),
    ]:
        with pytest.raises(OperationFailure) as err:
            argon(c, "merge", **args)
        assert err.value.code == code
    argon(c, "createSnapshot", name="m10-snap", branch="main")
    with pytest.raises(OperationFailure) as err:
        argon(c, "merge", source="m10f", into="m10-snap")
    assert err.value.code == 2004


def index_names(coll: Any) -> dict[str, bool]:
    return {i["name"]: bool(i.get("unique")) for i in coll.list_indexes() if i["name"] != "_id_"}


def test_index_changes_merge_and_conflict(c: Client) -> None:
    fresh(c, "mi", "ix", [{"_id": i, "v": i, "w": i % 2} for i in range(4)])
    c.mi.items.create_index("w", name="w_1")
    branch = c["mi@ix"].items
    branch.create_index("v", unique=True)  # only the branch: carried over
    out = argon(c, "merge", source="ix", into="main", dryRun=True)["merge"]
    assert out["indexes"] == [{"ns": "mi.items", "name": "v_1", "op": "create"}]
    out = argon(c, "merge", source="ix", into="main")["merge"]
    assert out["status"] == "applied"
    assert index_names(c.mi.items) == {"w_1": False, "v_1": True}
    # Both sides create the same name differently: a conflict, then a strategy decides.
    argon(c, "createBranch", name="ix2", **{"from": "main"})
    c["mi@ix2"].items.create_index([("v", -1)], name="flag")
    c.mi.items.create_index([("w", -1)], name="flag")
    with pytest.raises(OperationFailure) as err:
        argon(c, "merge", source="ix2", into="main")
    merge = err.value.details["errInfo"]["merge"]  # type: ignore[index]
    assert [(x["docId"], x["kind"]) for x in merge["conflicts"]] == [
        ({"index": "flag"}, "index-changed")
    ]
    argon(c, "merge", source="ix2", into="main", strategy="theirs")
    specs = {i["name"]: dict(i["key"]) for i in c.mi.items.list_indexes()}
    assert specs["flag"] == {"v": -1}
    # A dropped index merges as a drop; a unique index the target's data breaks
    # fails the merge before any document moves.
    argon(c, "createBranch", name="ix3", **{"from": "main"})
    c["mi@ix3"].items.drop_index("flag")
    c["mi@ix3"].items.insert_one({"_id": 10, "v": 10, "w": 0})
    argon(c, "merge", source="ix3", into="main")
    assert "flag" not in index_names(c.mi.items)
    assert c.mi.items.count_documents({}) == 5
    argon(c, "createBranch", name="ix4", **{"from": "main"})
    c["mi@ix4"].items.delete_many({"_id": {"$in": [2, 3, 10]}})
    c["mi@ix4"].items.drop_index("w_1")  # same key: mongod allows one of the two
    c["mi@ix4"].items.create_index("w", unique=True, name="w_unique")
    with pytest.raises(OperationFailure) as dup:
        argon(c, "merge", source="ix4", into="main")
    assert dup.value.code == 11000 and "mi.items" in str(dup.value)
    assert c.mi.items.count_documents({}) == 5
    assert index_names(c.mi.items) == {"w_1": False, "v_1": True}  # put back
