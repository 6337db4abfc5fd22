"""Bundles: a branch with many children freezes its writes into shared hidden
layers, not into each child, and every child still reads what it read.

Each test has its own upstream and proxy (default ``bundle_at``: 4), so the
upstream's own collections and ``__argon.branches`` show what was stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient

from ..stacks import argon, own_clients

Client = MongoClient[dict[str, Any]]
DB = "bun"


@pytest.fixture
def stack() -> Iterator[tuple[Client, Client]]:
    """``(proxy client, direct upstream client)``."""
    with own_clients() as (direct, proxy):
        yield proxy, direct


def _docs(client: Client, branch: str, coll: str = "items") -> list[dict[str, Any]]:
    db = DB if branch == "main" else f"{DB}@{branch}"
    return sorted(client[db][coll].find(), key=lambda d: d["_id"])


def _overlays(direct: Client) -> list[str]:
    return [n for n in direct[DB].list_collection_names() if n.startswith("__argon.")]


def _bundles(direct: Client) -> list[dict[str, Any]]:
    return list(direct["__argon"].branches.find({"bundle": True}))


def _fork(proxy: Client, names: list[str], seen: dict[str, list[dict[str, Any]]]) -> None:
    for name in names:
        argon(proxy, "createBranch", name=name)
        seen[name] = _docs(proxy, "main")


def _check(proxy: Client, seen: dict[str, list[dict[str, Any]]]) -> None:
    for name, docs in seen.items():
        assert _docs(proxy, name) == docs, name


def test_a_write_of_main_freezes_into_one_bundle_not_each_child(
    stack: tuple[Client, Client],
) -> None:
    proxy, direct = stack
    main = proxy[DB].items
    main.insert_many([{"_id": i, "v": 0} for i in range(5)])
    seen: dict[str, list[dict[str, Any]]] = {}
    _fork(proxy, [f"a{i}" for i in range(6)], seen)
    main.update_one({"_id": 1}, {"$set": {"v": 1}})
    main.insert_one({"_id": 10, "v": 0})
    _fork(proxy, [f"b{i}" for i in range(6)], seen)
    main.delete_one({"_id": 2})
    main.update_one({"_id": 1}, {"$set": {"v": 2}})
    _check(proxy, seen)
    # Twelve children, two bundles (the second holds the first): two overlays of
    # main's collection, where a freeze per child gives twelve.
    assert len(_overlays(direct)) == 2
    assert sorted(b["depth"] for b in _bundles(direct)) == [1, 2]
    assert _docs(proxy, "main") == sorted(main.find(), key=lambda d: d["_id"])


def test_children_of_a_bundle_write_merge_and_travel_in_time(
    stack: tuple[Client, Client],
) -> None:
    proxy, _ = stack
    main = proxy[DB].items
    main.insert_many([{"_id": i, "v": 0} for i in range(4)])
    seen: dict[str, list[dict[str, Any]]] = {}
    _fork(proxy, [f"c{i}" for i in range(5)], seen)
    main.update_one({"_id": 0}, {"$set": {"v": "main"}})  # bundles c0..c4
    c0 = proxy[f"{DB}@c0"].items
    c0.update_one({"_id": 1}, {"$set": {"v": "c0"}})
    c0.delete_one({"_id": 3})
    seen["c0"] = [{"_id": 0, "v": 0}, {"_id": 1, "v": "c0"}, {"_id": 2, "v": 0}]
    lsn = argon(proxy, "status")["lsn"]
    main.update_one({"_id": 1}, {"$set": {"v": "main again"}})
    _check(proxy, seen)
    assert _docs(proxy, f"c0@lsn-{lsn}") == seen["c0"]
    merged = argon(proxy, "merge", source="c0", into="main", strategy="theirs")["merge"]
    assert merged["status"] == "applied"
    assert proxy[DB].items.find_one({"_id": 1}) == {"_id": 1, "v": "c0"}
    assert proxy[DB].items.find_one({"_id": 3}) is None
    # Main's merge is a write of main: the other children still read their fork.
    _check(proxy, {k: v for k, v in seen.items() if k != "c0"})
    # A grandchild of a bundled child reads its parent through the bundle too.
    argon(proxy, "createBranch", name="c1/kid", **{"from": "c1"})
    assert _docs(proxy, "c1~kid") == seen["c1"]


def test_deleting_every_child_deletes_their_bundles(stack: tuple[Client, Client]) -> None:
    proxy, direct = stack
    main = proxy[DB].items
    main.insert_many([{"_id": i} for i in range(3)])
    seen: dict[str, list[dict[str, Any]]] = {}
    _fork(proxy, [f"d{i}" for i in range(4)], seen)
    main.insert_one({"_id": 5})
    _fork(proxy, [f"e{i}" for i in range(4)], seen)
    main.insert_one({"_id": 6})
    assert len(_bundles(direct)) == 2
    for name in sorted(seen):
        argon(proxy, "deleteBranch", name=name)
    assert _bundles(direct) == []
    assert _overlays(direct) == []
    assert [b["name"] for b in argon(proxy, "listBranches")["branches"]] == ["main"]


def test_children_on_either_side_of_a_drop_on_main_keep_their_collection(
    stack: tuple[Client, Client],
) -> None:
    """Children forked before main dropped a collection read the archive of it;
    children forked after read main's new one: they never share a bundle."""
    proxy, direct = stack
    main = proxy[DB].items
    main.insert_many([{"_id": i, "old": True} for i in range(3)])
    seen: dict[str, list[dict[str, Any]]] = {}
    _fork(proxy, [f"before{i}" for i in range(3)], seen)
    main.drop()
    main.insert_one({"_id": 0, "new": True})
    _fork(proxy, [f"after{i}" for i in range(3)], seen)
    main.insert_one({"_id": 1, "new": True})
    main.update_one({"_id": 0}, {"$set": {"changed": True}})
    _check(proxy, seen)
    assert len(_bundles(direct)) == 2
    for bundle in _bundles(direct):
        assert len({m["name"].startswith("before") for m in bundle["members"]}) == 1


def test_a_transaction_commits_across_its_parents_children_being_bundled(
    stack: tuple[Client, Client],
) -> None:
    """Children moved under a new bundle while a client's transaction writes their
    parent read exactly what they read before: the commit must go through."""
    proxy, direct = stack
    main = proxy[DB]
    main.items.insert_many([{"_id": i, "v": 0} for i in range(3)])
    main.other.insert_one({"_id": 0})
    seen: dict[str, list[dict[str, Any]]] = {}
    _fork(proxy, [f"t{i}" for i in range(5)], seen)
    with proxy.start_session() as session:
        session.start_transaction()
        main.items.update_one({"_id": 1}, {"$set": {"v": "txn"}}, session=session)
        main.other.insert_one({"_id": 1})  # another collection: bundles t0..t4
        assert len(_bundles(direct)) == 1
        session.commit_transaction()
    assert main.items.find_one({"_id": 1}) == {"_id": 1, "v": "txn"}
    _check(proxy, seen)
