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

from ..stacks import Client, argon, branch_id, side_by_side

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


@pytest.mark.parametrize("target", ["main", "branch"])
@pytest.mark.parametrize("size", [1, 3, 1500])
def test_a_retried_statement_is_applied_once(
    clients: dict[str, Client], target: str, size: int
) -> None:
    """One update, a batch of inserts run as one statement, and one too big for a
    single command of Argon's records: each retry answers what the first attempt
    did and changes nothing."""
    client = clients[target]
    coll = _fresh(clients, target, f"retried_{size}")
    # pymongo reuses server sessions between tests: numbers no other test sends.
    txn = 1000 * size + (1 if target == "main" else 2)
    with client.start_session() as session:
        ids = {"lsid": session.session_id, "txnNumber": Int64(txn)}
        docs = [{"_id": 100 + i, "pad": "p" * 200} for i in range(size)]
        inserted = {"insert": coll.name, "documents": docs, **ids}
        assert coll.database.command(inserted, session=session)["n"] == size
        assert coll.database.command(inserted, session=session)["n"] == size
        updated = {"update": coll.name, "updates": [{"q": {"_id": 0}, "u": {"$inc": {"n": 1}}}]}
        ids["txnNumber"] = Int64(txn + 500)
        first = coll.database.command({**updated, **ids}, session=session)
        again = coll.database.command({**updated, **ids}, session=session)
    assert (first["n"], first["nModified"]) == (again["n"], again["nModified"]) == (1, 1)
    assert coll.find_one({"_id": 0}) == {"_id": 0, "n": 1}
    assert coll.count_documents({"_id": {"$gte": 100}}) == size


def _by_id(clients: dict[str, Client], target: str, name: str) -> Coll:
    """``name`` holding n = _id for _id 0..5 (document 4 also holds a string ``s``),
    written through ``target``: ``forked`` is a branch made after main's copy was
    written, so its documents are main's until it writes them."""
    if target != "forked":
        coll = clients[target].groups_db[f"{name}_{target}"]
    else:
        coll = clients["main"].groups_db[f"{name}_forked"]
    coll.insert_many([{"_id": i, "n": i} for i in range(6)])
    coll.update_one({"_id": 4}, {"$set": {"s": "text"}})
    if target != "forked":
        return coll
    branch = f"{name.replace('_', '-')}-forked"
    argon(clients["main"], "createBranch", name=branch, **{"from": "main"})
    return clients["main"][f"groups_db@{branch}"][coll.name]


BY_ID = [
    UpdateOne({"_id": 0}, {"$inc": {"n": 10}}),
    UpdateOne({"_id": 1}, {"$set": {"n": 1}}),  # changes nothing
    UpdateOne({"_id": 99}, {"$set": {"n": 1}}),  # matches nothing
    UpdateOne({"_id": 3}, [{"$set": {"n": {"$add": ["$n", 1]}}}]),  # a pipeline
    UpdateOne({"_id": 4}, {"$inc": {"s": 1}}),  # s is a string: fails
    UpdateOne({"_id": 5}, {"$push": {"tags": "x"}}),
]


@pytest.mark.parametrize("ordered", [True, False])
def test_updates_by_id_together_answer_as_mongod(clients: dict[str, Client], ordered: bool) -> None:
    """Updates each naming a different ``_id`` run as a few commands for all of them
    (``pinned_updates.py``); counts, errors and documents are mongod's, whether
    the branch holds the documents or still reads them from main."""
    name = f"by_id_{ordered}"
    targets = [*TARGETS, "forked"]
    outcomes = {t: _outcome(_by_id(clients, t, name), BY_ID, ordered) for t in targets}
    for target in targets[1:]:
        assert outcomes[target] == outcomes["direct"], target
    counts, _, errors, _ = outcomes["direct"]
    assert [e[0] for e in errors] == [4]
    assert (counts["nMatched"], counts["nModified"]) == ((3, 2) if ordered else (4, 3))
    # main's copy is untouched by the branch's writes
    main_docs = list(clients["main"].groups_db[f"{name}_forked"].find({}, sort=[("_id", 1)]))
    assert [d["n"] for d in main_docs] == list(range(6))


def test_a_copy_the_update_left_unchanged_is_undone(clients: dict[str, Client]) -> None:
    """The branch's overlay keeps only the documents its updates changed (an
    unchanged copy-up is deleted again); each change is in the WAL with its pre-
    and post-image, and main's later writes stay out of the branch."""
    coll = _by_id(clients, "forked", "follow")
    coll.bulk_write([UpdateOne({"_id": i}, {"$set": {"n": 0}}) for i in (0, 1, 2)])
    db = clients["direct"].groups_db
    (overlay,) = [n for n in db.list_collection_names() if n.endswith(".follow_forked")]
    assert sorted(d["_id"] for d in db[overlay].find()) == [1, 2]
    found = clients["direct"]["__argon"].wal.find(
        {
            "ns": "groups_db.follow_forked",
            "branch_id": branch_id(clients["direct"], "follow-forked"),
        },
        sort=[("_id", 1)],
    )
    entries = [(e["doc_id"], wal.image(e, "pre"), wal.image(e, "post")) for e in found]
    assert entries == [
        (1, {"_id": 1, "n": 1}, {"_id": 1, "n": 0}),
        (2, {"_id": 2, "n": 2}, {"_id": 2, "n": 0}),
    ]
    clients["main"].groups_db["follow_forked"].update_many({}, {"$inc": {"n": 100}})
    assert [d["n"] for d in coll.find({}, sort=[("_id", 1)])] == [0, 0, 0, 3, 4, 5]


@pytest.mark.parametrize("target", TARGETS)
def test_an_id_of_another_numeric_type_matches_as_on_mongod(
    clients: dict[str, Client], target: str
) -> None:
    """mongod matches ``{_id: 1}`` to a document whose ``_id`` is 1.0 or Int64(1);
    the statements still report it matched and the WAL still holds the change."""
    coll = clients[target].groups_db[f"numeric_{target}"]
    coll.insert_many([{"_id": 1.0, "n": 0}, {"_id": Int64(2), "n": 0}, {"_id": 3, "n": 0}])
    result = coll.bulk_write([UpdateOne({"_id": i}, {"$inc": {"n": 1}}) for i in (1, 2, 3)])
    assert (result.matched_count, result.modified_count) == (3, 3)
    assert [d["n"] for d in coll.find({}, sort=[("_id", 1)])] == [1, 1, 1]
    if target != "direct":
        logged = clients["direct"]["__argon"].wal.count_documents(
            {"ns": coll.full_name, "op": wal.UPDATE}
        )
        assert logged == 3
