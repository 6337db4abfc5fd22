"""Branch-aware writes: insert, update, delete and findAndModify, logged in the WAL.

Theory of operation: each write statement runs as one upstream transaction
(``txn.run_in_transaction``) that does, in order:

1. find the documents the statement matches in the branch's view, with the
   user's own filter evaluated by mongod on every layer (the pre-images);
2. on a branch, copy each matched document up into the branch's overlay, then
   apply the user's update with mongod's own update engine on that copy
   (an ``update`` with the user's filter pinned to its ``_id``, so positional
   operators work);
   on main, apply it to the base collection, restricted to those ``_id``s;
   a delete on a branch writes a tombstone instead;
3. read the post-images;
4. freeze the pre-images into every child branch that does not hold the
   document yet (a tombstone where there was no document), so children never
   see their parent's later writes;
5. insert the WAL entries; commit.

Statement groups: outside a client transaction, a run of single-document
updates or deletes of one command (and an insert's documents) share one such
transaction per bounded part (``run_group``; ``chunks``). Each statement sees
what the ones before it wrote, through a group-local copy of the overlay's id
cache; children get each document's first pre-image once; one LSN lease and
one WAL insert cover the group, and post-images are read once at its end. A
statement that fails sends its group back to statement by statement, which
commits the statements before it and reports the error at its index exactly
as mongod; retry records are per statement either way.

A multi-document update or delete that matches more than ``SPLIT_AT``
documents runs as several such transactions over parts of the ``_id``s it
matched (mongod's multi-writes are not atomic either), so no transaction
outgrows what the upstream holds. Statements of one command run in order;
``ordered`` stops at the first failure, and failures become ``writeErrors``
exactly where mongod puts them.

LSNs are allocated inside the statement's own transaction, just before the
WAL insert, so they follow commit order: an LSN is visible exactly when its
entry and its data are. Every write transaction therefore updates the one
LSN counter, and concurrent ones would only conflict there; so this proxy's
writers take turns (``WriterLock``, one for all collections), and
transactions keep several proxies correct (a conflict is retried).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import bson
import trio
from bson import ObjectId

from . import unique, update_description, wal
from .catalog import (
    Catalog,
    CatalogBusy,
    Overlay,
    StaleCatalog,
    TxnScope,
    hashable_id,
    now,
    overlay_key,
)
from .dbclient import CommandError
from .documents import BYPASS, below, find_all, put_own, tombstone_own, view_docs, view_find
from .errors import COMMAND_NOT_SUPPORTED, ArgonError
from .indexes import list_specs
from .naming import MAIN, TOMBSTONE
from .pending import Pending, TxnState, freeze_targets, transaction_key
from .retries import remember, remember_group, retried
from .txn import (
    RETRY_FOR,
    JoinedTransaction,
    Receipt,
    Runner,
    SessionPool,
    is_transient,
    run_in_transaction,
)
from .upstream import UpstreamPool
from .view import MATCH_NOTHING, NOT_TOMBSTONE, View, build_view, conjoin, indexable, pin
from .write_context import (
    DUPLICATE_KEY,
    STALE_ATTEMPTS,
    Body,
    Change,
    GroupFallback,
    NeedsStatements,
    Outcome,
    StaleTransaction,
    StatementError,
    WriteContext,
    chunks,
    duplicate_key,
    is_replacement,
    raise_write_errors,
    same_doc,
    write_options,
)

T = TypeVar("T")
WRITE_CONFLICT = 112
NOT_IN_TRANSACTION = 263  # OperationNotSupportedInTransaction: e.g. a capped collection


def _only(fields: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k in names}


def _without(fields: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k not in names}


# Documents one multi-document statement changes per transaction: the freeze into
# every child and the WAL entries all ride in it, and upstreams bound a
# transaction's size (mongod: TransactionTooLargeForCache).
SPLIT_AT = 1000


class _FreezeRace(Exception):
    """A child already held a document its id cache did not know of."""


class _Split(Exception):
    """A multi-document statement matched more than ``SPLIT_AT`` documents."""

    def __init__(self, ids: list[Any]) -> None:
        super().__init__(f"{len(ids)} documents")
        self.ids = ids


def _on_copy(pre: Mapping[str, Any], stmt: Mapping[str, Any]) -> dict[str, Any]:
    """Update statement ``stmt`` as it applies to the branch's copy of ``pre``: the
    user's filter pinned to its ``_id``, without what chose the document (sort,
    upsert, multi) and without ``hint`` (an overlay need not have the index)."""
    upd = {k: v for k, v in stmt.items() if k not in ("upsert", "multi", "sort", "hint")}
    upd["q"] = pin(pre["_id"], stmt.get("q") or {})
    return upd


def _shared(ov: Overlay, mine: Overlay | None, own: Overlay | None) -> Overlay:
    """The shared overlay a group's write went to (``mine``: the group's copy of ``own``)."""
    return own if ov is mine and own is not None else ov


def _first_changes(changes: list[Change]) -> list[Change]:
    """Each document's first change: the image a child must keep is the one from
    before all of them."""
    seen: set[Any] = set()
    firsts = []
    for ch in changes:
        key = hashable_id(ch.doc_id)
        if key not in seen:
            seen.add(key)
            firsts.append(ch)
    return firsts


@dataclass
class _Watched:
    """The overlays a statement's decisions rested on (set once it has prepared)."""

    watched: list[Overlay] = field(default_factory=list)


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


