"""LSN leases of transactions that ended go with this proxy's next lease, or a
moment later: a write needs no round trip of its own to end its lease.

In-process against a real SecantusDB, with the background release held back
(an hour's delay) so what the next lease does is seen alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from argon_proxy.catalog import LSN_COUNTER, Catalog
from argon_proxy.naming import INTERNAL_DB

from ..processes import Process
from ..stacks import in_process_catalog


@asynccontextmanager
async def _catalog(up: Process, delay: float) -> AsyncIterator[Catalog]:
    async with in_process_catalog(up) as catalog, trio.open_nursery() as nursery:
        nursery.start_soon(catalog.release_ended, delay)
        await trio.sleep(0)  # it runs: releases wait for it from now on
        yield catalog
        nursery.cancel_scope.cancel()


async def _inflight(catalog: Catalog) -> list[int]:
    (counter,) = await catalog.db.find(INTERNAL_DB, "counters", {"_id": LSN_COUNTER})
    entries: list[dict[str, Any]] = counter.get("inflight") or []
    return sorted(int(e["first"]) for e in entries)


async def test_the_next_lease_takes_the_ended_ones_along(own_upstream: Process) -> None:
    async with _catalog(own_upstream, delay=3600) as catalog:
        first = await catalog.lease_lsns(1, owned=True)
        await catalog.release_lsns(first)  # its transaction ended
        assert await _inflight(catalog) == [first]  # not pulled yet, by itself
        # ... but this proxy knows it is over: the head does not wait for it
        assert await catalog.current_lsn() >= first
        second = await catalog.lease_lsns(1, owned=True)
        assert await _inflight(catalog) == [second]
        await catalog.release_lsns(second)


async def test_ended_leases_are_pulled_by_themselves_and_on_the_way_out(
    own_upstream: Process,
) -> None:
    async with _catalog(own_upstream, delay=0.01) as catalog:
        first = await catalog.lease_lsns(1, owned=True)
        await catalog.release_lsns(first)
        with trio.fail_after(30):
            while await _inflight(catalog):
                await trio.sleep(0.01)
    async with _catalog(own_upstream, delay=3600) as catalog:
        first = await catalog.lease_lsns(2, owned=True)
        await catalog.release_lsns(first)
    async with _catalog(own_upstream, delay=3600) as catalog:
        assert await _inflight(catalog) == []  # pulled when the task was cancelled
