"""A statement's WAL entries and retry records: one ``bulkWrite`` where the upstream
speaks it, separate inserts elsewhere, the same documents and failures either way.

In-process against a real SecantusDB; the upstream's wire version is set as an
older server would report it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest
from bson import Int64

from argon_proxy import retries, wal
from argon_proxy.dbclient import CommandError, hold
from argon_proxy.naming import INTERNAL_DB, MAIN
from argon_proxy.pending import Pending
from argon_proxy.txn import Transaction, run_in_transaction
from argon_proxy.wal import ClientIdentity
from argon_proxy.write_context import Change, Outcome, WriteContext
from argon_proxy.write_log import BULK_WRITE_WIRE_VERSION, WriteLog

from ..processes import Process
from ..stacks import in_process_catalog


@pytest.mark.parametrize(
    ("wire", "started"),
    [(21, True), (BULK_WRITE_WIRE_VERSION, True), (BULK_WRITE_WIRE_VERSION, False)],
)
async def test_records_and_entries_land_alike_and_a_retry_fails_alike(
    own_upstream: Process, wire: int, started: bool
) -> None:
    """``started``: the statement's own commands came first (the transaction has
    started; its first command carries a read concern bulkWrite does not take)."""
    async with in_process_catalog(own_upstream) as catalog:
        pool = catalog.db.pool
        log = WriteLog(catalog, Pending())
        ctx = WriteContext(catalog.branches[MAIN], "db", "c", ClientIdentity("t", None, 1), None)
        ctx.retry, ctx.statement = {"lsid": f"s{wire}{started}", "txn": Int64(1)}, 0
        changes = [Change(i, wal.INSERT, None, {"_id": i}) for i in range(3)]
        records = retries.records(ctx, [Outcome(matched=3)])

        sent: list[str] = []

        async def unit(runner: Transaction) -> list[int]:
            # As a statement's transaction: its own writes come first, and the
            # upstream reports the wire version under test (each connection it
            # opens reports its own, so it is set here).
            if started:
                await runner.run(INTERNAL_DB, {"find": "counters", "limit": 1})
            pool.facts = dataclasses.replace(pool.facts, max_wire_version=wire)
            run = runner.run

            async def recorded(db: str, command: Mapping[str, Any]) -> dict[str, Any]:
                sent.append(next(iter(command)))
                return await run(db, command)

            setattr(runner, "run", recorded)  # noqa: B010 - a spy on this one runner
            return await log.log(runner, ctx, changes, records)

        async with hold(pool, None):  # one connection, as a request holds it
            first, last = await run_in_transaction(pool, unit)
        assert last - first == 2
        together = wire >= BULK_WRITE_WIRE_VERSION and started
        assert sent == (["bulkWrite"] if together else ["insert", "insert"]), sent
        entries = await catalog.db.find(
            INTERNAL_DB, "wal", {"_id": {"$gte": Int64(first), "$lte": Int64(last)}}
        )
        assert [e["doc_id"] for e in sorted(entries, key=lambda e: e["_id"])] == [0, 1, 2]
        (saved,) = await catalog.db.find(INTERNAL_DB, "retries", {"_id.lsid": f"s{wire}{started}"})
        assert saved["outcome"]["matched"] == 3
        sent.clear()
        with pytest.raises(CommandError) as again:  # an earlier attempt's record is there
            async with hold(pool, None):
                await run_in_transaction(pool, unit)
        assert again.value.code == 11000
        count = await catalog.db.command(INTERNAL_DB, {"count": "wal", "query": {"doc_id": 0}})
        assert count["n"] == 1  # the failed attempt's entries went with its transaction
