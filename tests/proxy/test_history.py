"""Diff, tags, snapshots, reset, undo, log and blame through the admin commands."""

from __future__ import annotations

import time
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


def test_diff_between_branches_with_field_changes(c: Client) -> None:
    c.d1.items.insert_many([{"_id": i, "v": i, "n": {"a": 1, "b": 1}} for i in range(4)])
    argon(c, "createBranch", name="d1", **{"from": "main"})
    argon(c, "createBranch", name="d1/deep", **{"from": "d1"})
    deep = c["d1@d1~deep"].items
    deep.update_one({"_id": 1}, {"$set": {"n.b": 2, "extra": True}})
    deep.delete_one({"_id": 2})
    deep.insert_one({"_id": 7, "v": 7})
    c.d1.items.update_one({"_id": 3}, {"$set": {"v": 30}})  # main moves too
    out = argon(c, "diff", **{"from": "main", "to": "d1/deep"})["diff"]
    assert out["summary"] == {"added": 1, "removed": 1, "modified": 2}
    [coll] = out["collections"]
    by_id = {d["docId"]: d for d in coll["documents"]}
    assert by_id[7]["change"] == "added"
    assert by_id[2]["change"] == "removed"
    assert by_id[1]["fields"] == [
        {"path": "n.b", "change": "modified", "before": 1, "after": 2},
        {"path": "extra", "change": "added", "after": True},
    ]
    assert by_id[3]["fields"] == [{"path": "v", "change": "modified", "before": 30, "after": 3}]
    # the other way round, and restricted to a collection that did not change
    back = argon(c, "diff", **{"from": "d1/deep", "to": "main"})["diff"]
    assert back["summary"] == {"added": 1, "removed": 1, "modified": 2}
    none = argon(c, "diff", **{"from": "main", "to": "d1/deep", "collection": "other"})["diff"]
    assert none["summary"] == {"added": 0, "removed": 0, "modified": 0}


def test_diff_against_a_point_in_time(c: Client) -> None:
    c.d2.items.insert_many([{"_id": i, "v": i} for i in range(3)])
    lsn = argon(c, "status")["lsn"]
    c.d2.items.update_one({"_id": 0}, {"$set": {"v": "new"}})
    c.d2.items.insert_one({"_id": 5})
    out = argon(c, "diff", **{"from": f"main@lsn-{lsn}", "to": "main", "db": "d2"})["diff"]
    assert out["summary"] == {"added": 1, "removed": 0, "modified": 1}


def test_tags_read_list_branch_from_and_delete(c: Client) -> None:
    c.t1.items.insert_many([{"_id": 1, "v": "tagged"}])
    argon(c, "createBranch", name="t1", **{"from": "main"})
    tag = argon(c, "createTag", name="t1-validated", branch="t1", message="checks pass")["tag"]
    assert tag["branch"] == "t1"
    c["t1@t1"].items.update_one({"_id": 1}, {"$set": {"v": "later"}})
    assert docs(c, "t1@t1-validated") == [{"_id": 1, "v": "tagged"}]
    with pytest.raises(OperationFailure) as err:
        c["t1@t1-validated"].items.insert_one({"_id": 2})
    assert err.value.code == 2004
    names = [t["name"] for t in argon(c, "listTags", branch="t1")["tags"]]
    assert names == ["t1-validated"]
    assert argon(c, "getBranch", name="t1")["branch"]["tags"] == ["t1-validated"]
    argon(c, "createBranch", name="t1-fix", **{"from": "t1-validated"})
    assert docs(c, "t1@t1-fix") == [{"_id": 1, "v": "tagged"}]
    for name, code in [("t1-validated", 2014), ("t1", 2014)]:
        with pytest.raises(OperationFailure) as err:
            argon(c, "createTag", name=name, branch="t1")
        assert err.value.code == code
    argon(c, "deleteTag", name="t1-validated")
    with pytest.raises(OperationFailure) as err:
        argon(c, "deleteTag", name="t1-validated")
    assert err.value.code == 2013


def test_snapshot_is_immutable_and_branchable(c: Client) -> None:
    c.s1.items.insert_many([{"_id": 1, "v": 1}])
    snap = argon(c, "createSnapshot", name="pre-debug-s1", branch="main")["branch"]
    assert snap["snapshot"] is True and snap["read_only"] is True
    c.s1.items.update_one({"_id": 1}, {"$set": {"v": 2}})
    assert docs(c, "s1@pre-debug-s1") == [{"_id": 1, "v": 1}]
    with pytest.raises(OperationFailure) as err:
        c["s1@pre-debug-s1"].items.delete_many({})
    assert err.value.code == 2004
    argon(c, "createBranch", name="debug/s1", **{"from": "pre-debug-s1"})
    c["s1@debug~s1"].items.insert_one({"_id": 2})
    assert docs(c, "s1@debug~s1") == [{"_id": 1, "v": 1}, {"_id": 2}]
    assert docs(c, "s1@pre-debug-s1") == [{"_id": 1, "v": 1}]


def test_archive_hides_and_freezes(c: Client) -> None:
    argon(c, "createBranch", name="old/exp", **{"from": "main"})
    argon(c, "archiveBranch", name="old/exp")
    listed = [b["name"] for b in argon(c, "listBranches")["branches"]]
    assert "old/exp" not in listed
    assert "old/exp" in [b["name"] for b in argon(c, "listBranches", all=True)["branches"]]
    with pytest.raises(OperationFailure) as err:
        c["x@old~exp"].items.insert_one({})
    assert err.value.code == 2004


