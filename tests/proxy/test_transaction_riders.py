"""Commands that travel together in one round trip of Argon's own transactions.

``Transaction.defer`` sends a command in the transaction in front of the next
one; ``Transaction.ride`` sends one outside it behind the next one (the LSN
lease). Whatever travels together must fail as if it had run one by one: the
earliest failure is the one raised, and a lease that came back is released
even when the command it rode on failed. In-process against a real SecantusDB.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import trio
from prometheus_client import REGISTRY

from argon_proxy.catalog import LSN_COUNTER
from argon_proxy.dbclient import CommandError, hold
from argon_proxy.naming import INTERNAL_DB
from argon_proxy.txn import Rider, Transaction, checked, run_in_transaction

from ..processes import Process
from ..stacks import in_process_catalog

DB = "riders"


def _round_trips() -> float:
    samples = (
        REGISTRY.get_sample_value("argon_upstream_round_trips_total", {"on": on})
        for on in ("request", "background")
    )
    return sum(value or 0.0 for value in samples)


async def test_deferred_commands_go_with_the_next_one(own_upstream: Process) -> None:
    async with in_process_catalog(own_upstream) as catalog, hold(catalog.db.pool):

        async def unit(txn: Transaction) -> list[dict[str, Any]]:
            txn.defer(Rider(DB, {"insert": "a", "documents": [{"_id": 1}]}, checked))
            txn.defer(Rider(DB, {"insert": "a", "documents": [{"_id": 2}]}, checked))
            before = _round_trips()
            reply = await txn.run(DB, {"find": "a", "filter": {}})
            assert _round_trips() - before == 1
            return list(reply["cursor"]["firstBatch"])

        found = await run_in_transaction(catalog.db.pool, unit)
        assert [d["_id"] for d in found] == [1, 2]  # run in order, before the find
        assert len(await catalog.db.find(DB, "a", {})) == 2  # and committed


async def test_the_earliest_failure_is_raised_and_nothing_commits(own_upstream: Process) -> None:
    async with in_process_catalog(own_upstream) as catalog, hold(catalog.db.pool):
        await catalog.db.command(DB, {"insert": "b", "documents": [{"_id": 1}]})

        async def unit(txn: Transaction) -> None:
            txn.defer(Rider(DB, {"insert": "b", "documents": [{"_id": 2}]}, checked))
            txn.defer(Rider(DB, {"insert": "b", "documents": [{"_id": 1}]}, checked))
            await txn.run(DB, {"insert": "b", "documents": [{"_id": 3}]})

        with pytest.raises(CommandError) as caught:
            await run_in_transaction(catalog.db.pool, unit)
        assert caught.value.code == 11000  # the duplicate, not what followed it
        assert [d["_id"] for d in await catalog.db.find(DB, "b", {})] == [1]


async def test_a_deferred_command_runs_before_the_commit(own_upstream: Process) -> None:
    async with in_process_catalog(own_upstream) as catalog, hold(catalog.db.pool):

        async def unit(txn: Transaction) -> None:
            await txn.run(DB, {"insert": "c", "documents": [{"_id": 1}]})
            txn.defer(Rider(DB, {"insert": "c", "documents": [{"_id": 2}]}, checked))

        await run_in_transaction(catalog.db.pool, unit)
        assert [d["_id"] for d in await catalog.db.find(DB, "c", {})] == [1, 2]


async def _inflight(catalog: Any) -> list[int]:
    (counter,) = await catalog.db.find(INTERNAL_DB, "counters", {"_id": LSN_COUNTER})
    return [int(e["first"]) for e in counter.get("inflight") or []]


async def test_a_lease_rides_behind_the_first_command(own_upstream: Process) -> None:
    async with in_process_catalog(own_upstream) as catalog, trio.open_nursery() as nursery:
        nursery.start_soon(catalog.release_ended, 3600.0)  # ended leases wait for the next
        await trio.sleep(0)
        async with hold(catalog.db.pool):
            head = await catalog.current_lsn()

            async def unit(txn: Transaction) -> int:
                ridden = catalog.lease_behind(txn, 3)
                before = _round_trips()
                await txn.run(DB, {"insert": "d", "documents": [{"_id": 1}]})
                assert _round_trips() - before == 1
                assert ridden.first is not None and ridden.count == 3
                assert await _inflight(catalog) == [ridden.first]  # live until the end
                return ridden.first

            first = await run_in_transaction(catalog.db.pool, unit)
            assert first > head
            with trio.fail_after(60):  # ended: the head does not wait for it
                assert await catalog.current_lsn() >= first + 2

            async def failing(txn: Transaction) -> None:
                catalog.lease_behind(txn, 1)
                await txn.run(DB, {"insert": "d", "documents": [{"_id": 1}]})

            with pytest.raises(CommandError):
                await run_in_transaction(catalog.db.pool, failing)
            # The lease came back although the command it rode on failed: ended too.
            with trio.fail_after(60):
                assert await catalog.current_lsn() >= first + 3
        nursery.cancel_scope.cancel()


async def test_concurrent_ridden_leases_get_their_own_ranges(own_upstream: Process) -> None:
    """A ridden lease reads its range back from its own entry: leases of other
    writers landing between its update and its read do not lend it theirs."""
    async with in_process_catalog(own_upstream) as catalog:
        ranges: list[tuple[int, int]] = []

        async def writer(n: int) -> None:
            for _ in range(5):

                async def unit(txn: Transaction, count: int = n + 1) -> None:
                    ridden = catalog.lease_behind(txn, count)
                    await txn.run(DB, {"insert": "e", "documents": [{}]})
                    assert ridden.first is not None
                    ranges.append((ridden.first, ridden.first + count - 1))

                await run_in_transaction(catalog.db.pool, unit)

        async with trio.open_nursery() as nursery:
            for n in range(4):
                nursery.start_soon(writer, n)
        ranges.sort()
        assert len(ranges) == 20
        for (_, last), (first, _) in itertools.pairwise(ranges):
            assert first > last  # disjoint
        with trio.fail_after(60):
            assert await catalog.current_lsn() >= ranges[-1][1]
