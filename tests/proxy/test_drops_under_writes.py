"""Drops while writes go on: neither waits for the other's transaction to expire.

Every write Argon makes is an upstream transaction. A drop of the collection
(or its database) that reaches the upstream while one of them is open waits
for it; on the test upstream the drop holds what the transaction needs to end,
so both would wait until the transaction's lifetime runs out. Argon runs
drops under its writers' lock instead, on main and on branches. The proxy here
gives up on the upstream after a few seconds, so such a wait fails a command
instead of hanging the test.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from ..processes import Process, start_proxy, start_upstream
from ..stacks import Client, argon

ROUNDS = 25


@pytest.fixture(scope="module")
def proxy() -> Iterator[Process]:
    up = start_upstream()
    try:
        proxy = start_proxy(up.uri, env={"ARGON_UPSTREAM_TIMEOUT": "8"})
        try:
            yield proxy
        finally:
            proxy.stop()
    finally:
        up.stop()


def _write_until(stop: threading.Event, coll: Any, failures: list[BaseException]) -> None:
    """Write to ``coll`` (one-statement writes, each its own transaction) until told."""
    i = 0
    while not stop.is_set() and i < 5000:
        try:
            coll.insert_one({"i": i})
            coll.update_one({"i": i}, {"$set": {"seen": True}})
        except PyMongoError as exc:  # a write racing a drop may fail; it must not hang
            if "upstream_timeout" in str(exc):
                failures.append(exc)
                return
        i += 1


@pytest.mark.parametrize("on_branch", [False, True])
@pytest.mark.parametrize("what", ["collection", "database"])
def test_drops_racing_writes_never_wait_for_a_transaction(
    proxy: Process, on_branch: bool, what: str
) -> None:
    client: Client = MongoClient(proxy.uri)
    db_name = f"racing_{what}"
    if on_branch:
        name = f"race-{what}"
        argon(client, "createBranch", name=name)
        db_name = f"{db_name}@{name}"
    writer: Client = MongoClient(proxy.uri)
    stop = threading.Event()
    failures: list[BaseException] = []
    thread = threading.Thread(
        target=_write_until, args=(stop, writer[db_name].items, failures), daemon=True
    )
    thread.start()
    try:
        for _ in range(ROUNDS):
            if what == "database":
                client.drop_database(db_name)
            else:
                client[db_name].drop_collection("items")
            client[db_name].other.insert_one({"round": True})
    finally:
        stop.set()
        thread.join()
        writer.close()
        client.close()
    assert failures == []
