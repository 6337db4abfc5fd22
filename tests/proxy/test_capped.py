"""Capped collections of main: written through the WAL though mongod never
writes them in a transaction, with children kept isolated."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import CursorType, MongoClient
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from ..stacks import Client, argon, own_stack


@pytest.fixture(scope="module")
def clients() -> Iterator[tuple[Client, Client]]:
    """(direct, through Argon)."""
    with own_stack() as (up, proxy):
        direct: Client = MongoClient(up.uri)
        client: Client = MongoClient(proxy.uri)
        try:
            yield direct, client
        finally:
            direct.close()
            client.close()


def _wal(direct: Client, ns: str) -> list[dict[str, Any]]:
    return list(direct["__argon"].wal.find({"ns": ns}, sort=[("_id", 1)]))


def test_inserts_into_a_capped_collection_are_logged_and_confirmed(
    clients: tuple[Client, Client],
) -> None:
    direct, client = clients
    db = client.capped_db
    db.create_collection("events", capped=True, size=64 * 1024, max=5)
    events = db.events
    events.insert_one({"_id": 0, "n": 0})
    argon(client, "createBranch", name="cap-child", **{"from": "main"})
    events.insert_many([{"_id": i, "n": i} for i in range(1, 4)])
    with pytest.raises(DuplicateKeyError):
        events.insert_one({"_id": 2, "n": 2})
    with pytest.raises(BulkWriteError) as info:
        events.insert_many([{"_id": 4}, {"_id": 1}, {"_id": 5}], ordered=False)
    assert info.value.details["nInserted"] == 2
    assert [e["index"] for e in info.value.details["writeErrors"]] == [1]
    for i in range(6, 9):
        events.insert_one({"_id": i, "n": i})
    # mongod keeps the newest five, in insertion order.
    assert [d["_id"] for d in events.find()] == [4, 5, 6, 7, 8]
    entries = _wal(direct, "capped_db.events")
    assert [e["doc_id"] for e in entries] == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert not [e for e in entries if "unconfirmed" in e]
    assert [e["op"] for e in entries] == ["i"] * 9
    # mongod's own eviction of old documents is not a write through Argon: it
    # has no WAL entry, and children read main's collection, so they see it too.
    child = client["capped_db@cap-child"].events
    assert [d["_id"] for d in child.find()] == []


def test_children_do_not_see_mains_later_capped_inserts(clients: tuple[Client, Client]) -> None:
    _direct, client = clients
    db = client.capped_iso
    db.create_collection("events", capped=True, size=64 * 1024)
    db.events.insert_many([{"_id": 0}, {"_id": 1}])
    argon(client, "createBranch", name="cap-iso", **{"from": "main"})
    db.events.insert_many([{"_id": 2}, {"_id": 3}])
    db.events.insert_one({"_id": 4})
    child = client["capped_iso@cap-iso"].events
    assert [d["_id"] for d in child.find()] == [0, 1]
    assert child.count_documents({}) == 2
    assert [d["_id"] for d in db.events.find()] == [0, 1, 2, 3, 4]


def test_a_tailable_cursor_follows_inserts_through_argon(clients: tuple[Client, Client]) -> None:
    _direct, client = clients
    db = client.tail_db
    db.create_collection("log", capped=True, size=64 * 1024)
    db.log.insert_one({"_id": 0})
    cursor = db.log.find(cursor_type=CursorType.TAILABLE)
    assert [d["_id"] for d in cursor] == [0]
    db.log.insert_many([{"_id": 1}, {"_id": 2}])
    assert [d["_id"] for d in cursor] == [1, 2]
    assert cursor.alive
    cursor.close()


def test_other_writes_to_a_capped_collection_are_refused_clearly(
    clients: tuple[Client, Client],
) -> None:
    _direct, client = clients
    db = client.capped_other
    db.create_collection("events", capped=True, size=64 * 1024)
    db.events.insert_one({"_id": 0, "n": 0})
    for write in (
        lambda: db.events.update_one({"_id": 0}, {"$set": {"n": 1}}),
        lambda: db.events.delete_one({"_id": 0}),
        lambda: db.events.find_one_and_update({"_id": 0}, {"$set": {"n": 1}}),
    ):
        with pytest.raises(OperationFailure) as info:
            write()
        assert info.value.code == 115
        assert "capped collection capped_other.events" in str(info.value)
        assert "'main'" in str(info.value)
    assert db.events.find_one() == {"_id": 0, "n": 0}
