"""Argon's own transactions use its pooled sessions, never a new one each.

A session the upstream has seen stays with it until it times out (30 minutes
on mongod), and the test upstream's transactions get slower with every live
session it keeps: 3,000 branch creations, each in a session of its own, made
every later write through Argon cost several times more.
"""

from __future__ import annotations

from argon_proxy.txn import SessionPool

from ..processes import Process
from ..stacks import in_process_catalog


async def test_branch_creations_reuse_the_proxys_sessions(own_upstream: Process) -> None:
    async with in_process_catalog(own_upstream) as catalog:
        catalog.sessions = SessionPool()
        for i in range(10):
            await catalog.create_branch(f"s{i}", "main")
        assert catalog.sessions.count == 1  # one at a time: the same one, again and again
        async with catalog.sessions.session() as session:
            assert session.txn_number >= 10