class Writer:
    """Executes write commands on any branch."""

    def __init__(
        self,
        pool: UpstreamPool,
        catalog: Catalog,
        sessions: SessionPool | None = None,
        pending: Pending | None = None,
    ) -> None:
        self.pool = pool
        self.catalog = catalog
        self.sessions = sessions
        self.pending = pending or Pending()  # what open client transactions wrote
        self._lock = WriterLock()
        self._capped: set[str] = set()  # main's namespaces mongod said are capped

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

    # -- shared steps ----------------------------------------------------------

    async def _prepare(
        self, ctx: WriteContext
    ) -> tuple[View, Overlay | None, list[Overlay], list[dict[str, Any]], list[Overlay]]:
        """Load the view and make sure every overlay the statement may write exists;
        also the unique indexes Argon must enforce on the branch, and the overlays
        whose id caches the statement's decisions rest on."""
        state = self._state(ctx)
        scope = self._scope(ctx.joined, state) if state is not None else None
        own = None
        if ctx.branch.name != MAIN:
            own = self.catalog.overlay(ctx.branch, ctx.db, ctx.coll)
            if state is not None:
                own = state.overlays.get(overlay_key(ctx.branch.id, ctx.db, ctx.coll), own)
            if own is None:  # registered as absent when the branch has no such collection
                has = await self.catalog.base_exists(ctx.branch, ctx.db, ctx.coll)
                absent = not self.catalog.shows(ctx.branch, ctx.db, ctx.coll, in_base=has)
                own = await self.catalog.ensure_overlay(
                    ctx.branch, ctx.db, ctx.coll, absent=absent, scope=scope
                )
            await self.catalog.load_ids(own)
        kids = await self.catalog.child_overlays(ctx.branch, ctx.db, ctx.coll, scope)
        for ov in kids:
            await self.catalog.load_ids(ov)
        if state is not None:  # the transaction's own copies, which hold its writes
            own = state.own(own) if own is not None else None
            kids = [state.own(ov) for ov in kids]
        txn_overlays = state.overlays if state is not None else None
        view = await build_view(self.catalog, ctx.branch, ctx.db, ctx.coll, txn_overlays)
        uniques = []
        if own is not None:
            specs = await list_specs(self.catalog, ctx.branch, ctx.db, ctx.coll)
            uniques = unique.unique_specs(specs)
        chain = [self.catalog.overlay(b, ctx.db, ctx.coll) for b in self.catalog.chain(ctx.branch)]
        if txn_overlays is not None:
            chain = [txn_overlays.get(ov.key, ov) if ov is not None else None for ov in chain]
        watched = [ov for ov in chain if ov is not None] + kids
        return view, own, kids, uniques, watched

    def _state(self, ctx: WriteContext) -> TxnState | None:
        """The state of the client transaction ``ctx`` joins, if it joins one."""
        return self.pending.state(transaction_key(ctx.joined)) if ctx.joined is not None else None

    def _scope(self, joined: Runner | None, state: TxnState) -> TxnScope:
        """Where the catalog changes of a client's transaction go: inside it (outside,
        they would wait for the LSN counter it holds), and into its own copies."""
        assert joined is not None

        async def announce() -> None:
            await self.catalog.announce_in(joined)

        return TxnScope(joined, announce, state.overlays)

    async def _freeze(
        self,
        runner: Runner,
        ctx: WriteContext,
        kids: list[Overlay],
        changes: list[Change],
        outcome: Outcome,
        *,
        careful: bool,
    ) -> None:
        """Give each child the pre-image (or a tombstone) of documents it does not hold.

        The id caches say which those are, so the images are plain inserts; a
        ``careful`` freeze upserts instead, writing only where nothing is yet.
        """
        for ov in kids:
            if ov.cut:
                # The child hides this layer for good (it dropped the collection, or
                # had none when it forked): an image frozen there would become one
                # of its own documents. Main's renamed collection under a name the
                # child never had is such a case: its pre-images are real documents.
                continue
            assert ov.ids is not None
            images: list[dict[str, Any]] = []
            ids: list[Any] = []
            tombs: list[Any] = []
            for ch in changes:
                if hashable_id(ch.doc_id) in ov.ids:
                    continue
                images.append(ch.pre if ch.pre is not None else {"_id": ch.doc_id, TOMBSTONE: True})
                (ids if ch.pre is not None else tombs).append(ch.doc_id)
            for part in chunks(images):
                if careful:
                    updates = [
                        {"q": {"_id": d["_id"]}, "u": {"$setOnInsert": _body(d)}, "upsert": True}
                        for d in part
                    ]
                    await runner.run(ctx.db, {"update": ov.name, "updates": updates, **BYPASS})
                    continue
                try:
                    await runner.run(ctx.db, {"insert": ov.name, "documents": part, **BYPASS})
                except CommandError as exc:
                    if exc.code == DUPLICATE_KEY:
                        raise _FreezeRace from None
                    raise
            if images:
                outcome.cache.append((ov, ids, False))
                outcome.cache.append((ov, tombs, True))

    async def _log(self, runner: Runner, ctx: WriteContext, changes: list[Change]) -> list[int]:
        if not changes:
            return []
        state = self.pending.peek(runner) if isinstance(runner, JoinedTransaction) else None
        if state is not None:  # a client's: its entries take their LSNs at its commit
            state.entries.extend(self._entries(0, ctx, changes))
            return []
        first = await self.catalog.allocate_lsns(runner, len(changes))
        for part in chunks(self._entries(first, ctx, changes)):
            await runner.run("__argon", {"insert": "wal", "documents": part})
        return [first, first + len(changes) - 1]

    async def log_commit(self, joined: Runner, state: TxnState) -> int | None:
        """Before a client's transaction commits: lease LSNs for the WAL entries its
        statements left (``_log``) and write them inside it. Returns the first LSN
        of the lease, to release once the commit has answered (None: no entries)."""
        entries, state.entries = state.entries, []
        if not entries:
            return None
        lease = await self._lease_unchanged(state, len(entries))
        first = lease
        ts = now()
        for i, doc in enumerate(entries):
            doc["_id"], doc["ts"] = bson.Int64(first + i), ts
        try:
            for part in chunks(entries):
                await joined.run("__argon", {"insert": "wal", "documents": part})
        except BaseException:
            await self.catalog.release_lsns(lease)
            raise
        return lease

    async def _lease_unchanged(self, state: TxnState, count: int) -> int:
        """Lease ``count`` LSNs at a catalog epoch under which everything the
        transaction wrote freezes into what it froze into (else ``StaleCatalog``):
        a branch forked after the lease forks from after its commit."""
        for _ in range(STALE_ATTEMPTS):
            await self.catalog.refresh()
            for (branch, db, coll), then in state.basis.items():
                if freeze_targets(self.catalog, branch, db, coll) != then:
                    raise StaleCatalog
            try:
                return await self.catalog.lease_lsns(count, epoch=self.catalog.epoch)
            except StaleCatalog:
                continue  # the catalog moved meanwhile: look again
        raise StaleCatalog

    def _note_basis(self, ctx: WriteContext, before: tuple[Any, ...]) -> None:
        """After a statement of a client's transaction: what it froze into must be
        what its earlier statements of the same collection froze into."""
        state = self._state(ctx)
        assert state is not None
        key = (ctx.branch.name, ctx.db, ctx.coll)
        now_ = freeze_targets(self.catalog, *key)
        if now_ != before or state.basis.setdefault(key, before) != before:
            raise _stale_in_transaction(ctx)

    @staticmethod
    def _entries(first: int, ctx: WriteContext, changes: list[Change]) -> list[dict[str, Any]]:
        """The WAL documents of ``changes``, numbered from ``first``."""
        ts = now()
        return [
            wal.entry(
                first + i,
                branch=ctx.branch.name,
                branch_id=ctx.branch.id,
                ns=ctx.ns,
                doc_id=ch.doc_id,
                op=ch.op,
                pre=ch.pre,
                post=ch.post,
                client=ctx.client,
                ts=ts,
                extra=ctx.extra,
                replace=ch.replace,
                hints=ch.hints,
            )
            for i, ch in enumerate(changes)
        ]

    async def run_statement(
        self,
        ctx: WriteContext,
        body: Any,
    ) -> Outcome:
        """Run one statement in its own transaction; returns what it did.

        The statement starts again, with the caches brought up to date, when its
        transaction finds that another proxy changed what they hold.
        """
        async with self.catalog.forks.writing(), self.lock(ctx.ns):
            if isinstance(ctx.joined, JoinedTransaction):
                # A client's transaction cannot start again by itself: another
                # proxy's changes are learnt before its statement, not in it.
                kids = [
                    ov
                    for kid in self.catalog.children(ctx.branch.name)
                    if (ov := self.catalog.overlay(kid, ctx.db, ctx.coll)) is not None
                ]
                ctx.branch = await self.catalog.sync(ctx.branch, ctx.db, also=kids)
                before = freeze_targets(self.catalog, ctx.branch.name, ctx.db, ctx.coll)
                try:
                    outcome = await self._run_once(ctx, body, _Watched())
                except StaleCatalog:
                    raise _stale_in_transaction(ctx) from None
                self._note_basis(ctx, before)
                return outcome
            return await self._retrying(ctx, lambda stale: self._run_once(ctx, body, stale))

    async def _retrying(self, ctx: WriteContext, once: Callable[[_Watched], Awaitable[T]]) -> T:
        """Run ``once`` (one transaction of a statement or of a group of statements)
        until it gets past other proxies' catalog changes and busy forks."""
        stale_left, deadline, pause = STALE_ATTEMPTS, trio.current_time() + RETRY_FOR, 0.002
        while stale_left:
            stale = _Watched()
            try:
                return await once(stale)
            except CatalogBusy:
                if ctx.joined is not None or trio.current_time() > deadline:
                    raise _busy(ctx) from None
                async with self._lock.paused():
                    await trio.sleep(pause)
                pause = min(pause * 2, 0.25)
                continue
            except StaleCatalog:
                stale_left -= 1
                if ctx.joined is not None:  # the client's transaction must start again
                    raise _stale_in_transaction(ctx) from None
                ctx.branch = await self.catalog.sync(ctx.branch, ctx.db, also=stale.watched)
        raise ArgonError(
            WRITE_CONFLICT,
            f"write on {ctx.ns} (branch {ctx.branch.name!r}) kept conflicting with other "
            "proxies' writes; retry it",
            labels=("RetryableWriteError",),
        )

    async def _run_once(self, ctx: WriteContext, body: Any, stale: _Watched) -> Outcome:
        view, own, kids, uniques, watched = await self._prepare(ctx)
        state = self._state(ctx)
        # Versions an enclosing transaction already moved (they count once it commits).
        moved = state.moved if state is not None else None
        stale.watched = watched  # what to bring up to date if another proxy got there first

        async def unit(runner: Runner) -> Outcome:
            await Catalog.verify(runner, watched, moved)
            outcome = Outcome()
            await body(runner, view, own, outcome)
            if uniques:
                hit = await unique.find_collision(runner, view, uniques, outcome.changes)
                if hit is not None:
                    raise duplicate_key(ctx.ns, None, hit.index, hit.key, hit.pattern)
            await self._freeze(runner, ctx, kids, outcome.changes, outcome, careful=careful)
            outcome.bumped = await Catalog.bump(runner, [ov for ov, _, _ in outcome.cache])
            outcome.lsns = await self._log(runner, ctx, outcome.changes)
            if ctx.retry is not None:
                # An earlier attempt that committed makes this fail (and roll back).
                await remember(runner, ctx, outcome)
            return outcome

        # A client's transaction cannot be retried: its freezes are careful at once.
        careful = ctx.joined is not None
        if ctx.joined is None:
            receipt = Receipt()
            try:
                try:
                    outcome = await self.in_transaction(
                        unit, write_concern=ctx.write_concern, receipt=receipt
                    )
                except _FreezeRace:
                    for ov in kids:
                        ov.ids, ov.tombstones = None, set()
                        await self.catalog.load_ids(ov)
                    careful = True
                    outcome = await self.in_transaction(
                        unit, write_concern=ctx.write_concern, receipt=receipt
                    )
                outcome.write_concern_error = receipt.write_concern_error
            except StaleCatalog:
                raise
            except Exception:
                done = await retried(self.catalog, ctx) if ctx.retry is not None else None
                if done is None:
                    raise
                return done
            for ov, ids, tomb in outcome.cache:
                Catalog.note_written(ov, ids, tombstone=tomb)
            for ov in outcome.bumped:
                ov.version += 1
            await self._now_present(own, outcome)
            return outcome
        # The client's transaction may still abort: only its own copies learn its
        # writes; the shared caches are read again from committed data.
        assert state is not None
        outcome = await unit(ctx.joined)
        state.learn(outcome.cache)
        for ov, _ids, _tomb in outcome.cache:
            shared = self.catalog.overlays.get(ov.key)
            if shared is not None:
                shared.ids, shared.tombstones = None, set()
        state.moved.update(ov.key for ov in outcome.bumped)
        if own is not None and not own.present and outcome.changes:
            scope = self._scope(ctx.joined, state)
            await self.catalog.set_flags(
                own, cut=own.cut, present=True, runner=ctx.joined, announce=scope.announce
            )
        return outcome

    async def group(
        self, ctx: WriteContext, name: str, statements: list[dict[str, Any]]
    ) -> list[Outcome] | None:
        """Single-document updates or deletes (``name``) of one command, from index
        ``ctx.statement``, as one transaction (``run_group``); None: run them one by one."""
        if self._takes_capped_path(ctx):
            return None  # main's capped collections take no transactions
        pinned = [{**s, "q": indexable(s.get("q") or {})} for s in statements]
        if name == "update":
            bodies = [self.update_body(ctx, stmt, grouped=True) for stmt in pinned]
        else:
            bodies = [self.delete_body(ctx, stmt) for stmt in pinned]
        return await self.run_group(ctx, bodies)

    async def run_group(self, ctx: WriteContext, bodies: list[Body]) -> list[Outcome] | None:
        """Run consecutive statements of one command, from index ``ctx.statement``, in
        one transaction: one commit, one LSN lease and one WAL insert for them all.

        Each statement still sees what the ones before it wrote. Returns None when
        they cannot commit together (one of them fails, or an earlier attempt of a
        retryable command applied some of them): nothing of them is applied then,
        and the caller runs them one by one, which answers each exactly as mongod.
        """
        assert ctx.joined is None and isinstance(ctx.statement, int)
        try:
            async with self.catalog.forks.writing(), self.lock(ctx.ns):
                return await self._retrying(
                    ctx, lambda stale: self._run_group_once(ctx, bodies, stale)
                )
        except GroupFallback:
            return None

    async def _run_group_once(
        self, ctx: WriteContext, bodies: list[Body], stale: _Watched
    ) -> list[Outcome]:
        view, own, kids, uniques, watched = await self._prepare(ctx)
        stale.watched = watched
        target = ctx.coll if own is None else own.name  # where the documents are written

        async def unit(runner: Runner) -> tuple[list[Outcome], Outcome]:
            await Catalog.verify(runner, watched)
            # The statements' own copies of the branch's overlay, which learn what
            # each statement wrote, so that the next one's view includes it.
            local = TxnState()
            mine = local.own(own) if own is not None else None
            now_view = view
            outcomes, total = [], Outcome()
            for body in bodies:
                out = Outcome()
                try:
                    await body(runner, now_view, mine, out)
                    if uniques:
                        # Argon judges the branch's unique indexes on post-images.
                        await self._settle_posts(runner, target, ctx.db, [out])
                        hit = await unique.find_collision(runner, now_view, uniques, out.changes)
                        if hit is not None:
                            raise GroupFallback
                except (StaleCatalog, CatalogBusy):
                    raise
                except Exception as exc:
                    if isinstance(exc, CommandError) and is_transient(exc):
                        raise  # the whole group runs again (run_in_transaction)
                    # Nothing of the group has committed: its statements run one
                    # by one, and the one that fails says how, at its index.
                    raise GroupFallback from None
                outcomes.append(out)
                total.changes.extend(out.changes)
                total.cache.extend((_shared(ov, mine, own), i, t) for ov, i, t in out.cache)
                if out.cache:
                    local.learn(out.cache)
                    now_view = await build_view(
                        self.catalog, ctx.branch, ctx.db, ctx.coll, local.overlays
                    )
            await self._settle_posts(runner, target, ctx.db, outcomes)
            firsts = _first_changes(total.changes)
            await self._freeze(runner, ctx, kids, firsts, total, careful=careful)
            total.bumped = await Catalog.bump(runner, [ov for ov, _, _ in total.cache])
            total.lsns = await self._log(runner, ctx, total.changes)
            if ctx.retry is not None:
                await remember_group(runner, ctx, outcomes)
            return outcomes, total

        careful = False
        receipt = Receipt()
        try:
            try:
                outcomes, total = await self.in_transaction(
                    unit, write_concern=ctx.write_concern, receipt=receipt
                )
            except _FreezeRace:
                for ov in kids:
                    ov.ids, ov.tombstones = None, set()
                    await self.catalog.load_ids(ov)
                careful = True
                outcomes, total = await self.in_transaction(
                    unit, write_concern=ctx.write_concern, receipt=receipt
                )
        except (StaleCatalog, CatalogBusy, GroupFallback):
            raise
        except Exception:
            if ctx.retry is None:
                raise
            # Whether it committed is unknown: statement by statement, each one
            # finds the record of an earlier attempt that applied it.
            raise GroupFallback from None
        for ov, ids, tomb in total.cache:
            Catalog.note_written(ov, ids, tombstone=tomb)
        for ov in total.bumped:
            ov.version += 1
        await self._now_present(own, total)
        for out in outcomes:
            out.write_concern_error = receipt.write_concern_error
        return outcomes

    async def _now_present(self, own: Overlay | None, outcome: Outcome) -> None:
        """A statement that wrote a document makes the collection exist on the branch;
        one that changed nothing leaves it as it was, as on mongod."""
        if own is not None and not own.present and outcome.changes:
            await self.catalog.set_flags(own, cut=own.cut, present=True)

    # -- insert ----------------------------------------------------------------

    async def insert(self, ctx: WriteContext, doc: dict[str, Any]) -> Outcome:
        if "_id" not in doc:
            doc = {"_id": ObjectId(), **doc}
        if self._takes_capped_path(ctx):
            return await self._insert_capped(ctx, [doc])

        async def body(runner: Runner, view: View, own: Overlay | None, out: Outcome) -> None:
            if own is None:  # main: mongod enforces _id uniqueness itself
                await runner.run(ctx.db, ctx.data_command({"insert": ctx.coll, "documents": [doc]}))
            else:
                if await view_find(runner, view, {"_id": doc["_id"]}, limit=1):
                    raise duplicate_key(ctx.ns, doc["_id"])
                await put_own(runner, ctx, own, doc, out)
            out.matched = 1
            out.changes.append(Change(doc["_id"], wal.INSERT, None, doc))

        try:
            return await self.run_statement(ctx, body)
        except CommandError as exc:
            if not self._found_capped(ctx, exc):
                raise
        return await self._insert_capped(ctx, [doc])

    async def insert_batch(self, ctx: WriteContext, docs: list[dict[str, Any]]) -> Outcome:
        """Insert all of ``docs`` (each with its ``_id``) as one statement and one
        transaction. Raises ``NeedsStatements`` when any of them would fail, so the
        caller runs them one by one and reports write errors exactly as mongod."""
        keys = {hashable_id(d["_id"]) for d in docs}
        if len(keys) != len(docs):
            raise NeedsStatements

        async def body(runner: Runner, view: View, own: Overlay | None, out: Outcome) -> None:
            ids = [d["_id"] for d in docs]
            if own is None:  # main: mongod enforces _id uniqueness itself
                for part in chunks(docs):
                    await runner.run(
                        ctx.db, ctx.data_command({"insert": ctx.coll, "documents": part})
                    )
            else:
                if await view_docs(runner, view, ids, id_only=True):
                    raise NeedsStatements
                assert own.ids is not None
                # Plain inserts, except over the branch's own tombstones; a stale id
                # cache only costs the statement-by-statement path (duplicate key).
                fresh = [d for d in docs if hashable_id(d["_id"]) not in own.ids]
                for part in chunks(fresh):
                    insert = {"insert": own.name, "documents": part}
                    await runner.run(ctx.db, ctx.data_command(insert))
                held = [d for d in docs if hashable_id(d["_id"]) in own.ids]
                for part in chunks(held):
                    updates = [{"q": {"_id": d["_id"]}, "u": d, "upsert": True} for d in part]
                    update = {"update": own.name, "updates": updates}
                    await runner.run(ctx.db, ctx.data_command(update))
                out.cache.append((own, ids, False))
            out.matched = len(docs)
            out.changes.extend(Change(d["_id"], wal.INSERT, None, d) for d in docs)

        if self._takes_capped_path(ctx):
            return await self._insert_capped(ctx, docs)
        try:
            return await self.run_statement(ctx, body)
        except StatementError as exc:
            if exc.code == DUPLICATE_KEY:
                raise NeedsStatements from None
            raise
        except CommandError as exc:
            if exc.code == DUPLICATE_KEY or "writeErrors" in exc.reply:
                raise NeedsStatements from None
            if self._found_capped(ctx, exc):
                return await self._insert_capped(ctx, docs)
            raise

    # -- capped collections of main ------------------------------------------------

    def _takes_capped_path(self, ctx: WriteContext) -> bool:
        return ctx.ns in self._capped and ctx.branch.name == MAIN and ctx.joined is None

    def _found_capped(self, ctx: WriteContext, exc: CommandError) -> bool:
        """Whether ``exc`` is mongod refusing to write a capped collection of main in
        a transaction (learnt once per namespace: no write pays a lookup for it)."""
        if exc.code != NOT_IN_TRANSACTION or ctx.branch.name != MAIN or ctx.joined is not None:
            return False
        self._capped.add(ctx.ns)
        return True

    async def _insert_capped(self, ctx: WriteContext, docs: list[dict[str, Any]]) -> Outcome:
        """Insert into a capped collection of main, which mongod never writes in a
        transaction: log, then insert, then confirm.

        The WAL entries, marked ``unconfirmed``, commit first with the children's
        tombstones (children never see main's later documents); the documents go
        in after, in order, as the client's insert would; then the entries of the
        documents that went in are confirmed and the rest removed. The log so
        never misses a write; a crash between the steps leaves entries that say
        they were never confirmed.
        """
        async with self.catalog.forks.writing(), self.lock(ctx.ns):

            async def log_only(
                runner: Runner, view: View, own: Overlay | None, out: Outcome
            ) -> None:
                out.changes.extend(Change(d["_id"], wal.INSERT, None, d) for d in docs)

            logged = replace(ctx, retry=None, extra={**(ctx.extra or {}), wal.UNCONFIRMED: True})
            out = await self.run_statement(logged, log_only)
            first = out.lsns[0]
            cmd = {"insert": ctx.coll, "documents": docs, "ordered": True}
            if ctx.write_concern is not None:
                cmd["writeConcern"] = ctx.write_concern
            reply = await self.catalog.db.reply(ctx.db, ctx.data_command(cmd))
            done = int(reply.get("n", 0))
            lsns = list(range(first, first + len(docs)))
            await wal.confirm(self.catalog.db, lsns[:done], lsns[done:])
            if done and ctx.retry is not None:
                await remember(self.catalog.db, ctx, replace(out, matched=done))
            out.matched = done
            out.changes = out.changes[:done]
            out.write_concern_error = reply.get("writeConcernError")
            errors = reply.get("writeErrors")
            if errors and len(docs) > 1:
                raise NeedsStatements(done)
            if errors:
                raise_write_errors(reply)
            return out

    # -- whole documents (merge, reset, undo) -------------------------------------

    async def put_many(
        self, ctx: WriteContext, docs: list[tuple[Any, dict[str, Any] | None]]
    ) -> Outcome:
        """Make the branch hold exactly these versions of these documents (``None``:
        deleted), as one statement: one WAL entry per document that changes."""

        async def body(runner: Runner, view: View, own: Overlay | None, out: Outcome) -> None:
            pres = await view_docs(runner, view, [doc_id for doc_id, _ in docs])
            for doc_id, doc in docs:
                pre = pres.get(hashable_id(doc_id))
                if same_doc(pre, doc):
                    continue
                await self._put_one(runner, ctx, own, doc_id, pre, doc, out)
                op = wal.INSERT if pre is None else wal.DELETE if doc is None else wal.UPDATE
                out.matched += 1
                out.changes.append(Change(doc_id, op, pre, doc, replace=op == wal.UPDATE))

        return await self.run_statement(ctx, body)

    async def _put_one(
        self,
        runner: Runner,
        ctx: WriteContext,
        own: Overlay | None,
        doc_id: Any,
        pre: dict[str, Any] | None,
        doc: dict[str, Any] | None,
        out: Outcome,
    ) -> None:
        if own is not None:
            if doc is None:
                await tombstone_own(runner, ctx, own, doc_id, out)
            else:
                await put_own(runner, ctx, own, doc, out)
        elif doc is None:
            await runner.run(
                ctx.db, {"delete": ctx.coll, "deletes": [{"q": {"_id": doc_id}, "limit": 1}]}
            )
        elif pre is None:
            await runner.run(ctx.db, {"insert": ctx.coll, "documents": [doc]})
        else:
            await runner.run(
                ctx.db, {"update": ctx.coll, "updates": [{"q": {"_id": doc_id}, "u": doc}]}
            )

    # -- update ----------------------------------------------------------------

    async def _in_parts(
        self,
        ctx: WriteContext,
        stmt: dict[str, Any],
        once: Callable[[WriteContext, dict[str, Any]], Awaitable[Outcome]],
    ) -> Outcome:
        """Run a multi-document statement; one that matches more than a transaction
        should hold runs again as statements over parts of the ``_id``s it matched,
        each in its own transaction, as mongod's own multi-writes are not atomic."""
        try:
            return await once(ctx, stmt)
        except _Split as split:
            ids = split.ids
        total = Outcome()
        part_ctx = replace(ctx, retry=None)  # multi-writes are never retryable
        flt = stmt.get("q") or {}
        for start in range(0, len(ids), SPLIT_AT):
            part = {k: v for k, v in stmt.items() if k != "upsert"}
            part["q"] = pin({"$in": ids[start : start + SPLIT_AT]}, flt)
            done = await once(part_ctx, part)
            total.matched += done.matched
            total.modified += done.modified
            if done.lsns:
                total.lsns = [total.lsns[0] if total.lsns else done.lsns[0], done.lsns[-1]]
        return total

    @staticmethod
    def _maybe_split(ctx: WriteContext, matched: list[dict[str, Any]]) -> None:
        if len(matched) > SPLIT_AT and ctx.joined is None:
            raise _Split([d["_id"] for d in matched])

    async def update(self, ctx: WriteContext, stmt: dict[str, Any]) -> Outcome:
        stmt = {**stmt, "q": indexable(stmt.get("q") or {})}
        with _capped_refused(ctx, "update"):
            if stmt.get("multi"):
                return await self._in_parts(ctx, stmt, self._update_once)
            return await self._update_once(ctx, stmt)

    async def _update_once(self, ctx: WriteContext, stmt: dict[str, Any]) -> Outcome:
        return await self.run_statement(ctx, self.update_body(ctx, stmt))

    def update_body(
        self, ctx: WriteContext, stmt: dict[str, Any], *, grouped: bool = False
    ) -> Body:
        """What one update statement does inside its transaction (``stmt["q"]``
        already ``indexable``). ``grouped``: it runs in a group of statements
        (``run_group``), which may read its post-image later."""
        flt = stmt.get("q") or {}
        multi = bool(stmt.get("multi"))
        # In a group, a single-document update leaves reading its post-image to the
        # group's end (``_settle_posts``): one read for all of them.
        defer = grouped and not multi

        async def body(runner: Runner, view: View, own: Overlay | None, out: Outcome) -> None:
            matched = await view_find(
                runner,
                view,
                flt,
                limit=0 if multi else 1,
                sort=None if multi else stmt.get("sort"),
                collation=stmt.get("collation"),
                let=ctx.let,
                hint=stmt.get("hint"),
            )
            self._maybe_split(ctx, matched)
            if not matched:
                if stmt.get("upsert"):
                    await self._upsert(runner, ctx, view, own, stmt, out)
                    return
                plain = {k: v for k, v in stmt.items() if k != "upsert"}
                if own is None:
                    # Main passes through: the upstream validates the update and has its
                    # own say on whether a no-match update creates the collection.
                    await runner.run(
                        ctx.db, ctx.data_command({"update": ctx.coll, "updates": [plain]})
                    )
                else:
                    # mongod rejects an invalid update whether or not anything matches:
                    # show it the update, on the overlay, with a filter matching nothing.
                    plain["q"] = MATCH_NOTHING
                    await runner.run(
                        ctx.db, ctx.data_command({"update": own.name, "updates": [plain]})
                    )
                return
            out.matched = len(matched)
            if defer:
                await self._update_one_later(runner, ctx, own, matched[0], stmt, out)
            elif own is None:
                await self._update_main(runner, ctx, matched, stmt, out)
            else:
                for pre in matched:
                    post = await self._modify_own(runner, ctx, own, pre, stmt, out)
                    self._record_update(pre, post, stmt["u"], out)

        return body

    async def _update_one_later(
        self,
        runner: Runner,
        ctx: WriteContext,
        own: Overlay | None,
        pre: dict[str, Any],
        stmt: dict[str, Any],
        out: Outcome,
    ) -> None:
        """Apply a single-document update to the document the view picked (main's, or
        the branch's copy of it), with the user's filter pinned to its ``_id``; the
        group reads the post-image at its end. mongod's ``nModified`` says whether
        it changed anything; a copy-up that changed nothing is undone."""
        copied = own is not None and await self._copy_up(runner, ctx, own, pre)
        if own is None:
            upd = {k: v for k, v in stmt.items() if k not in ("upsert", "multi", "sort")}
            upd["q"] = pin(pre["_id"], stmt.get("q") or {})
        else:
            upd = _on_copy(pre, stmt)
        target = ctx.coll if own is None else own.name
        reply = await runner.run(ctx.db, ctx.data_command({"update": target, "updates": [upd]}))
        raise_write_errors(reply)
        if not reply.get("nModified"):
            if own is not None:
                await self._settle_copy(runner, ctx, own, pre, pre, copied, out)
            return
        if own is not None:
            out.cache.append((own, [pre["_id"]], False))
        replaced = is_replacement(stmt["u"])
        how = None if replaced else update_description.hints(stmt["u"])
        change = Change(pre["_id"], wal.UPDATE, pre, None, replaced, how)
        out.changes.append(change)
        out.deferred.append(change)

    async def _settle_posts(
        self, runner: Runner, coll: str, db: str, outcomes: list[Outcome]
    ) -> None:
        """At the end of a group: give each deferred change its post-image (the next
        change's pre-image of the same document, else the document as it is now);
        an update that changed nothing is no change, as mongod counts it."""
        waiting: dict[Any, Change] = {}
        for out in outcomes:
            for change in out.changes:
                earlier = waiting.pop(hashable_id(change.doc_id), None)
                if earlier is not None:
                    earlier.post = change.pre
            waiting.update((hashable_id(c.doc_id), c) for c in out.deferred)
        ids = [c.doc_id for c in waiting.values()]
        for start in range(0, len(ids), 500):  # big $in lists plan badly on some servers
            chunk = {"_id": {"$in": ids[start : start + 500]}}
            for post in await find_all(runner, db, {"find": coll, "filter": chunk}):
                waiting[hashable_id(post["_id"])].post = post
        for out in outcomes:
            for change in out.deferred:
                if change.post is None:
                    raise GroupFallback  # gone from under the group: cannot be
                out.modified += 1
            out.deferred = []

    def _record_update(
        self, pre: dict[str, Any], post: dict[str, Any], update: Any, out: Outcome
    ) -> None:
        """Count and log the change ``update`` (the client's) made, if it made one."""
        if not same_doc(pre, post):
            out.modified += 1
            replaced = is_replacement(update)
            how = None if replaced else update_description.hints(update)
            out.changes.append(Change(pre["_id"], wal.UPDATE, pre, post, replaced, how))

    async def _update_main(
        self,
        runner: Runner,
        ctx: WriteContext,
        matched: list[dict[str, Any]],
        stmt: dict[str, Any],
        out: Outcome,
    ) -> None:
        ids = [d["_id"] for d in matched]
        multi = bool(stmt.get("multi"))
        upd = {k: v for k, v in stmt.items() if k not in ("q", "upsert", "multi")}
        # In the transaction's snapshot the user's filter matches exactly ``matched``,
        # so a multi-update runs as the user wrote it; a single update is pinned to
        # the document the view picked.
        flt = stmt.get("q") or {}
        upd.update(q=flt if multi else pin(ids[0], flt), multi=multi)
        upd.pop("sort", None)  # the view's find chose the document by it
        await runner.run(ctx.db, ctx.data_command({"update": ctx.coll, "updates": [upd]}))
        by_id: dict[Any, dict[str, Any]] = {}
        for start in range(0, len(ids), 500):  # big $in lists plan badly on some servers
            chunk = {"_id": {"$in": ids[start : start + 500]}}
            for post in await find_all(runner, ctx.db, {"find": ctx.coll, "filter": chunk}):
                by_id[hashable_id(post["_id"])] = post
        for pre in matched:
            self._record_update(pre, by_id[hashable_id(pre["_id"])], stmt["u"], out)

    async def _copy_up(
        self, runner: Runner, ctx: WriteContext, own: Overlay, pre: dict[str, Any]
    ) -> bool:
        """Put the view's version of a document into the branch's overlay; True if it
        was not there."""
        assert own.ids is not None
        key = hashable_id(pre["_id"])
        if key in own.ids and key not in own.tombstones:
            return False
        await runner.run(
            ctx.db,
            {"update": own.name, "updates": [{"q": {"_id": pre["_id"]}, "u": pre, "upsert": True}]},
        )
        return True

    async def _settle_copy(
        self,
        runner: Runner,
        ctx: WriteContext,
        own: Overlay,
        pre: dict[str, Any],
        post: dict[str, Any],
        copied: bool,
        out: Outcome,
    ) -> None:
        """Undo a copy-up that changed nothing, so the branch keeps following its parent."""
        if copied and same_doc(pre, post):
            await runner.run(
                ctx.db, {"delete": own.name, "deletes": [{"q": {"_id": pre["_id"]}, "limit": 1}]}
            )
        else:
            out.cache.append((own, [pre["_id"]], False))

    async def _modify_own(
        self,
        runner: Runner,
        ctx: WriteContext,
        own: Overlay,
        pre: dict[str, Any],
        stmt: dict[str, Any],
        out: Outcome,
    ) -> dict[str, Any]:
        """Apply the update statement ``stmt`` to the branch's copy of ``pre`` (the
        user's filter pinned to its ``_id``, so positional operators work); returns
        the post-image. An ``update`` and a ``find`` by ``_id``, not one
        ``findAndModify``: every upstream applies a positional ``$`` in an update
        (the test upstream refuses it in findAndModify, and scans the collection
        for one), and the statement fails exactly as an update statement does."""
        copied = await self._copy_up(runner, ctx, own, pre)
        reply = await runner.run(
            ctx.db, ctx.data_command({"update": own.name, "updates": [_on_copy(pre, stmt)]})
        )
        raise_write_errors(reply)
        found = await runner.run(
            ctx.db, {"find": own.name, "filter": {"_id": pre["_id"]}, "limit": 1}
        )
        post = dict(found["cursor"]["firstBatch"][0])
        await self._settle_copy(runner, ctx, own, pre, post, copied, out)
        return post

    async def _upsert(
        self,
        runner: Runner,
        ctx: WriteContext,
        view: View,
        own: Overlay | None,
        stmt: dict[str, Any],
        out: Outcome,
    ) -> None:
        flt = stmt.get("q") or {}
        upd = {k: v for k, v in stmt.items() if k not in ("multi", "sort")}
        target = ctx.coll if own is None else own.name
        if own is not None:
            upd["q"] = conjoin(flt, NOT_TOMBSTONE)
            literal = _literal_id(flt)
            if literal is not _MISSING and hashable_id(literal) in own.tombstones:
                await runner.run(
                    ctx.db, {"delete": own.name, "deletes": [{"q": {"_id": literal}, "limit": 1}]}
                )
        reply = await runner.run(ctx.db, ctx.data_command({"update": target, "updates": [upd]}))
        raise_write_errors(reply)
        new_id = reply["upserted"][0]["_id"]
        if own is not None and await view_find(runner, below(view), {"_id": new_id}, limit=1):
            raise duplicate_key(ctx.ns, new_id)
        post = (await find_all(runner, ctx.db, {"find": target, "filter": {"_id": new_id}}))[0]
        if own is not None:
            out.cache.append((own, [new_id], False))
        out.upserted, out.did_upsert = new_id, True
        out.changes.append(Change(new_id, wal.INSERT, None, post))

    # -- delete ----------------------------------------------------------------

    async def delete(self, ctx: WriteContext, stmt: dict[str, Any]) -> Outcome:
        stmt = {**stmt, "q": indexable(stmt.get("q") or {})}
        with _capped_refused(ctx, "delete"):
            if not int(stmt.get("limit", 0)):
                return await self._in_parts(ctx, stmt, self._delete_once)
            return await self._delete_once(ctx, stmt)

    async def _delete_once(self, ctx: WriteContext, stmt: dict[str, Any]) -> Outcome:
        return await self.run_statement(ctx, self.delete_body(ctx, stmt))

    def delete_body(self, ctx: WriteContext, stmt: dict[str, Any]) -> Body:
        """What one delete statement does inside its transaction (``stmt["q"]``
        already ``indexable``)."""
        flt = stmt.get("q") or {}
        limit = int(stmt.get("limit", 0))

        async def body(runner: Runner, view: View, own: Overlay | None, out: Outcome) -> None:
            matched = await view_find(
                runner,
                view,
                flt,
                limit=limit,
                collation=stmt.get("collation"),
                let=ctx.let,
                hint=stmt.get("hint"),
            )
            self._maybe_split(ctx, matched)
            out.matched = len(matched)
            if not matched:
                return
            ids = [d["_id"] for d in matched]
            if own is None:
                # The transaction's snapshot makes the user's filter match exactly ``ids``.
                pinned = {**stmt, "q": flt, "limit": 0}
                if limit:
                    pinned.update(q={"_id": ids[0]}, limit=1)
                await runner.run(
                    ctx.db, ctx.data_command({"delete": ctx.coll, "deletes": [pinned]})
                )
            else:
                for doc_id in ids:
                    await tombstone_own(runner, ctx, own, doc_id, out)
            out.changes.extend(Change(d["_id"], wal.DELETE, d, None) for d in matched)

        return body

    # -- findAndModify -----------------------------------------------------------

    async def find_and_modify(self, ctx: WriteContext, cmd: dict[str, Any]) -> Outcome:
        cmd = {**cmd, "query": indexable(cmd.get("query") or {})}
        flt = cmd["query"]
        remove = bool(cmd.get("remove"))
        # Everything but what Argon decides itself (which document, whether to insert).
        statement = write_options("findAndModify", cmd)
        for decided in ("query", "sort", "upsert"):
            statement.pop(decided, None)

        async def body(runner: Runner, view: View, own: Overlay | None, out: Outcome) -> None:
            # An overlay need not have the index a hint names; main's collection does.
            passed = statement if view.passthrough else _without(statement, "hint")
            matched = await view_find(
                runner,
                view,
                flt,
                limit=1,
                sort=cmd.get("sort"),
                collation=cmd.get("collation"),
                let=cmd.get("let"),
                hint=cmd.get("hint"),
            )
            if not matched:
                if cmd.get("upsert") and not remove:
                    await self._fam_upsert(runner, ctx, view, own, cmd, passed, out)
                else:
                    await self._validate_update(runner, ctx, own, passed)
                    out.reply_value = {
                        "lastErrorObject": {"n": 0, "updatedExisting": False},
                        "value": None,
                    }
                return
            pre = matched[0]
            out.matched = 1
            target = ctx.coll if own is None else own.name
            copied = own is not None and await self._copy_up(runner, ctx, own, pre)
            reply = await runner.run(
                ctx.db,
                {"findAndModify": target, "query": pin(pre["_id"], flt), **passed},
            )
            if remove:
                if own is not None:
                    await tombstone_own(runner, ctx, own, pre["_id"], out)
                out.changes.append(Change(pre["_id"], wal.DELETE, pre, None))
            else:
                post = (
                    await find_all(runner, ctx.db, {"find": target, "filter": {"_id": pre["_id"]}})
                )[0]
                if own is not None:
                    await self._settle_copy(runner, ctx, own, pre, post, copied, out)
                self._record_update(pre, post, cmd.get("update"), out)
            out.reply_value = {
                "lastErrorObject": reply["lastErrorObject"],
                "value": reply.get("value"),
            }

        with _capped_refused(ctx, "findAndModify"):
            return await self.run_statement(ctx, body)

    @staticmethod
    async def _validate_update(
        runner: Runner, ctx: WriteContext, own: Overlay | None, passed: Mapping[str, Any]
    ) -> None:
        """Have mongod reject an invalid update of a findAndModify that matched
        nothing, as it would had something matched: the update runs as an update
        statement with a filter matching nothing (servers parse those updates
        whatever they match)."""
        if "update" not in passed or passed.get("remove"):
            return
        stmt = {"q": MATCH_NOTHING, "u": passed["update"]}
        stmt.update({k: passed[k] for k in ("arrayFilters", "collation") if k in passed})
        target = ctx.coll if own is None else own.name
        cmd = {"update": target, "updates": [stmt], **_only(passed, "let")}
        await runner.run(ctx.db, cmd)

    async def _fam_upsert(
        self,
        runner: Runner,
        ctx: WriteContext,
        view: View,
        own: Overlay | None,
        cmd: dict[str, Any],
        passed: dict[str, Any],
        out: Outcome,
    ) -> None:
        flt = cmd.get("query") or {}
        target = ctx.coll if own is None else own.name
        query = flt if own is None else conjoin(flt, NOT_TOMBSTONE)
        if own is not None:
            literal = _literal_id(flt)
            if literal is not _MISSING and hashable_id(literal) in own.tombstones:
                await runner.run(
                    ctx.db, {"delete": own.name, "deletes": [{"q": {"_id": literal}, "limit": 1}]}
                )
        reply = await runner.run(
            ctx.db, {"findAndModify": target, "query": query, "upsert": True, **passed}
        )
        new_id = reply["lastErrorObject"].get("upserted")
        if own is not None and await view_find(runner, below(view), {"_id": new_id}, limit=1):
            raise duplicate_key(ctx.ns, new_id)
        post = (await find_all(runner, ctx.db, {"find": target, "filter": {"_id": new_id}}))[0]
        if own is not None:
            out.cache.append((own, [new_id], False))
        out.upserted, out.did_upsert = new_id, True
        out.changes.append(Change(new_id, wal.INSERT, None, post))
        out.reply_value = {"lastErrorObject": reply["lastErrorObject"], "value": reply.get("value")}


