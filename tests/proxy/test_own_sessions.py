"""Argon's own transactions use its pooled sessions, never a new one each.

A session the upstream has seen stays with it until it times out (30 minutes
on mongod), and the test upstream's transactions get slower with every live
session it keeps: 3,000 branch creations, each in a session of its own, made
every later write through Argon cost several times more.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from argon_proxy.catalog import Catalog
from argon_proxy.dbclient import DbClient
from argon_proxy.txn import SessionPool
from argon_proxy.upstream import Address, UpstreamPool

from ..processes import Process, start_upstream


@pytest.fixture
def own_upstream() -> Iterator[Process]:
    up = start_upstream()
    yield up
    up.stop()


async def test_branch_creations_reuse_the_proxys_sessions(own_upstream: Process) -> None:
    pool = UpstreamPool(Address("127.0.0.1", own_upstream.port), connect_timeout=5.0)
    try:
        catalog = Catalog(DbClient(pool))
        catalog.sessions = SessionPool()
        await catalog.load()
        for i in range(10):
            await catalog.create_branch(f"s{i}", "main")
        assert catalog.sessions.count == 1  # one at a time: the same one, again and again
        async with catalog.sessions.session() as session:
            assert session.txn_number >= 10
    finally:
        await pool.aclose()
