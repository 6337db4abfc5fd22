"""Single-document statements of one write command commit together.

A command of many ``updateOne`` / ``deleteOne`` statements runs them as one
upstream transaction (one commit, one LSN lease, one WAL insert), each
statement seeing what the ones before it wrote. A failing statement sends its
group back to running statement by statement, so replies, write errors and
documents must be exactly mongod's: each case runs straight against the
upstream, through Argon on main and through Argon on a branch, and must agree.
The WAL must still hold every change with its own pre- and post-image.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from bson import Int64
from pymongo import DeleteOne, InsertOne, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from argon_proxy import wal

from ..stacks import Client, argon, side_by_side

Coll = Collection[dict[str, Any]]
TARGETS = ["direct", "main", "branch"]


@pytest.fixture(scope="module")
def clients() -> Iterator[dict[str, Client]]:
    """Direct, Argon on main, and Argon on branch ``groups`` (by appName)."""
    with side_by_side("groups") as clients:
        yield clients


def _fresh(clients: dict[str, Client], target: str, name: str) -> Coll:
    """``name`` (per target) holding n = _id for _id 0..5 and a unique index on
    ``u`` (document 4 holds u = "taken"), read and written through ``target``."""
    coll = clients[target].groups_db[f"{name}_{target}"]
    coll.insert_many([{"_id": i, "n": i} for i in range(6)])
    coll.update_one({"_id": 4}, {"$set": {"u": "taken"}})
    coll.create_index("u", unique=True, sparse=True)
    return coll


MIXED = [
    UpdateOne({"_id": 0}, {"$inc": {"n": 10}}),
    UpdateOne({"_id": 0}, {"$inc": {"n": 10}}),  # the same document again
    UpdateOne({"_id": 1}, {"$set": {"n": 1}}),  # changes nothing
    UpdateOne({"_id": 99}, {"$set": {"n": 1}}),  # matches nothing
    DeleteOne({"_id": 2}),
    UpdateOne({"_id": 3}, {"$set": {"u": "taken"}}),  # duplicate key on u
    UpdateOne({"_id": 5}, {"$inc": {"n": 1}}),
    UpdateOne({"_id": 7}, {"$set": {"n": 7}}, upsert=True),
    DeleteOne({"_id": 99}),
    UpdateOne({"n": {"$gte": 20}}, {"$set": {"seen": True}}),  # sees statement 1's write
]


def _outcome(coll: Coll, ops: list[Any], ordered: bool) -> tuple[Any, ...]:
    """What mongod says of the bulk write, and the documents after it."""
    done: Mapping[str, Any]
    try:
        done = coll.bulk_write(ops, ordered=ordered).bulk_api_result
    except BulkWriteError as exc:
        done = exc.details
    errors = [(e["index"], e["code"], e.get("keyValue")) for e in done.get("writeErrors", [])]
    counts = {k: done[k] for k in ("nInserted", "nMatched", "nModified", "nRemoved", "nUpserted")}
    return counts, done.get("upserted"), errors, list(coll.find({}, sort=[("_id", 1)]))


@pytest.mark.parametrize("ordered", [True, False])
def test_a_failing_statement_is_reported_where_mongod_reports_it(
    clients: dict[str, Client], ordered: bool
) -> None:
    name = f"mixed_{ordered}"
    outcomes = {t: _outcome(_fresh(clients, t, name), MIXED, ordered) for t in TARGETS}
    assert outcomes["main"] == outcomes["direct"]
    assert outcomes["branch"] == outcomes["direct"]
    counts, _, errors, _ = outcomes["direct"]
    assert [e[:2] for e in errors] == [(5, 11000)]  # the case is what it means to be
    assert counts["nModified"] == (2 if ordered else 4)


@pytest.mark.parametrize("target", TARGETS)
def test_many_statements_apply_in_order(clients: dict[str, Client], target: str) -> None:
    coll = _fresh(clients, target, "order")
    ops: list[Any] = [UpdateOne({"_id": i % 6}, {"$push": {"seen": i}}) for i in range(60)]
    ops += [DeleteOne({"_id": 2}), InsertOne({"_id": 2, "back": True})]
    ops += [UpdateOne({"_id": 2}, {"$set": {"n": -1}}), DeleteOne({"seen": {"$size": 10}})]
    result = coll.bulk_write(ops)
    assert (result.matched_count, result.modified_count) == (61, 61)
    assert (result.deleted_count, result.inserted_count) == (2, 1)
    docs = list(coll.find({}, sort=[("_id", 1)]))
    assert docs[0]["_id"] == 1 and docs[0]["seen"] == list(range(1, 60, 6))
    assert {"_id": 2, "back": True, "n": -1} in docs


def test_each_change_keeps_its_own_images(clients: dict[str, Client]) -> None:
    """A document changed twice in one group has two WAL entries: the first one's
    post-image is the second one's pre-image; a branch made before the command
    keeps the document as it was before both."""
    main = clients["main"]
    coll = _fresh(clients, "main", "images")
    argon(main, "createBranch", name="before-images", **{"from": "main"})
    coll.bulk_write(
        [
            UpdateOne({"_id": 0}, {"$set": {"a": 1}}),
            UpdateOne({"_id": 1}, {"$set": {"n": 1}}),  # no change: no entry
            UpdateOne({"_id": 0}, {"$set": {"b": 2}}),
            DeleteOne({"_id": 0}),
        ]
    )
    found = clients["direct"]["__argon"].wal.find(
        {"ns": coll.full_name, "doc_id": {"$in": [0, 1]}}, sort=[("_id", 1)]
    )
    entries = [(e["op"], wal.image(e, "pre"), wal.image(e, "post")) for e in found][-3:]
    assert entries == [
        (wal.UPDATE, {"_id": 0, "n": 0}, {"_id": 0, "n": 0, "a": 1}),
        (wal.UPDATE, {"_id": 0, "n": 0, "a": 1}, {"_id": 0, "n": 0, "a": 1, "b": 2}),
        (wal.DELETE, {"_id": 0, "n": 0, "a": 1, "b": 2}, None),
    ]
    before = main["groups_db@before-images"][coll.name]
    assert before.find_one({"_id": 0}) == {"_id": 0, "n": 0}


@pytest.mark.parametrize("target", ["main", "branch"])
def test_a_retried_group_is_applied_once(clients: dict[str, Client], target: str) -> None:
    """A driver that lost the reply sends the command again with the same
    ``txnNumber``: every statement of the group answers what it did the first time."""
    client = clients[target]
    coll = _fresh(clients, target, "retried")
    with client.start_session() as session:
        command = {
            "update": coll.name,
            "updates": [{"q": {"_id": i}, "u": {"$inc": {"n": 100}}} for i in (0, 1, 0)]
            + [{"q": {"_id": 9}, "u": {"$set": {"n": 9}}, "upsert": True}],
            "lsid": session.session_id,
            "txnNumber": Int64(3),
        }
        first = coll.database.command(command)
        again = coll.database.command(command)
    assert first["n"] == again["n"] == 4
    assert first["nModified"] == again["nModified"] == 3
    assert first["upserted"] == again["upserted"] == [{"index": 3, "_id": 9}]
    assert [d["n"] for d in coll.find({"_id": {"$in": [0, 1, 9]}}, sort=[("_id", 1)])] == [
        200,
        101,
        9,
    ]
