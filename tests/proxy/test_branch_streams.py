"""Change streams on a branch report the branch's own changes, shaped exactly as
mongod reports the same changes to a plain collection, and nothing of main's or
another branch's."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import OperationFailure

from ..processes import Process
from ..stacks import argon, own_stack

Client = MongoClient[dict[str, Any]]
Coll = Collection[dict[str, Any]]
# What differs between two streams however alike their changes: where and when (and
# the upstream session of Argon's own transaction, on main's plain collection).
_POSITION = ("_id", "clusterTime", "wallTime", "lsid", "txnNumber")


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Process, Process]]:
    with own_stack() as pair:
        yield pair


@pytest.fixture
def client(stack: tuple[Process, Process]) -> Iterator[Client]:
    c: Client = MongoClient(stack[1].uri)
    yield c
    c.close()


def _drain(stream: Any, count: int) -> list[dict[str, Any]]:
    """The next ``count`` events (bounded tries; each waits max_await_time_ms)."""
    events: list[dict[str, Any]] = []
    for _ in range(300):
        if len(events) == count:
            break
        event = stream.try_next()
        if event is not None:
            events.append(event)
    return events


def _shape(event: dict[str, Any]) -> dict[str, Any]:
    """An event without its position, the namespace's database made generic."""
    out = {k: v for k, v in event.items() if k not in _POSITION}
    if "ns" in out:
        out["ns"] = {**out["ns"], "db": "-"}
    return out


def _changes(coll: Coll) -> None:
    """Every kind of document change, some operators of each kind."""
    coll.insert_one({"_id": 1, "a": 1, "sub": {"x": 1, "y": [1, 2]}, "tags": ["t"]})
    coll.insert_many([{"_id": 2, "a": 2}, {"_id": 3, "a": 3}])
    coll.update_one({"_id": 1}, {"$set": {"sub.x": 5, "b": "new"}, "$unset": {"a": ""}})
    coll.update_one({"_id": 1}, {"$push": {"tags": "u"}, "$inc": {"sub.y.0": 1}})
    coll.update_many({"a": {"$gte": 2}}, {"$mul": {"a": 2.5}})
    coll.replace_one({"_id": 2}, {"whole": True})
    coll.find_one_and_update({"_id": 3}, {"$set": {"c": None}})
    coll.find_one_and_replace({"_id": 3}, {"again": 1})
    coll.delete_one({"_id": 2})
    coll.find_one_and_delete({"_id": 3})
    coll.update_one({"_id": 9}, {"$set": {"up": 1}}, upsert=True)