def test_reset_previews_then_restores(c: Client) -> None:
    c.r1.items.insert_many([{"_id": i, "v": i} for i in range(3)])
    argon(c, "createBranch", name="r1", **{"from": "main"})
    b = c["r1@r1"].items
    b.update_one({"_id": 0}, {"$set": {"v": "x"}})
    good = argon(c, "getBranch", name="r1")["branch"]["head_lsn"]
    b.update_one({"_id": 1}, {"$set": {"v": "bad"}})
    b.delete_one({"_id": 2})
    b.insert_one({"_id": 9})
    b.update_one({"_id": 1}, {"$set": {"v": "worse"}})
    preview = argon(c, "resetBranch", name="r1", lsn=good, dryRun=True)["reset"]
    assert preview["discarded"] == {"documents": 3}
    assert len(docs(c, "r1@r1")) == 3  # nothing changed yet
    argon(c, "resetBranch", name="r1", lsn=good)
    assert docs(c, "r1@r1") == [{"_id": 0, "v": "x"}, {"_id": 1, "v": 1}, {"_id": 2, "v": 2}]
    assert docs(c, "r1") == [{"_id": i, "v": i} for i in range(3)]


def test_reset_undoes_a_merge_and_it_can_be_merged_again(c: Client) -> None:
    c.r2.items.insert_many([{"_id": 1, "v": 1}])
    argon(c, "createBranch", name="r2", **{"from": "main"})
    c["r2@r2"].items.update_one({"_id": 1}, {"$set": {"v": 2}})
    before = argon(c, "status")["lsn"]
    argon(c, "merge", source="r2", into="main")
    assert docs(c, "r2") == [{"_id": 1, "v": 2}]
    argon(c, "resetBranch", name="main", lsn=before)
    assert docs(c, "r2") == [{"_id": 1, "v": 1}]
    assert argon(c, "merge", source="r2", into="main")["merge"]["status"] == "applied"
    assert docs(c, "r2") == [{"_id": 1, "v": 2}]


def test_undo_one_clients_writes_refusing_changed_documents(
    c: Client, stack: tuple[Process, Process]
) -> None:
    c.u1.items.insert_many([{"_id": i, "v": 0} for i in range(3)])
    argon(c, "createBranch", name="u1", **{"from": "main"})
    start = argon(c, "status")["lsn"] + 1
    etl: Client = MongoClient(stack[1].uri, appName="argon:u1")
    etl.u1.items.update_many({}, {"$set": {"v": "etl"}})
    end = argon(c, "status")["lsn"]
    c["u1@u1"].items.update_one({"_id": 2}, {"$set": {"v": "someone else"}})
    preview = argon(
        c, "undo", branch="u1", fromLsn=start, toLsn=end, client="argon:u1", dryRun=True
    )
    assert preview["undo"]["documents"] == 2
    out = argon(c, "undo", branch="u1", fromLsn=start, toLsn=end, client="argon:u1")["undo"]
    assert [r["docId"] for r in out["refused"]] == [2]
    assert docs(c, "u1@u1") == [
        {"_id": 0, "v": 0},
        {"_id": 1, "v": 0},
        {"_id": 2, "v": "someone else"},
    ]
    etl.close()


def test_log_and_blame(c: Client, stack: tuple[Process, Process]) -> None:
    app: Client = MongoClient(stack[1].uri, appName="loader")
    app.b1.items.insert_one({"_id": 1, "a": 1, "n": {"x": 1, "y": 1}})
    argon(c, "createBranch", name="b1", **{"from": "main"})
    c["b1@b1"].items.update_one({"_id": 1}, {"$set": {"n.y": 2}})
    c["b1@b1"].items.update_one({"_id": 1}, {"$set": {"a": 3}})
    log = argon(c, "log", branch="b1", db="b1", collection="items", docId=1)["entries"]
    assert [(e["branch"], e["op"]) for e in log] == [
        ("b1", "update"),
        ("b1", "update"),
        ("main", "insert"),
    ]
    blame = argon(c, "blame", branch="b1", db="b1", collection="items", docId=1)
    who = {f["path"]: (f["branch"], f["lsn"]) for f in blame["fields"]}
    assert who["n.x"] == ("main", log[2]["lsn"])
    assert who["n.y"] == ("b1", log[1]["lsn"])
    assert who["a"] == ("b1", log[0]["lsn"])
    assert [f["client"]["app"] for f in blame["fields"] if f["path"] == "_id"] == ["loader"]
    branch_log = argon(c, "log", branch="b1")["entries"]
    assert len(branch_log) == 2
    app.close()


def test_a_point_in_time_holds_every_change_of_a_transaction_made_by_then(c: Client) -> None:
    """The entries of one transaction share its time (the time index holds only
    its last): a point at that time shows all of them, and nothing later."""
    c.tt.items.insert_many([{"_id": i} for i in range(5)])
    entries = argon(c, "log", branch="main", db="tt", collection="items")["entries"]
    times = {e["ts"] for e in entries}
    assert len(entries) == 5 and len(times) == 1 and None not in times
    when = times.pop()
    time.sleep(0.01)  # the next batch's time is later (times are stored in milliseconds)
    c.tt.items.insert_many([{"_id": i} for i in range(5, 8)])
    argon(c, "createBranch", name="tt-then", time=when)
    assert docs(c, "tt@tt-then") == [{"_id": i} for i in range(5)]
    info = argon(c, "timeTravelInfo", name="main")["branches"][0]
    assert info["latest_time"] is not None and info["latest_time"] > when