_MISSING = object()


@contextmanager
def _capped_refused(ctx: WriteContext, what: str) -> Iterator[None]:
    """Turn mongod's refusal to write a capped collection in a transaction into
    Argon's own: the client asked for no transaction, Argon's write path needs one."""
    try:
        yield
    except CommandError as exc:
        if exc.code != NOT_IN_TRANSACTION or ctx.joined is not None:
            raise
        raise StatementError(
            COMMAND_NOT_SUPPORTED,
            f"{what} on capped collection {ctx.ns} is not supported on branch "
            f"{ctx.branch.name!r}: Argon logs each change in the transaction that makes "
            "it, and mongod writes capped collections only outside transactions "
            "(inserts are supported)",
        ) from None


def _busy(ctx: WriteContext) -> ArgonError:
    """A write whose branch collection another transaction keeps registering."""
    return ArgonError(
        WRITE_CONFLICT,
        f"write on {ctx.ns} (branch {ctx.branch.name!r}) waited too long for a transaction "
        "registering the same branch collection; retry it",
        labels=("TransientTransactionError" if ctx.joined else "RetryableWriteError",),
    )


def _stale_in_transaction(ctx: WriteContext) -> StaleTransaction:
    """What a client's transaction gets when another proxy changed the branch under it:
    a write conflict drivers retry by running the transaction again."""
    return StaleTransaction(
        WRITE_CONFLICT,
        f"write on {ctx.ns} (branch {ctx.branch.name!r}) conflicted with another proxy's "
        "write; the transaction must start again",
        labels=("TransientTransactionError",),
    )


def _literal_id(flt: Mapping[str, Any]) -> Any:
    """The ``_id`` an upsert with this filter would get from it, if it names one."""
    if "_id" not in flt:
        return _MISSING
    value = flt["_id"]
    if isinstance(value, dict) and value and next(iter(value)).startswith("$"):
        return value["$eq"] if set(value) == {"$eq"} else _MISSING
    return value


def _body(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "_id"}


__all__ = ["Writer"]
