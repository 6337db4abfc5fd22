"""The upstream pool against a real SecantusDB, in-process: health checks and timeouts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio

from argon_proxy.dbclient import CommandError, run_on
from argon_proxy.errors import UpstreamIOError, UpstreamUnavailable
from argon_proxy.txn import Transaction
from argon_proxy.upstream import HEALTH_CHECK_IDLE, UpstreamPool
from argon_proxy.upstream_target import Address

from ..processes import Process, start_upstream

NO_SUCH_TRANSACTION = 251


@pytest.fixture
def own_upstream() -> Iterator[Process]:
    up = start_upstream()
    yield up
    up.thaw()
    up.stop()


async def test_a_long_idle_connection_must_answer_a_ping(own_upstream: Process) -> None:
    pool = UpstreamPool(Address("127.0.0.1", own_upstream.port), connect_timeout=1.0)
    async with pool.checkout() as conn:
        first = conn
    async with pool.checkout() as conn:
        assert conn is first  # recently idle: reused as it is
    first.idle_since -= HEALTH_CHECK_IDLE + 1
    async with pool.checkout() as conn:
        assert conn is first  # idle long, answered the ping: reused
        assert (await run_on(conn, "admin", {"ping": 1}))["ok"] == 1.0
    first.idle_since -= HEALTH_CHECK_IDLE + 1
    own_upstream.freeze()
    try:
        # The ping goes unanswered, so the connection is dropped; a new one
        # cannot say hello either: the caller learns the upstream is gone.
        with pytest.raises(UpstreamUnavailable):
            async with pool.checkout():
                pass
    finally:
        own_upstream.thaw()
    assert first.broken
    async with pool.checkout() as conn:
        assert conn is not first
        assert (await run_on(conn, "admin", {"ping": 1}))["ok"] == 1.0
    await pool.aclose()


async def test_a_silent_upstream_times_out_the_exchange(own_upstream: Process) -> None:
    pool = UpstreamPool(
        Address("127.0.0.1", own_upstream.port), connect_timeout=1.0, reply_timeout=0.5
    )
    async with pool.checkout() as conn:
        own_upstream.freeze()
        try:
            with pytest.raises(UpstreamIOError) as info:
                await run_on(conn, "admin", {"ping": 1})
            assert info.value.timed_out and not info.value.unsent
            assert conn.broken  # never handed out again: a late reply may be queued on it
        finally:
            own_upstream.thaw()
    async with pool.checkout() as fresh:
        assert fresh is not conn
        # maxTimeMS extends the wait: the upstream may legitimately take that long.
        reply = await run_on(fresh, "admin", {"ping": 1, "maxTimeMS": 1000})
        assert reply["ok"] == 1.0
    await pool.aclose()


async def test_a_connection_the_upstream_closed_is_not_handed_out(own_upstream: Process) -> None:
    pool = UpstreamPool(Address("127.0.0.1", own_upstream.port), connect_timeout=5.0)
    async with pool.checkout() as conn:
        first = conn
    own_upstream.stop()
    restarted = start_upstream(own_upstream.port)
    own_upstream.proc = restarted.proc
    with trio.fail_after(30):
        async with pool.checkout() as conn:
            assert conn is not first
            assert (await run_on(conn, "admin", {"ping": 1}))["ok"] == 1.0
    await pool.aclose()


async def test_a_transaction_on_a_lost_connection_is_aborted_over_another(
    own_upstream: Process,
) -> None:
    """A transaction belongs to its session, not its connection: when the reply of
    one of its statements never comes, the abort goes over a fresh connection, so
    the transaction does not hold its locks until the upstream reaps it."""
    pool = UpstreamPool(
        Address("127.0.0.1", own_upstream.port), connect_timeout=1.0, reply_timeout=0.5
    )
    async with pool.checkout() as conn:
        txn = Transaction(conn)
        await txn.run("abort_db", {"insert": "c", "documents": [{"_id": 1}]})
        own_upstream.freeze()
        try:
            with pytest.raises(UpstreamIOError):
                await txn.run("abort_db", {"insert": "c", "documents": [{"_id": 2}]})
            assert conn.broken
        finally:
            own_upstream.thaw()
        await txn.abort(pool)
    async with pool.checkout() as fresh:
        commit = {
            "commitTransaction": 1,
            "lsid": txn.lsid,
            "txnNumber": txn.txn_number,
            "autocommit": False,
        }
        with pytest.raises(CommandError) as info:  # aborted: nothing left to commit
            await run_on(fresh, "admin", commit)
        assert info.value.code == NO_SUCH_TRANSACTION
        found = await run_on(fresh, "abort_db", {"find": "c", "filter": {}})
        assert found["cursor"]["firstBatch"] == []
    await pool.aclose()
