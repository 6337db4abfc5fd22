"""The upstream transactions of this proxy's writers, who take turns.

Theory of operation: every write transaction updates the one LSN counter
(``write_log.py``), so concurrent ones would only conflict there; this proxy's
writers therefore take turns (``WriterLock``, one for all collections), and
transactions keep several proxies correct (a conflict is retried). A writer
that waits to retry lets go of the lock meanwhile, so the one it conflicted
with can go on.

Every transaction that allocates LSNs learns there whether another proxy
changed the catalog (``StaleCatalog``); ``in_transaction`` reloads the catalog
and runs again a unit that reads what it needs from the catalog each time it
runs. A statement whose freeze raced another proxy's runs once more with a
careful freeze (``commit``; ``freezes.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio

from .catalog import Catalog, Overlay, StaleCatalog
from .errors import WRITE_CONFLICT, ArgonError
from .freezes import FreezeRace
from .txn import Receipt, Runner, SessionPool, run_in_transaction
from .upstream import UpstreamPool
from .write_context import STALE_ATTEMPTS, StaleTransaction, WriteContext

T = TypeVar("T")


class WriterLock:
    """The lock this proxy's writers hold while they run.

    Re-entrant for the task that holds it: a merge writes several collections
    inside one transaction. ``paused`` lets go of it while a conflicted writer
    waits to retry, so the one it conflicted with can go on.
    """

    def __init__(self) -> None:
        self._lock = trio.Lock()
        self._owner: trio.lowlevel.Task | None = None
        self._depth = 0

    async def __aenter__(self) -> None:
        task = trio.lowlevel.current_task()
        if self._owner is task:
            self._depth += 1
            return
        await self._lock.acquire()
        self._owner, self._depth = task, 1

    async def __aexit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            self._lock.release()

    @asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        task = trio.lowlevel.current_task()
        if self._owner is not task:
            yield
            return
        depth, self._owner, self._depth = self._depth, None, 0
        self._lock.release()
        try:
            yield
        finally:
            with trio.CancelScope(shield=True):  # the holder's exit will release it
                await self._lock.acquire()
            self._owner, self._depth = task, depth


class WriteTransactions:
    """Runs units of write work in upstream transactions, under the writers' lock."""

    def __init__(self, pool: UpstreamPool, catalog: Catalog, sessions: SessionPool | None) -> None:
        self.pool = pool
        self.catalog = catalog
        self.sessions = sessions
        self._lock = WriterLock()

    def lock(self, ns: str) -> WriterLock:
        """The lock this proxy's writers of ``ns`` (and of every collection) hold."""
        return self._lock

    async def in_transaction(
        self,
        unit: Callable[[Runner], Awaitable[T]],
        *,
        write_concern: Mapping[str, Any] | None = None,
        receipt: Receipt | None = None,
        restart_on_stale: bool = False,
    ) -> T:
        """``run_in_transaction`` with this proxy's sessions, under the writers' lock.

        Every transaction that allocates LSNs learns there whether another proxy
        changed the catalog (``StaleCatalog``). With ``restart_on_stale`` (a unit
        that reads what it needs from the catalog each time it runs), the catalog
        is reloaded and the unit runs again; otherwise the caller decides.
        """
        for _ in range(STALE_ATTEMPTS - 1 if restart_on_stale else 0):
            try:
                return await self._in_transaction_once(unit, write_concern, receipt)
            except (StaleCatalog, StaleTransaction):
                await self.catalog.reload()
        try:
            return await self._in_transaction_once(unit, write_concern, receipt)
        except StaleCatalog:
            if not restart_on_stale:
                raise
            raise ArgonError(
                WRITE_CONFLICT,
                "Argon's catalog kept changing under this change (other proxies were "
                "changing branches); nothing was applied: retry it",
                labels=("TransientTransactionError",),
            ) from None

    async def _in_transaction_once(
        self,
        unit: Callable[[Runner], Awaitable[T]],
        write_concern: Mapping[str, Any] | None,
        receipt: Receipt | None,
    ) -> T:
        async with self._lock:
            return await run_in_transaction(
                self.pool,
                unit,
                write_concern=write_concern,
                sessions=self.sessions,
                receipt=receipt,
                lock=self._lock,
            )

    async def commit(
        self,
        ctx: WriteContext,
        kids: list[Overlay],
        unit: Callable[[Runner, bool], Awaitable[T]],
        receipt: Receipt,
    ) -> T:
        """Run the unit of a statement (or of a group of statements) in a
        transaction of its own, freezing into ``kids`` as their id caches say; if
        a child held a document after all, read their caches again and run it
        once more with a careful freeze (the unit's second argument)."""
        try:
            return await self.in_transaction(
                lambda runner: unit(runner, False),
                write_concern=ctx.write_concern,
                receipt=receipt,
            )
        except FreezeRace:
            for ov in kids:
                ov.ids, ov.tombstones = None, set()
                await self.catalog.load_ids(ov)
            return await self.in_transaction(
                lambda runner: unit(runner, True),
                write_concern=ctx.write_concern,
                receipt=receipt,
            )
