"""Garbage collection never breaks a live branch, tag or snapshot."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from ..stacks import argon, branch_id, own_client, own_stack

Client = MongoClient[dict[str, Any]]


@pytest.fixture
def c() -> Iterator[Client]:
    """A fresh upstream and proxy: GC looks at everything in them."""
    with own_client() as client:
        yield client


def docs(c: Client, db: str, coll: str = "items") -> list[dict[str, Any]]:
    return list(c[db][coll].find({}, sort=[("_id", 1)]))


def test_gc_keeps_what_live_branches_tags_and_snapshots_need(c: Client) -> None:
    c.g1.items.insert_many([{"_id": i, "v": 0} for i in range(3)])  # old history
    early = argon(c, "status")["lsn"]
    c.g1.items.update_one({"_id": 0}, {"$set": {"v": "tagged"}})
    argon(c, "createTag", name="g1-tag", branch="main")
    c.g1.items.update_one({"_id": 1}, {"$set": {"v": 1}})
    argon(c, "createBranch", name="g1-live", **{"from": "main"})
    c.g1.items.update_one({"_id": 2}, {"$set": {"v": 2}})
    argon(c, "createBranch", name="g1-expired", **{"from": "main"}, ttl=0)
    argon(c, "createSnapshot", name="g1-snap", branch="main")
    assert docs(c, f"g1@main@lsn-{early}")  # builds an internal time-travel snapshot

    preview = argon(c, "gc", dryRun=True, retainSeconds=0, snapshotSeconds=0)["gc"]
    assert preview["expired_branches"] == ["g1-expired"]
    assert "g1-expired" in [b["name"] for b in argon(c, "listBranches")["branches"]]
    out = argon(c, "gc", retainSeconds=0, snapshotSeconds=0)["gc"]
    assert out["expired_branches"] == ["g1-expired"]
    assert f"main@lsn-{early}" in out["snapshots_removed"]
    assert out["wal_removed"] >= 1
    listed = [b["name"] for b in argon(c, "listBranches", all=True)["branches"]]
    assert "g1-expired" not in listed and "g1-live" in listed and "g1-snap" in listed

    # Everything still needed still reads right.
    assert [d["v"] for d in docs(c, "g1@g1-tag")] == ["tagged", 0, 0]
    assert [d["v"] for d in docs(c, "g1@g1-live")] == ["tagged", 1, 0]
    assert [d["v"] for d in docs(c, "g1@g1-snap")] == ["tagged", 1, 2]
    diff = argon(c, "diff", **{"from": "g1-tag", "to": "main", "db": "g1"})["diff"]
    assert diff["summary"]["modified"] == 2
    # Before the floor, time travel says so instead of answering wrongly.
    with pytest.raises(OperationFailure) as err:
        docs(c, f"g1@main@lsn-{early}")
    assert err.value.code == 2005


def test_gc_removes_every_entry_of_a_deleted_branch() -> None:
    """Past retention, a deleted branch's WAL entries go, all of them (the entries
    of one transaction carry its time on the last only: wal.py)."""
    with own_stack() as (upstream, proxy):
        c: Client = MongoClient(proxy.uri)
        direct: Client = MongoClient(upstream.uri)
        try:
            argon(c, "createBranch", name="gone")
            gone = branch_id(direct, "gone")
            c["g2@gone"].items.insert_many([{"_id": i} for i in range(3)])  # one transaction
            argon(c, "deleteBranch", name="gone")
            assert direct["__argon"].wal.count_documents({"branch_id": gone}) == 3
            argon(c, "gc", retainSeconds=0, snapshotSeconds=0)
            assert direct["__argon"].wal.count_documents({"branch_id": gone}) == 0
        finally:
            c.close()
            direct.close()
