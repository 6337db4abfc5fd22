"""How many round trips to the upstream a write costs Argon, read through `/metrics`.

`argon_upstream_round_trips_total{on="request"}` counts the exchanges of
Argon's own commands on a client request's connection. A statement that can
change one document at most leases its LSNs behind its transaction's first
command, on the same connection, so the lease costs no round trip of its own:
an `insert_one` on main is the insert (with the lease behind it), the WAL
entry with the retry record, and the commit.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pymongo import MongoClient

from ..processes import Process
from ..stacks import argon, own_stack

Client = MongoClient[dict[str, Any]]
TIMES = 10


def _client(uri: str) -> Client:
    return MongoClient(uri)


@pytest.fixture(scope="module")
def proxy() -> Iterator[Process]:
    with own_stack() as (_up, proxy):
        yield proxy


def _round_trips(proxy: Process) -> float:
    url = f"http://127.0.0.1:{proxy.extra['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=30) as resp:
        text = resp.read().decode()
    found = re.search(
        r'^argon_upstream_round_trips_total\{on="request"\} (\S+)$', text, re.MULTILINE
    )
    return float(found.group(1)) if found else 0.0


def _per_write(proxy: Process, write: Callable[[int], object]) -> float:
    write(-1)  # the first one may set things up (an overlay, a cache)
    before = _round_trips(proxy)
    for i in range(TIMES):
        write(i)
    cost = (_round_trips(proxy) - before) / TIMES
    assert cost >= 1  # a write takes at least its commit
    return cost


def test_an_insert_on_main_costs_three_round_trips(proxy: Process) -> None:
    with _client(proxy.uri) as c:
        coll = c.trips.main_inserts
        assert _per_write(proxy, lambda i: coll.insert_one({"_id": i})) == 3


def test_an_update_by_id_on_main_costs_four(proxy: Process) -> None:
    # Its pre-image read (with the lease), the update with the post-image read,
    # the WAL entry, the commit.
    with _client(proxy.uri) as c:
        coll = c.trips.main_updates
        coll.insert_many([{"_id": i, "n": 0} for i in range(-1, TIMES)])
        cost = _per_write(proxy, lambda i: coll.update_one({"_id": i}, {"$inc": {"n": 1}}))
        assert cost <= 4


def test_single_writes_on_a_branch_cost_five(proxy: Process) -> None:
    # The check of the caches (epochs and versions) with the read of every layer
    # and the lease, all in the transaction's first round trip (no sync before
    # it); the copy and update with the post-image read (an insert: the insert);
    # the version bump with the WAL entry; the commit. The unique indexes are
    # cached.
    with _client(proxy.uri) as c:
        c.trips.on_branch.insert_many([{"_id": i, "n": 0} for i in range(-1, TIMES)])
        argon(c, "createBranch", name="trips")
        coll = c["trips@trips"].on_branch
        assert _per_write(proxy, lambda i: coll.insert_one({"_id": 100 + i})) <= 5
        assert _per_write(proxy, lambda i: coll.update_one({"_id": i}, {"$inc": {"n": 1}})) <= 5
        assert _per_write(proxy, lambda i: coll.delete_one({"_id": 100 + i})) <= 5
        assert coll.count_documents({}) == TIMES + 2 - 1  # inserted -1 stays
        assert [d["n"] for d in coll.find({"_id": {"$gte": 0, "$lt": TIMES}})] == [1] * TIMES


def test_a_read_by_id_on_a_branch_costs_one(proxy: Process) -> None:
    # The check that the branch's caches are current travels with the read.
    with _client(proxy.uri) as c:
        c.trips.branch_reads.insert_many([{"_id": i, "n": 0} for i in range(-1, TIMES)])
        argon(c, "createBranch", name="trip-reads")
        coll = c["trips@trip-reads"].branch_reads
        coll.update_one({"_id": 0}, {"$set": {"n": 1}})  # the branch's own version of one
        assert _per_read(proxy, lambda i: coll.find_one({"_id": i})) == 1
        assert coll.find_one({"_id": 0}) == {"_id": 0, "n": 1}
        assert coll.find_one({"_id": 1}) == {"_id": 1, "n": 0}


def _per_read(proxy: Process, read: Callable[[int], object]) -> float:
    read(-1)
    before = _round_trips(proxy)
    for i in range(TIMES):
        read(i)
    return (_round_trips(proxy) - before) / TIMES
