"""The catalog's reload against a real SecantusDB, in-process: a reload that overlaps
a change this proxy makes (a request, or the timer that follows other proxies)
never leaves the proxy believing an outdated picture is current."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio

from argon_proxy.catalog import Catalog
from argon_proxy.dbclient import DbClient
from argon_proxy.naming import INTERNAL_DB, MAIN
from argon_proxy.upstream import UpstreamPool

from ..processes import Process
from ..stacks import in_process_catalog


class PausingDb(DbClient):
    """A client of the real upstream whose ``find`` of one collection of Argon's
    waits for the test: a reload stopped half-way at a known point."""

    def __init__(self, pool: UpstreamPool) -> None:
        super().__init__(pool)
        self.pause_at: str | None = None
        self.paused = trio.Event()
        self.go_on = trio.Event()

    async def find(
        self, db: str, coll: str, filter: Mapping[str, Any] | None = None, **options: Any
    ) -> list[dict[str, Any]]:
        found = await super().find(db, coll, filter, **options)
        if db == INTERNAL_DB and coll == self.pause_at:
            self.pause_at = None
            self.paused.set()
            await self.go_on.wait()
        return found


@asynccontextmanager
async def _catalog(up: Process) -> AsyncIterator[tuple[Catalog, PausingDb]]:
    async with in_process_catalog(up, PausingDb) as catalog:
        assert isinstance(catalog.db, PausingDb)
        yield catalog, catalog.db


async def _changed_during_reload(
    catalog: Catalog, db: PausingDb, change: Callable[[], Awaitable[Any]], after: str = "overlays"
) -> None:
    """Run ``change`` while a reload has read ``after`` and not yet finished."""
    db.pause_at = after
    async with trio.open_nursery() as nursery:
        nursery.start_soon(catalog.reload)
        await db.paused.wait()
        await change()
        db.go_on.set()


async def test_an_overlay_registered_during_a_reload_is_not_lost(own_upstream: Process) -> None:
    async with _catalog(own_upstream) as (catalog, db):
        branch = await catalog.create_branch("exp", MAIN)
        register = partial(catalog.ensure_overlay, branch, "shop", "items")
        await _changed_during_reload(catalog, db, register)
        branch = await catalog.sync(branch, "shop")  # what every branch request does first
        assert catalog.overlay(branch, "shop", "items") is not None


async def test_flags_set_during_a_reload_are_not_lost(own_upstream: Process) -> None:
    async with _catalog(own_upstream) as (catalog, db):
        branch = await catalog.create_branch("exp", MAIN)
        ov = await catalog.ensure_overlay(branch, "shop", "items")
        drop = partial(catalog.set_flags, ov, cut=True, present=False, dropped=True)
        await _changed_during_reload(catalog, db, drop)
        branch = await catalog.sync(branch, "shop")
        now = catalog.overlay(branch, "shop", "items")
        assert now is not None and now.cut and not now.present


async def test_a_branch_created_during_a_reload_is_known(own_upstream: Process) -> None:
    async with _catalog(own_upstream) as (catalog, db):
        create = partial(catalog.create_branch, "exp", MAIN)
        await _changed_during_reload(catalog, db, create, after="branches")
        await catalog.refresh()  # what the timer following other proxies does
        assert "exp" in catalog.branches


async def test_another_proxy_registering_an_overlay_first_decides_its_flags(
    own_upstream: Process,
) -> None:
    async with _catalog(own_upstream) as (catalog, _db):
        branch = await catalog.create_branch("exp", MAIN)
        other = Catalog(DbClient(catalog.db.pool))  # a second proxy on the same upstream
        await other.load()
        await other.ensure_overlay(branch, "shop", "items", absent=True)
        ov = await catalog.ensure_overlay(branch, "shop", "items")  # without reloading
        assert ov.cut and not ov.present


async def test_flags_set_on_an_overlay_taken_before_a_reload_reach_the_catalog(
    own_upstream: Process,
) -> None:
    async with _catalog(own_upstream) as (catalog, _db):
        branch = await catalog.create_branch("exp", MAIN)
        ov = await catalog.ensure_overlay(branch, "shop", "items")
        await catalog.reload()  # the timer's, between a request taking ``ov`` and using it
        await catalog.set_flags(ov, cut=True, present=False, dropped=True)
        branch = await catalog.sync(branch, "shop")
        now = catalog.overlay(branch, "shop", "items")
        assert now is not None and now.cut and not now.present