def _watch_both(
    client: Client, db: str, watch: Callable[[Coll], Any], count: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The events of the same changes on a plain collection and on a branch's."""
    argon(client, "createBranch", name=f"{db}-b")
    plain, branched = client[f"{db}plain"].items, client[f"{db}@{db}-b"].items
    client[db].items.insert_one({"_id": "on-main-before"})
    with watch(plain) as on_plain, watch(branched) as on_branch:
        client[db].items.insert_one({"_id": "on-main-after"})  # not the branch's
        _changes(plain)
        _changes(branched)
        return _drain(on_plain, count), _drain(on_branch, count)


def test_a_branch_streams_its_changes_exactly_as_mongod(client: Client) -> None:
    plain, branch = _watch_both(client, "cs1", lambda c: c.watch(max_await_time_ms=50), 13)
    assert len(plain) == 13 and [_shape(e) for e in branch] == [_shape(e) for e in plain]
    kinds = [e["operationType"] for e in branch]
    assert kinds.count("replace") == 2 and kinds.count("update") == 5
    assert branch[0]["ns"] == {"db": "cs1@cs1-b", "coll": "items"}


def test_full_documents_and_images_follow_the_options(client: Client) -> None:
    def watch(c: Coll) -> Any:
        return c.watch(
            full_document="updateLookup",
            full_document_before_change="whenAvailable",
            max_await_time_ms=50,
        )

    plain, branch = _watch_both(client, "cs2", watch, 13)
    assert [_shape(e) for e in branch] == [_shape(e) for e in plain]
    looked_up = [e for e in branch if e["operationType"] == "update"]
    assert looked_up and all("fullDocument" in e for e in looked_up)
    assert all(e.get("fullDocumentBeforeChange", None) is None for e in branch)
    with pytest.raises(OperationFailure) as info:
        client["cs2@cs2-b"].items.watch(full_document="sometimes")
    assert info.value.code == 2


def test_main_and_sibling_changes_stay_out_and_resume_tokens_resume(client: Client) -> None:
    client.cs3.items.insert_one({"_id": 0})
    argon(client, "createBranch", name="cs3-a")
    argon(client, "createBranch", name="cs3-b")
    on_a, on_b = client["cs3@cs3-a"].items, client["cs3@cs3-b"].items
    with on_a.watch(max_await_time_ms=50) as stream:
        client.cs3.items.insert_one({"_id": "main"})
        on_b.insert_one({"_id": "sibling"})
        on_a.insert_one({"_id": "mine-1"})
        first = _drain(stream, 1)
        on_a.insert_one({"_id": "mine-2"})
        on_a.insert_one({"_id": "mine-3"})
        assert [e["documentKey"]["_id"] for e in first + _drain(stream, 2)] == [
            "mine-1",
            "mine-2",
            "mine-3",
        ]
    with on_a.watch(resume_after=first[0]["_id"], max_await_time_ms=50) as resumed:
        again = _drain(resumed, 2)
    assert [e["documentKey"]["_id"] for e in again] == ["mine-2", "mine-3"]


def test_a_dropped_collection_ends_its_stream_with_invalidate(client: Client) -> None:
    client.cs4.items.insert_one({"_id": 0})
    argon(client, "createBranch", name="cs4-b")
    items = client["cs4@cs4-b"].items
    with items.watch(max_await_time_ms=50) as stream:
        items.insert_one({"_id": 1})
        items.drop()
        items.insert_one({"_id": 2})  # after the end: not this stream's
        events = _drain(stream, 3)
        assert [e["operationType"] for e in events] == ["insert", "drop", "invalidate"]
        assert events[1]["ns"] == {"db": "cs4@cs4-b", "coll": "items"}
        assert not stream.alive
    with pytest.raises(OperationFailure) as info:
        items.watch(resume_after=events[2]["_id"]).try_next()
    assert info.value.code == 260
    with items.watch(start_after=events[2]["_id"], max_await_time_ms=50) as after:
        assert [e["documentKey"] for e in _drain(after, 1)] == [{"_id": 2}]


def test_database_and_cluster_streams_cover_the_branchs_collections(client: Client) -> None:
    client.cs5.a.insert_one({"_id": 0})
    argon(client, "createBranch", name="cs5-b")
    db = client["cs5@cs5-b"]
    with (
        db.watch(max_await_time_ms=50) as on_db,
        client["admin@cs5-b"].watch(max_await_time_ms=50) as on_cluster,
    ):
        client.cs5.a.insert_one({"_id": "main"})
        db.a.insert_one({"_id": 1})
        db.b.insert_one({"_id": 2})
        client["other@cs5-b"].c.insert_one({"_id": 3})
        db.b.drop()
        seen = [(e["operationType"], e["ns"]) for e in _drain(on_db, 3)]
        assert seen == [
            ("insert", {"db": "cs5@cs5-b", "coll": "a"}),
            ("insert", {"db": "cs5@cs5-b", "coll": "b"}),
            ("drop", {"db": "cs5@cs5-b", "coll": "b"}),
        ]
        everywhere = [e["ns"]["coll"] for e in _drain(on_cluster, 4)]
        assert everywhere == ["a", "b", "c", "b"]


def test_the_clients_stages_run_on_the_reshaped_events(client: Client) -> None:
    argon(client, "createBranch", name="cs6-b")
    items = client["cs6@cs6-b"].items
    only_updates: list[dict[str, Any]] = [
        {"$match": {"operationType": "update"}},
        {"$project": {"documentKey": 1}},
    ]
    with items.watch(only_updates, max_await_time_ms=50) as stream:
        items.insert_one({"_id": 1})
        items.update_one({"_id": 1}, {"$set": {"x": 1}})
        events = _drain(stream, 1)
        assert [sorted(e) for e in events] == [["_id", "documentKey"]]
    with items.watch([{"$project": {"_id": 0}}], max_await_time_ms=50) as broken:
        items.insert_one({"_id": 2})
        with pytest.raises(OperationFailure) as info:
            _drain(broken, 1)
    assert info.value.code == 280
    assert info.value.details is not None
    assert info.value.details["codeName"] == "ChangeStreamFatalError"
    with pytest.raises(OperationFailure) as refused:
        items.watch([{"$lookup": {"from": "x", "as": "y", "pipeline": []}}])
    assert refused.value.code == 20
    with pytest.raises(OperationFailure) as unknown:  # parsed before it is judged
        items.watch([{"$unsupported": "foo"}])
    assert unknown.value.code == 40324


def test_a_stream_cannot_open_in_a_transaction(client: Client) -> None:
    argon(client, "createBranch", name="cs7-b")
    client["cs7@cs7-b"].items.insert_one({"_id": 1})
    with client.start_session() as s:
        s.start_transaction()
        with pytest.raises(OperationFailure) as info:
            client["cs7@cs7-b"].items.watch(session=s)
        assert info.value.code == 263
        s.abort_transaction()  # the failed command ended it, as on mongod


def test_dropping_a_database_ends_its_stream_as_on_mongod(client: Client) -> None:
    argon(client, "createBranch", name="cs8-b")
    db = client["cs8@cs8-b"]
    db.a.insert_one({"_id": 1})
    db.b.insert_one({"_id": 2})
    with (
        db.watch(max_await_time_ms=50) as on_db,
        client["admin@cs8-b"].watch(max_await_time_ms=50) as on_cluster,
    ):
        client.drop_database(db)
        kinds = [(e["operationType"], e.get("ns")) for e in _drain(on_db, 4)]
        assert sorted(kinds[:2], key=repr) == [
            ("drop", {"db": "cs8@cs8-b", "coll": "a"}),
            ("drop", {"db": "cs8@cs8-b", "coll": "b"}),
        ]
        assert kinds[2] == ("dropDatabase", {"db": "cs8@cs8-b"})
        assert kinds[3][0] == "invalidate" and not on_db.alive
        client["other@cs8-b"].c.insert_one({"_id": 3})
        seen = [e["operationType"] for e in _drain(on_cluster, 4)]
        assert seen == ["drop", "drop", "dropDatabase", "insert"]  # no end for the cluster's


def test_expanded_events_and_renames_as_mongod_reports_them(
    client: Client, stack: tuple[Process, Process]
) -> None:
    direct: Client = MongoClient(stack[0].uri)  # renames on main wait for the branches
    plain_db, branch_db = direct.cs9plain, client["cs9@cs9-b"]
    argon(client, "createBranch", name="cs9-b")
    for db in (plain_db, branch_db):
        db.items.insert_one({"_id": 0})

    def ddl(db: Any) -> None:
        db.items.insert_one({"_id": 1, "a": {"1": 0}})
        db.items.update_one({"_id": 1}, {"$set": {"a.1": 2}})
        db.items.create_index("x", name="x_1")
        db.items.drop_index("x_1")
        db.create_collection("fresh")
        db.items.rename("moved")

    def shape(event: dict[str, Any]) -> dict[str, Any]:
        out = _shape(event)
        out.pop("collectionUUID", None)
        for field in ("ns", "to"):
            if field in out:
                out[field] = {**out[field], "db": "-"}
        described = out.get("operationDescription")
        if isinstance(described, dict):
            out["operationDescription"] = {
                k: ({**v, "db": "-"} if k == "to" else v)
                for k, v in described.items()
                if k not in ("dropTarget",)
            }
        return out

    found: list[list[dict[str, Any]]] = []
    for db in (plain_db, branch_db):
        with (
            db.watch(show_expanded_events=True, max_await_time_ms=50) as expanded,
            db.items.watch(max_await_time_ms=50) as plain,
        ):
            ddl(db)
            events = _drain(expanded, 6)
            assert all("collectionUUID" in e for e in events), events
            found.append([shape(e) for e in events])
            on_items = [e["operationType"] for e in _drain(plain, 4)]
            assert on_items == ["insert", "update", "rename", "invalidate"]
    assert found[1] == found[0]
    assert [e["operationType"] for e in found[1]] == [
        "insert",
        "update",
        "createIndexes",
        "dropIndexes",
        "create",
        "rename",
    ]
    assert found[1][1]["updateDescription"]["disambiguatedPaths"] == {"a.1": ["a", "1"]}
    direct.close()
