"""``$out`` through the write path: on main and on branches, logged, isolated."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure
from pymongo.read_concern import ReadConcern

from ..stacks import argon, own_client

Client = MongoClient[dict[str, Any]]


@pytest.fixture(scope="module")
def c() -> Iterator[Client]:
    with own_client() as client:
        yield client


def docs(coll: Any) -> list[dict[str, Any]]:
    return list(coll.find({}, sort=[("_id", 1)]))


SUMMARY: list[dict[str, Any]] = [
    {"$match": {"qty": {"$gt": 0}}},
    {"$group": {"_id": "$sku", "total": {"$sum": "$qty"}}},
    {"$sort": {"_id": 1}},
]


def test_out_on_main_is_logged_and_kept_off_branches(c: Client) -> None:
    c.o1.orders.insert_many([{"_id": i, "sku": "ab"[i % 2], "qty": i} for i in range(6)])
    c.o1.totals.insert_many([{"_id": "old", "total": 0}, {"_id": "a", "total": -1}])
    c.o1.totals.create_index("total")
    argon(c, "createBranch", name="before-out")
    c.o1.orders.aggregate([*SUMMARY, {"$out": "totals"}])
    assert docs(c.o1.totals) == [{"_id": "a", "total": 6}, {"_id": "b", "total": 9}]
    assert "total_1" in c.o1.totals.index_information()  # $out keeps the target's indexes
    assert docs(c["o1@before-out"].totals) == [
        {"_id": "a", "total": -1},
        {"_id": "old", "total": 0},
    ]
    logged = argon(c, "log", branch="main", limit=50)["entries"]
    changes = {(e["op"], e["docId"]) for e in logged if e["ns"] == "o1.totals"}
    assert changes >= {("delete", "old"), ("update", "a"), ("insert", "b")}


def test_out_on_a_branch_stays_on_it(c: Client) -> None:
    c.o2.orders.insert_many([{"_id": i, "sku": "xy"[i % 2], "qty": 1} for i in range(4)])
    argon(c, "createBranch", name="out-branch")
    branch = c["o2@out-branch"]
    branch.orders.insert_one({"_id": 10, "sku": "z", "qty": 5})
    branch.orders.aggregate([*SUMMARY, {"$out": {"db": "o2", "coll": "report"}}])
    assert docs(branch.report) == [
        {"_id": "x", "total": 2},
        {"_id": "y", "total": 2},
        {"_id": "z", "total": 5},
    ]
    assert "report" not in c.o2.list_collection_names()
    # Replacing again drops what the new results do not hold.
    branch.orders.aggregate([{"$match": {"sku": "z"}}, {"$out": "report"}])
    assert docs(branch.report) == [{"_id": 10, "sku": "z", "qty": 5}]
    # No results still leaves an (empty) target.
    branch.orders.aggregate([{"$match": {"sku": "none"}}, {"$out": "empty"}])
    assert "empty" in branch.list_collection_names() and docs(branch.empty) == []


def test_out_refusals(c: Client) -> None:
    c.o3.src.insert_many([{"_id": 1, "k": 1}, {"_id": 2, "k": 1}])
    c.o3.dst.insert_one({"_id": "keep"})
    with pytest.raises(OperationFailure) as dup:  # two results with one _id
        c.o3.src.aggregate([{"$project": {"_id": "$k"}}, {"$out": "dst"}])
    assert dup.value.code == 11000
    assert docs(c.o3.dst) == [{"_id": "keep"}]  # nothing replaced
    with pytest.raises(OperationFailure) as merge:  # a pipeline whenMatched
        c.o3.src.aggregate([{"$merge": {"into": "dst", "whenMatched": [{"$set": {"x": 1}}]}}])
    assert merge.value.code == 115 and "$merge" in str(merge.value)
    linear = c.o3.get_collection("src", read_concern=ReadConcern("linearizable"))
    with pytest.raises(OperationFailure) as concern:  # as mongod refuses it
        linear.aggregate([{"$out": "dst"}])
    assert concern.value.code == 72 and "linearizable" in str(concern.value)
    assert docs(c.o3.dst) == [{"_id": "keep"}]


def test_merge_into_a_branch(c: Client) -> None:
    c.o4.src.insert_many([{"_id": 1, "v": 10}, {"_id": 2, "v": 20}])
    c.o4.dst.insert_many([{"_id": 1, "v": 1, "keep": True}, {"_id": 3, "v": 3}])
    argon(c, "createBranch", name="merge-stage")
    branch = c["o4@merge-stage"]
    branch.src.aggregate([{"$merge": {"into": "dst"}}])  # merge fields, insert the rest
    assert docs(branch.dst) == [
        {"_id": 1, "v": 10, "keep": True},
        {"_id": 2, "v": 20},
        {"_id": 3, "v": 3},
    ]
    assert docs(c.o4.dst) == [{"_id": 1, "v": 1, "keep": True}, {"_id": 3, "v": 3}]
    branch.src.aggregate(
        [
            {"$set": {"v": 0}},
            {"$merge": {"into": "dst", "whenMatched": "replace", "whenNotMatched": "discard"}},
        ]
    )
    assert docs(branch.dst) == [{"_id": 1, "v": 0}, {"_id": 2, "v": 0}, {"_id": 3, "v": 3}]
    with pytest.raises(OperationFailure) as fail:
        branch.src.aggregate([{"$merge": {"into": "dst", "whenMatched": "fail"}}])
    assert fail.value.code == 11000
    branch.src.aggregate([{"$merge": {"into": "dst", "whenMatched": "keepExisting"}}])
    assert docs(branch.dst)[0] == {"_id": 1, "v": 0}


@pytest.mark.parametrize("where", ["main", "branch"])
def test_merge_on_other_fields(c: Client, where: str) -> None:
    """``$merge`` matching on a uniquely indexed field: the matched document keeps
    its ``_id``, others are inserted, as on mongod; main's data stays apart from
    the branch's."""
    base = c[f"o5{where}"]
    base.src.insert_many([{"_id": 1, "sku": "a", "n": 1}, {"_id": 2, "sku": "b", "n": 2}])
    base.dst.insert_many([{"_id": 10, "sku": "a", "n": 0, "keep": 1}, {"_id": 11, "sku": "z"}])
    base.dst.create_index("sku", unique=True)
    if where == "branch":
        argon(c, "createBranch", name="merge-on")
    db = c["o5branch@merge-on"] if where == "branch" else base
    unset = {"$project": {"_id": 0}}
    db.src.aggregate([unset, {"$merge": {"into": "dst", "on": "sku"}}])
    got = docs(db.dst)
    assert got[:2] == [{"_id": 10, "sku": "a", "n": 1, "keep": 1}, {"_id": 11, "sku": "z"}]
    assert [(d["sku"], d["n"]) for d in got[2:]] == [("b", 2)]  # a fresh _id
    db.src.aggregate(
        [
            unset,
            {"$set": {"n": 7}},
            {
                "$merge": {
                    "into": "dst",
                    "on": ["sku"],
                    "whenMatched": "replace",
                    "whenNotMatched": "discard",
                }
            },
        ]
    )
    assert docs(db.dst)[:2] == [{"_id": 10, "sku": "a", "n": 7}, {"_id": 11, "sku": "z"}]
    failures: dict[int, list[dict[str, Any]]] = {
        66: [{"$merge": {"into": "dst", "on": "sku"}}],  # the result's _id is not the match's
        11000: [unset, {"$merge": {"into": "dst", "on": "sku", "whenMatched": "fail"}}],
        13113: [
            unset,
            {"$set": {"sku": "new"}},
            {"$merge": {"into": "dst", "on": "sku", "whenNotMatched": "fail"}},
        ],
        51183: [unset, {"$merge": {"into": "dst", "on": "n"}}],  # no unique index on n
        51132: [{"$project": {"_id": 0, "n": 1}}, {"$merge": {"into": "dst", "on": "sku"}}],
        51185: [unset, {"$set": {"sku": ["a"]}}, {"$merge": {"into": "dst", "on": "sku"}}],
        51186: [{"$merge": {"into": "dst", "on": 3}}],
        51187: [{"$merge": {"into": "dst", "on": []}}],
        51134: [{"$merge": {"into": "dst", "on": ["sku", 1]}}],
    }
    before = docs(db.dst)
    for code, pipeline in failures.items():
        with pytest.raises(OperationFailure) as info:
            db.src.aggregate(pipeline)
        assert info.value.code == code, pipeline
    assert docs(db.dst) == before  # a failed $merge writes nothing
    if where == "branch":
        assert docs(base.dst) == [
            {"_id": 10, "sku": "a", "n": 0, "keep": 1},
            {"_id": 11, "sku": "z"},
        ]
