"""Read shapes on a branch that has written the collection, against a plain copy.

Each test builds the same documents on a branch (through Argon) and in a plain
collection of the upstream (directly), and expects the same answers: the
branch must be indistinguishable from a database holding its documents.
"""

from __future__ import annotations

import itertools
import random
import re
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from bson import Int64
from pymongo import MongoClient, ReturnDocument, monitoring
from pymongo.collation import Collation
from pymongo.collection import Collection
from pymongo.errors import OperationFailure

from ..processes import Process
from ..stacks import Client, argon, own_stack

Coll = Collection[dict[str, Any]]
_names = itertools.count()


class Commands(monitoring.CommandListener):
    """The names of the commands a client sent, in order, and of those that failed."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.failures: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.failures.append(event.command_name)


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Process, Process]]:
    with own_stack() as pair:
        yield pair


@pytest.fixture(scope="module")
def commands() -> Commands:
    return Commands()


@pytest.fixture(scope="module")
def client(stack: tuple[Process, Process], commands: Commands) -> Iterator[Client]:
    c: Client = MongoClient(stack[1].uri, event_listeners=[commands])
    yield c
    c.close()


@pytest.fixture(scope="module")
def direct(stack: tuple[Process, Process]) -> Iterator[Client]:
    c: Client = MongoClient(stack[0].uri)
    yield c
    c.close()


def branch_and_copy(
    client: Client,
    direct: Client,
    docs: list[dict[str, Any]],
    *,
    index: str | None = None,
) -> tuple[Coll, Coll]:
    """A branch's collection and a plain copy, both holding ``docs``; the branch
    changed one document and deleted another of main's, so it has an overlay.
    ``index`` is created on main (and so on the branch's overlay) only."""
    n = next(_names)
    db = f"reads{n}"
    main = client[db].items
    main.insert_many([dict(d) for d in docs])
    if index:
        main.create_index(index)
    argon(client, "createBranch", name=f"r{n}", **{"from": "main"})
    branch = client[f"{db}@r{n}"].items
    copy = direct[f"copy{n}"].items
    copy.insert_many([dict(d) for d in docs])  # unindexed: the test upstream's planner
    # answers some filters wrongly with an index; the copy must be the truth
    for coll in (branch, copy):
        coll.update_one({"_id": docs[0]["_id"]}, {"$set": {"touched": True}})
        coll.delete_one({"_id": docs[-1]["_id"]})
    return branch, copy


def test_id_only_projection_hides_deleted_documents(client: Client, direct: Client) -> None:
    docs = [{"_id": i, "x": (i * 7) % 13} for i in range(100)]
    branch, copy = branch_and_copy(client, direct, docs)
    for coll in (branch, copy):
        coll.delete_many({"_id": {"$gte": 10, "$lt": 20}})
    assert branch.count_documents({}) == 89
    for projection in ({"_id": 1}, {"_id": True}, {"_id": 1, "x": 0}, {"x": 0}, {"_id": 0}):
        got = sorted(branch.find({}, projection), key=repr)
        assert got == sorted(copy.find({}, projection), key=repr), projection
    sort = [("x", 1), ("_id", 1)]
    for projection in ({"_id": 1}, {"_id": 0}, {"x": 1}, {"_id": 0, "x": 1}):
        got = list(branch.find({}, projection, sort=sort, limit=20))
        assert got == list(copy.find({}, projection, sort=sort, limit=20)), projection


def test_regex_value_with_an_index(client: Client, direct: Client) -> None:
    words = ["hello", "help", "he", "hex", "ahe", "x", "h", "oh"]
    docs = [{"_id": i, "x": w, "tags": [w, "z"]} for i, w in enumerate(words * 2)]
    branch, copy = branch_and_copy(client, direct, docs, index="x")
    pattern = re.compile("^he")
    for flt in (
        {"x": pattern},
        {"x": {"$in": [pattern, "x"]}},
        {"x": {"$in": [pattern]}, "_id": {"$lt": 9}},
        {"$or": [{"x": pattern}, {"_id": 5}]},
        {"x": {"$regex": "^he"}},
    ):
        want = sorted(d["_id"] for d in copy.find(flt))
        assert want  # the plain copy answers these right without the index's help
        assert sorted(d["_id"] for d in branch.find(flt)) == want, flt
        assert branch.count_documents(flt) == len(want), flt
    # A branch that has not written the collection reads main's layer as it is.
    main_db, name = branch.database.name.split("@")
    argon(client, "createBranch", name=f"{name}-untouched", **{"from": "main"})
    untouched = client[f"{main_db}@{name}-untouched"].items
    for coll in (branch, copy):  # main's documents again, on the branch and the copy
        coll.update_one({"_id": docs[0]["_id"]}, {"$unset": {"touched": 1}})
        coll.insert_one(dict(docs[-1]))
    want = sorted(d["_id"] for d in copy.find({"x": pattern}))
    assert sorted(d["_id"] for d in untouched.find({"x": pattern})) == want
    assert untouched.count_documents({"x": pattern}) == len(want)
    counted = untouched.database.command({"count": "items", "query": {"x": pattern}})
    assert counted["n"] == len(want)
    assert sorted(untouched.distinct("_id", {"x": pattern})) == want
    assert [
        d["_id"] for d in untouched.aggregate([{"$match": {"x": pattern}}, {"$sort": {"_id": 1}}])
    ] == want
    got = branch.update_many({"x": pattern}, {"$set": {"m": 1}})
    assert got.matched_count == copy.update_many({"x": pattern}, {"$set": {"m": 1}}).matched_count
    want_values = sorted(copy.distinct("x", {"x": pattern}))
    assert sorted(branch.distinct("x", {"x": pattern})) == want_values


@pytest.mark.parametrize(
    "projection",
    [
        {"arr": {"$slice": 1}},
        {"arr": {"$slice": [1, 2]}, "x": 1},
        {"arr": {"$elemMatch": {"$gt": 3}}},
        {"t": {"$add": ["$a", "$b"]}},
        {"_id": 0, "t": {"$add": ["$a", "$b"]}},
        {"_id": {"$multiply": ["$a", 2]}, "a": 1},
        {"sub.y": 1},
        {"sub.y": 0, "arr": 0},
    ],
)
def test_projection_operators(client: Client, direct: Client, projection: dict[str, Any]) -> None:
    docs = [
        {"_id": i, "a": i, "b": 2, "x": i % 3, "arr": [i, i + 2, i + 4], "sub": {"y": i, "z": 1}}
        for i in range(12)
    ]
    branch, copy = branch_and_copy(client, direct, docs)
    sort = [("x", -1), ("_id", 1)]
    for flt in ({}, {"a": {"$gte": 3}}):
        got = list(branch.find(flt, projection, sort=sort))
        assert got == list(copy.find(flt, projection, sort=sort)), (flt, projection)
    got = list(branch.find({}, projection, sort=sort, batch_size=2))
    assert got == list(copy.find({}, projection, sort=sort, batch_size=2)), projection
    got = list(branch.find({"arr": 5}, {"arr.$": 1}, sort=sort))
    assert got == list(copy.find({"arr": 5}, {"arr.$": 1}, sort=sort))


def test_projections_of_find_and_modify_and_project(client: Client, direct: Client) -> None:
    docs = [{"_id": i, "a": i, "b": 2, "arr": [i, i + 1]} for i in range(6)]
    branch, copy = branch_and_copy(client, direct, docs)
    projections: list[dict[str, Any]] = [
        {"_id": 1},
        {"a": 0},
        {"arr": {"$slice": 1}},
        {"arr": {"$elemMatch": {"$gt": 3}}},
    ]
    for projection in projections:
        outs = [
            c.find_one_and_update(
                {"_id": 3},
                {"$inc": {"a": 1}},
                projection=projection,
                return_document=ReturnDocument.AFTER,
            )
            for c in (branch, copy)
        ]
        assert outs[0] == outs[1], projection
    pipeline: list[dict[str, Any]] = [
        {"$project": {"_id": 1, "t": {"$add": ["$a", "$b"]}}},
        {"$sort": {"_id": 1}},
    ]
    assert list(branch.aggregate(pipeline)) == list(copy.aggregate(pipeline))


def test_distinct_uses_bson_equality(client: Client, direct: Client) -> None:
    n = next(_names)
    docs: list[dict[str, Any]] = [
        {"_id": 1, "n": {"x": 1}, "m": Int64(2**53), "k": 1},
        {"_id": 2, "n": {"x": 2}, "m": 2**53 + 2, "k": 2.5},
    ]
    client[f"d{n}"].items.insert_many([dict(d) for d in docs])
    argon(client, "createBranch", name=f"d{n}", **{"from": "main"})
    branch = client[f"d{n}@d{n}"].items
    copy = direct[f"dcopy{n}"].items
    added: list[dict[str, Any]] = [
        {"_id": 3, "n": {"x": 1.0}, "m": Int64(2**53 + 1), "k": 1.0},
        {"_id": 4, "n": {"x": Int64(2)}, "m": float(2**53), "k": Int64(3)},
    ]
    copy.insert_many([dict(d) for d in docs + added])
    branch.insert_many([dict(d) for d in added])
    for key in ("n", "m", "k"):
        got, want = branch.distinct(key), copy.distinct(key)
        assert len(got) == len(want), (key, got, want)
        for value in want:
            assert copy.count_documents({key: value}) == branch.count_documents({key: value})
    assert sorted(branch.distinct("m")) == [2**53, 2**53 + 1, 2**53 + 2]
    loose = {"locale": "en", "strength": 1}  # mongod groups the layers' values
    assert len(branch.distinct("n", collation=loose)) == len(copy.distinct("n", collation=loose))


def test_batch_size_streams_through_get_more(
    client: Client, direct: Client, commands: Commands
) -> None:
    docs = [{"_id": i, "x": i % 5} for i in range(150)]
    branch, copy = branch_and_copy(client, direct, docs)
    cases: list[dict[str, Any]] = [
        {"batch_size": 3},
        {},  # mongod's first batch of 101 documents, then getMore
        {"batch_size": 3, "limit": 10, "sort": [("_id", 1)]},
        {"batch_size": 3, "limit": 10, "skip": 4, "sort": [("_id", -1)]},
        {"batch_size": 20, "limit": 10, "sort": [("_id", 1)]},
        {"limit": -7, "sort": [("_id", 1)]},
        {"batch_size": 5, "sort": [("x", 1), ("_id", -1)]},
        {"batch_size": 4, "projection": {"_id": 1}, "sort": [("x", -1), ("_id", 1)]},
        {"batch_size": 7, "no_cursor_timeout": True},
    ]
    for case in cases:
        commands.sent.clear()
        got = list(branch.find({}, **case))
        sent = list(commands.sent)
        assert sorted(got, key=repr) == sorted(copy.find({}, **case), key=repr), case
        if "sort" in case:
            assert got == list(copy.find({}, **case)), case
        many = len(got) > case.get("batch_size", 101) and case.get("limit", 0) >= 0
        assert ("getMore" in sent) == many, (case, sent)
    # Well past one batch: the narrowed view's aggregation streams it.
    more = [{"_id": 1000 + i, "x": i % 5} for i in range(1100)]
    for coll in (branch, copy):
        coll.insert_many([dict(d) for d in more])
    commands.sent.clear()
    got = list(branch.find({}, sort=[("x", 1), ("_id", 1)], batch_size=400))
    assert got == list(copy.find({}, sort=[("x", 1), ("_id", 1)]))
    assert commands.sent.count("getMore") >= 3
    for coll in (branch, copy):
        coll.delete_many({"_id": {"$gte": 1000}})
    commands.sent.clear()
    commands.failures.clear()
    cursor = branch.find({}).batch_size(2)
    assert len([next(cursor), next(cursor), next(cursor)]) == 3
    cursor.close()
    assert "getMore" in commands.sent and "killCursors" in commands.sent
    assert commands.failures == []
    assert branch.count_documents({}) == 149
    natural = list(branch.find({}, {"_id": 1}, sort=[("$natural", 1)], limit=200))
    assert sorted(d["_id"] for d in natural) == sorted(d["_id"] for d in copy.find({}, {"_id": 1}))


def _branch_reads(stack: tuple[Process, Process]) -> dict[str, float]:
    """``argon_branch_reads_total`` by path, from the proxy's /metrics."""
    url = f"http://127.0.0.1:{stack[1].extra['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=30) as resp:
        text = resp.read().decode()
    found = re.findall(r'^argon_branch_reads_total\{path="(\w+)"\} (\S+)$', text, re.M)
    return {path: float(value) for path, value in found}


def test_a_read_of_hundreds_of_documents_streams_from_the_merge(
    stack: tuple[Process, Process], client: Client, direct: Client, commands: Commands
) -> None:
    """Past the first batch, the merged answer is held by the proxy for getMore
    instead of being read again through the slower pushed-down aggregation."""
    docs = [{"_id": i, "x": i % 7} for i in range(400)]
    branch, copy = branch_and_copy(client, direct, docs)
    before = _branch_reads(stack)
    for case in ({}, {"batch_size": 50, "sort": [("x", -1), ("_id", 1)]}):
        commands.sent.clear()
        got = list(branch.find({"_id": {"$lt": 300}}, **case))
        assert sorted(got, key=repr) == sorted(copy.find({"_id": {"$lt": 300}}, **case), key=repr)
        if "sort" in case:
            assert got == list(copy.find({"_id": {"$lt": 300}}, **case))
        assert "getMore" in commands.sent
    after = _branch_reads(stack)
    assert after.get("merged", 0) - before.get("merged", 0) == 2
    assert after.get("pushdown", 0) == before.get("pushdown", 0)
    cursor = branch.find({}).batch_size(10)
    assert len([next(cursor) for _ in range(15)]) == 15
    cursor.close()  # a held cursor is killed like an upstream one
    assert commands.failures == []


def test_list_collections_filters_on_a_branch(client: Client) -> None:
    n = next(_names)
    client[f"lc{n}"].shared.insert_one({"_id": 1})
    argon(client, "createBranch", name=f"lc{n}", **{"from": "main"})
    db = client[f"lc{n}@lc{n}"]
    db.create_collection("only_here")
    db.shared.insert_one({"_id": 2})
    assert db.list_collection_names(filter={"name": {"$regex": "^only"}}) == ["only_here"]
    assert sorted(db.list_collection_names(filter={"type": "collection"})) == [
        "only_here",
        "shared",
    ]
    found = db.list_collection_names(filter={"name": {"$in": ["only_here", "nope"]}})
    assert found == ["only_here"]
    assert db.list_collection_names(filter={"name": {"$regex": "argon"}}) == []
    assert db.list_collection_names(filter={"name": {"$regex": "^sh"}}) == ["shared"]
    assert db.list_collection_names(filter={"name": "only_here"}) == ["only_here"]
    assert db.list_collection_names(filter={"name": {"$ne": "only_here"}}) == ["shared"]


@pytest.mark.parametrize("on_branch", [False, True])
def test_invalid_update_fails_when_nothing_matches(client: Client, on_branch: bool) -> None:
    n = next(_names)
    client[f"u{n}"].items.insert_one({"_id": 1, "a": 1})
    db = f"u{n}"
    if on_branch:
        argon(client, "createBranch", name=f"u{n}", **{"from": "main"})
        db = f"u{n}@u{n}"
    coll = client[db].items
    calls: list[Callable[[], object]] = [
        lambda: coll.update_one({"_id": 99}, {"$foo": {"a": 1}}),
        lambda: coll.update_many({"a": 42}, {"$foo": {"a": 1}}),
        lambda: coll.update_one({"_id": 99}, {"$foo": {"a": 1}}, upsert=True),
        lambda: coll.find_one_and_update({"_id": 99}, {"$foo": {"a": 1}}),
        lambda: coll.find_one_and_update({"_id": 99}, {"$foo": {"a": 1}}, upsert=True),
        lambda: coll.update_one({"_id": 1}, {"$foo": {"a": 1}}),
    ]
    for call in calls:
        with pytest.raises(OperationFailure) as info:
            call()
        assert info.value.code in (2, 9, 52), info.value.details
    assert list(coll.find()) == [{"_id": 1, "a": 1}]


def test_database_level_aggregate_reads_the_branch(client: Client, direct: Client) -> None:
    docs = [{"_id": i, "x": i} for i in range(5)]
    branch, copy = branch_and_copy(client, direct, docs)
    pipeline: list[dict[str, Any]] = [
        {"$documents": [{"k": 0}, {"k": 2}, {"k": 4}]},
        {"$lookup": {"from": "items", "localField": "k", "foreignField": "_id", "as": "hit"}},
        {"$project": {"_id": 0, "k": 1, "hit": 1}},
    ]
    want = list(copy.database.aggregate(pipeline))
    assert [len(d["hit"]) for d in want] == [1, 1, 0]  # _id 4 is deleted, 0 is touched
    assert list(branch.database.aggregate(pipeline)) == want
    main_db = branch.database.name.split("@")[0]
    on_main = list(client[main_db].aggregate(pipeline))
    assert [len(d["hit"]) for d in on_main] == [1, 1, 1]
    assert "touched" not in on_main[0]["hit"][0]
    for db in (client.admin, client[f"admin@{branch.database.name.split('@')[1]}"]):
        ops = list(db.aggregate([{"$currentOp": {}}, {"$limit": 1}]))
        assert isinstance(ops, list)


def test_explain_on_a_branch_shows_the_plan_argon_runs(client: Client) -> None:
    client.explained.items.insert_many([{"_id": i, "a": i} for i in range(5)])
    argon(client, "createBranch", name="explained-b")
    branch = client["explained@explained-b"]
    plain = branch.items.find({"a": 1}).explain()  # unchanged: the find itself
    assert plain["queryPlanner"]["namespace"] == "explained.items"
    branch.items.update_one({"_id": 1}, {"$set": {"a": 10}})
    merged = branch.items.find({"a": {"$gt": 2}}).explain()
    stages = [next(iter(stage)) for stage in merged["stages"]]
    assert "$unionWith" in stages  # the branch's own documents join main's
    piped = branch.command(
        "explain", {"aggregate": "items", "pipeline": [{"$match": {"a": 10}}], "cursor": {}}
    )
    assert "$unionWith" in [next(iter(stage)) for stage in piped["stages"]]
    with pytest.raises(OperationFailure) as info:
        branch.command("explain", {"count": "items", "query": {}})
    assert info.value.code == 115 and "explained-b" in str(info.value)


def test_hints_on_a_branch_name_the_branchs_own_indexes(client: Client) -> None:
    client.hinted.items.insert_many([{"_id": i, "x": i, "y": i % 2} for i in range(6)])
    client.hinted.items.create_index("y")
    argon(client, "createBranch", name="hinted-b")
    items = client["hinted@hinted-b"].items
    items.update_one({"_id": 1}, {"$set": {"x": 10}})  # the branch has an overlay
    items.create_index("x")  # on the branch only
    want = [0, 2, 3, 4, 5, 1]
    assert [d["_id"] for d in items.find().sort("x", 1).hint("x_1")] == want
    assert [d["_id"] for d in items.find().sort("x", 1).hint([("x", 1)])] == want
    assert [d["_id"] for d in items.find({"y": 1}).sort("_id", 1).hint("y_1")] == [1, 3, 5]
    got = items.aggregate([{"$match": {"x": {"$gt": 3}}}, {"$sort": {"_id": 1}}], hint="x_1")
    assert [d["_id"] for d in got] == [1, 4, 5]
    items.create_index([("x", -1)], name="x_down")
    # A scan of the hinted index orders the documents, on mongod; Argon sorts by it.
    assert [d["_id"] for d in items.find().hint("x_down")] == want[::-1]
    with pytest.raises(OperationFailure) as missing:
        list(items.find().hint("z_1"))
    assert missing.value.code == 2
    items.create_index([("y", -1)], name="y_sparse", sparse=True)
    with pytest.raises(OperationFailure) as sparse:
        list(items.find().hint("y_sparse"))
    assert sparse.value.code == 115 and "hinted-b" in str(sparse.value)


def test_let_variables_reach_the_branchs_own_documents(client: Client) -> None:
    """The branch's documents join main's through $unionWith, whose pipeline does not
    see the command's let variables: Argon hands them over."""
    client.letdb.items.insert_many([{"_id": i, "x": i} for i in range(5)])
    argon(client, "createBranch", name="let-b")
    items = client["letdb@let-b"].items
    items.insert_one({"_id": 7, "x": 3})  # the branch's own document
    flt = {"$expr": {"$eq": ["$x", "$$want"]}}
    assert [d["_id"] for d in items.find(flt, let={"want": 3}).sort("_id", 1)] == [3, 7]
    got = items.aggregate([{"$match": flt}, {"$sort": {"_id": 1}}], let={"want": 3})
    assert [d["_id"] for d in got] == [3, 7]
    items.aggregate([{"$match": flt}, {"$out": "picked"}], let={"want": 3})
    assert sorted(d["_id"] for d in client["letdb@let-b"].picked.find()) == [3, 7]
    res = items.update_one(flt, {"$set": {"y": 1}}, let={"want": 3}, sort={"_id": -1})
    assert res.modified_count == 1 and items.find_one({"y": 1}) == {"_id": 7, "x": 3, "y": 1}
    assert client.letdb.items.count_documents({"y": 1}) == 0


def test_distinct_with_a_collation_on_a_branch(client: Client) -> None:
    client.coldb.items.insert_many([{"_id": 1, "s": "PING"}, {"_id": 2, "s": "pong"}])
    argon(client, "createBranch", name="col-b")
    items = client["coldb@col-b"].items
    items.insert_many([{"_id": 3, "s": "ping"}, {"_id": 4, "s": "Pang"}])
    folded = Collation("en_US", strength=2)
    got = items.distinct("s", collation=folded)
    assert sorted(v.lower() for v in got) == ["pang", "ping", "pong"]
    assert sorted(items.distinct("s")) == ["PING", "Pang", "ping", "pong"]
    items.delete_many({"s": "pong"})
    assert sorted(v.lower() for v in items.distinct("s", collation=folded)) == ["pang", "ping"]


def test_snapshot_sessions_on_a_branch_read_one_point(
    stack: tuple[Process, Process], client: Client
) -> None:
    """A snapshot session's first read fixes its point (atClusterTime), which the
    driver sends with every later read: Argon's own replies must report it, and its
    reads of the branch's layers share it."""
    client.snapdb.items.insert_many([{"_id": i, "x": i} for i in range(4)])
    argon(client, "createBranch", name="snap-b")
    client["snapdb@snap-b"].items.insert_one({"_id": 9, "x": 9})
    sent = Sent()
    watched: Client = MongoClient(stack[1].uri, event_listeners=[sent])
    try:
        items = watched["snapdb@snap-b"].items
        with watched.start_session(snapshot=True) as s:
            assert sorted(items.distinct("x", session=s)) == [0, 1, 2, 3, 9]
            assert [d["_id"] for d in items.find(session=s).sort("_id", 1)] == [0, 1, 2, 3, 9]
        find = next(c for c in sent.commands if "find" in c)
        assert find["readConcern"]["level"] == "snapshot"
        assert find["readConcern"].get("atClusterTime") is not None
    finally:
        watched.close()


class Sent(monitoring.CommandListener):
    """Every command a client sent."""

    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_min_and_max_bound_the_hinted_index_as_mongod_does(client: Client, direct: Client) -> None:
    values: list[Any] = [None, -1, 0, 1.5, 2, 3, "a", "b", [1], {"k": 1}, True]
    rng = random.Random(7)
    docs: list[dict[str, Any]] = []
    for i in range(60):
        doc: dict[str, Any] = {"_id": i, "j": rng.choice(values[1:6])}
        if i % 7:  # some documents miss the second field: it keys as null
            doc["k"] = rng.choice(values)
        docs.append(doc)
    branch, copy = branch_and_copy(client, direct, docs)
    branch.insert_one({"_id": 100, "j": 2, "k": "b"})  # the branch's own document
    copy.insert_one({"_id": 100, "j": 2, "k": "b"})
    for key in ([("j", 1), ("k", 1)], [("j", -1), ("k", 1)], [("j", 1)]):
        for coll in (branch, copy):
            coll.create_index(key)
        for _ in range(12):
            low = [(name, rng.choice(values[:6])) for name, _ in key]
            high = [(name, rng.choice(values)) for name, _ in key]
            cases: list[tuple[Any, Any]] = [(low, None), (None, high), (low, high)]
            for lower, upper in cases:
                # Equal keys come in no particular order: compare the documents found.
                found: list[list[Any]] = []
                for coll in (copy, branch):
                    cursor = coll.find({}, {"_id": 1}).hint(key)
                    cursor = cursor.min(lower) if lower else cursor
                    cursor = cursor.max(upper) if upper else cursor
                    found.append(sorted(d["_id"] for d in cursor))
                assert found[1] == found[0], (key, lower, upper)
    with pytest.raises(OperationFailure) as info:
        branch.find({}).hint([("j", 1)]).min([("k", 1)]).to_list()
    assert info.value.code == 51174
