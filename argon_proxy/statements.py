"""One write statement, one upstream transaction.

Theory of operation: before its transaction a statement loads the branch's
view and makes sure every overlay it may write exists (``prepare``); the
overlays whose id caches its decisions rest on are ``watched``. Its
transaction then checks that nobody changed those (``Catalog.verify``), runs
the statement's ``Body`` (find the pre-images, write, read the post-images),
judges the branch's unique indexes across the view (``unique.py``), freezes
the pre-images into the children (``freezes.py``), bumps the versions of the
overlays it wrote, writes the WAL entries (``write_log.py``) and the retry
record (``retries.py``), and commits. Only then do the shared id caches learn
what it wrote.

A statement whose transaction finds that another proxy changed what the
caches hold starts again, with them brought up to date; one that waits on
another transaction registering the same branch collection lets go of the
writers' lock meanwhile (``retrying``). A statement of a client's transaction
cannot start again by itself: it joins the client's transaction, learns
another proxy's changes before it runs, works on the transaction's own copies
of the caches, and answers a change under it with a write conflict that
drivers retry by running the whole transaction again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio

from . import retries, unique
from .catalog import (
    CacheMoved,
    Catalog,
    CatalogBusy,
    Overlay,
    StaleCatalog,
    TxnScope,
    overlay_key,
)
from .errors import WRITE_CONFLICT, ArgonError
from .freezes import freeze
from .indexes import list_specs
from .naming import MAIN
from .pending import Pending, TxnState, freeze_targets, transaction_key
from .retries import retried
from .txn import RETRY_FOR, JoinedTransaction, Receipt, Runner
from .view import View, build_view
from .write_context import (
    STALE_ATTEMPTS,
    Body,
    Outcome,
    StaleTransaction,
    WriteContext,
    duplicate_key,
    still_writable,
)
from .write_log import WriteLog
from .write_transactions import WriterLock, WriteTransactions

T = TypeVar("T")


@dataclass
class Watched:
    """The overlays a statement's decisions rested on (set once it has prepared)."""

    watched: list[Overlay] = field(default_factory=list)


@dataclass
class Prepared:
    """What a statement knows before its transaction starts."""

    view: View  # the branch's view of the collection
    own: Overlay | None  # the branch's overlay, which it writes (None on main)
    kids: list[Overlay]  # the children's overlays, which it freezes into
    uniques: list[dict[str, Any]]  # the unique indexes Argon must enforce on the branch
    watched: list[Overlay]  # the overlays whose id caches its decisions rest on


class Statements:
    """Runs write statements on any branch, each in its own transaction."""

    def __init__(
        self,
        catalog: Catalog,
        pending: Pending,
        transactions: WriteTransactions,
        log: WriteLog,
    ) -> None:
        self.catalog = catalog
        self.pending = pending  # what open client transactions wrote
        self.transactions = transactions
        self.log = log

    def lock(self, ns: str) -> WriterLock:
        """The lock this proxy's writers of ``ns`` (and of every collection) hold."""
        return self.transactions.lock(ns)

    async def prepare(self, ctx: WriteContext) -> Prepared:
        """Load the view and make sure every overlay the statement may write exists;
        also the unique indexes Argon must enforce on the branch, and the overlays
        whose id caches the statement's decisions rest on."""
        state = self.state(ctx)
        scope = self.scope(ctx.joined, state) if state is not None else None
        own = await self._own(ctx, state, scope) if ctx.branch.name != MAIN else None
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
        chain = [self.catalog.overlay(b, ctx.db, ctx.coll) for b in self.catalog.layers(ctx.branch)]
        if txn_overlays is not None:
            chain = [txn_overlays.get(ov.key, ov) if ov is not None else None for ov in chain]
        watched = [ov for ov in chain if ov is not None] + kids
        return Prepared(view, own, kids, uniques, watched)

    async def _own(
        self, ctx: WriteContext, state: TxnState | None, scope: TxnScope | None
    ) -> Overlay:
        """The branch's overlay of the collection, created if need be, its ids loaded."""
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
        return own

    def state(self, ctx: WriteContext) -> TxnState | None:
        """The state of the client transaction ``ctx`` joins, if it joins one."""
        return self.pending.state(transaction_key(ctx.joined)) if ctx.joined is not None else None

    def scope(self, joined: Runner | None, state: TxnState) -> TxnScope:
        """Where the catalog changes of a client's transaction go: inside it (outside,
        they would wait for the LSN counter it holds), and into its own copies."""
        assert joined is not None

        async def announce() -> None:
            await self.catalog.announce_in(joined)

        return TxnScope(joined, announce, state.overlays)

    async def run_statement(
        self, ctx: WriteContext, body: Any, *, most: int | None = None
    ) -> Outcome:
        """Run one statement in its own transaction; returns what it did. ``most``:
        how many documents it can change at most, if that is known beforehand
        (its LSNs are then leased at no round trip of their own).

        The statement starts again, with the caches brought up to date, when its
        transaction finds that another proxy changed what they hold.
        """
        async with self.catalog.forks.writing(), self.lock(ctx.ns):
            if isinstance(ctx.joined, JoinedTransaction):
                return await self._run_joined(ctx, body)
            return await self.retrying(ctx, lambda stale: self._run_once(ctx, body, stale, most))

    async def _run_joined(self, ctx: WriteContext, body: Body) -> Outcome:
        """Run a statement of a client's transaction, which cannot start again by
        itself: another proxy's changes are learnt before its statement, not in it."""
        kids = [
            ov
            for kid in self.catalog.layer_kids(ctx.branch.name)
            if (ov := self.catalog.overlay(kid, ctx.db, ctx.coll)) is not None
        ]
        ctx.branch = await self.catalog.sync(ctx.branch, ctx.db, also=kids)
        still_writable(ctx)
        before = freeze_targets(self.catalog, ctx.branch.name, ctx.db, ctx.coll)
        try:
            outcome = await self._run_once(ctx, body, Watched())
        except StaleCatalog:
            raise _stale_in_transaction(ctx) from None
        self._note_basis(ctx, before)
        return outcome

    async def retrying(self, ctx: WriteContext, once: Callable[[Watched], Awaitable[T]]) -> T:
        """Run ``once`` (one transaction of a statement or of a group of statements)
        until it gets past other proxies' catalog changes and busy forks."""
        stale_left, deadline, pause = STALE_ATTEMPTS, trio.current_time() + RETRY_FOR, 0.002
        while stale_left:
            stale = Watched()
            try:
                done = await once(stale)
                ctx.applied.current = True  # its transaction checked the caches
                return done
            except CatalogBusy:
                if ctx.joined is not None or trio.current_time() > deadline:
                    raise _busy(ctx) from None
                async with self.lock(ctx.ns).paused():
                    await trio.sleep(pause)
                pause = min(pause * 2, 0.25)
                continue
            except StaleCatalog:
                stale_left -= 1
                if ctx.joined is not None:  # the client's transaction must start again
                    raise _stale_in_transaction(ctx) from None
                if not ctx.applied.current:  # nothing of the command ran: all again
                    raise CacheMoved from None
                ctx.branch = await self.catalog.sync(ctx.branch, ctx.db, also=stale.watched)
                still_writable(ctx)
        raise ArgonError(
            WRITE_CONFLICT,
            f"write on {ctx.ns} (branch {ctx.branch.name!r}) kept conflicting with other "
            "proxies' writes; retry it",
            labels=("RetryableWriteError",),
        )

    async def _run_once(
        self, ctx: WriteContext, body: Body, stale: Watched, most: int | None = None
    ) -> Outcome:
        prep = await self.prepare(ctx)
        state = self.state(ctx)
        stale.watched = prep.watched  # what to bring up to date if another proxy got there first
        unit = self._unit(ctx, body, prep, state, most)
        if ctx.joined is None:
            return await self._run_alone(ctx, unit, prep)
        # A client's transaction cannot be retried: its freezes are careful at once.
        assert state is not None
        return await self._run_in_client_transaction(ctx, unit, prep, state)

    def _unit(
        self,
        ctx: WriteContext,
        body: Body,
        prep: Prepared,
        state: TxnState | None,
        most: int | None,
    ) -> Callable[[Runner, bool], Awaitable[Outcome]]:
        """The statement's transaction, given its runner and whether it freezes
        carefully."""

        async def unit(runner: Runner, careful: bool) -> Outcome:
            ahead = self.log.lease_ahead(runner, most)
            await self.catalog.verify(runner, prep.watched, epochs=ctx.joined is None)
            outcome = Outcome()
            await body(runner, prep.view, prep.own, outcome)
            if prep.uniques:
                hit = await unique.find_collision(runner, prep.view, prep.uniques, outcome.changes)
                if hit is not None:
                    raise duplicate_key(ctx.ns, None, hit.index, hit.key, hit.pattern)
            await freeze(runner, ctx, prep.kids, outcome.changes, outcome, careful=careful)
            outcome.bumped = Catalog.distinct(ov for ov, _, _ in outcome.cache)
            # The WAL's write moves the overlays' versions. A client's transaction
            # moves them at its commit (``WriteLog.log_commit``): held until then,
            # they would hold up every other writer of these overlays while the
            # client thinks.
            bumps = [ov.key for ov in outcome.bumped] if state is None else []
            # With a retry record: an earlier attempt that committed makes this fail
            # (and roll back).
            records = retries.records(ctx, [outcome]) if ctx.retry is not None else None
            outcome.lsns = await self.log.log(
                runner, ctx, outcome.changes, records, ahead, bumps=bumps
            )
            return outcome

        return unit

    async def _run_alone(
        self,
        ctx: WriteContext,
        unit: Callable[[Runner, bool], Awaitable[Outcome]],
        prep: Prepared,
    ) -> Outcome:
        """Commit the statement in a transaction of its own. A retryable one that
        failed answers what an earlier attempt that applied it did, if one did."""
        receipt = Receipt()
        try:
            outcome = await self.transactions.commit(ctx, prep.kids, unit, receipt)
            outcome.write_concern_error = receipt.write_concern_error
        except StaleCatalog:
            raise
        except Exception:
            done = await retried(self.catalog, ctx) if ctx.retry is not None else None
            if done is None:
                raise
            ctx.applied.any = True
            return done
        await self.learn_committed(prep.own, outcome)
        return outcome

    async def _run_in_client_transaction(
        self,
        ctx: WriteContext,
        unit: Callable[[Runner, bool], Awaitable[Outcome]],
        prep: Prepared,
        state: TxnState,
    ) -> Outcome:
        """Run the statement inside the client's transaction, which may still abort:
        only its own copies learn its writes; the shared caches are read again from
        committed data."""
        assert ctx.joined is not None
        outcome = await unit(ctx.joined, True)
        state.learn(outcome.cache)
        for ov, _ids, _tomb in outcome.cache:
            shared = self.catalog.overlays.get(ov.key)
            if shared is not None:
                shared.ids, shared.tombstones = None, set()
        state.moved.update(ov.key for ov in outcome.bumped)
        own = prep.own
        if own is not None and not own.present and outcome.changes:
            own.present = True  # its own copy: the catalog learns it at the commit
            state.created[own.key] = own
        return outcome

    async def learn_committed(self, own: Overlay | None, outcome: Outcome) -> None:
        """Once a transaction committed: the shared id caches learn what it wrote and
        the overlays their new versions. A statement that wrote a document makes the
        collection exist on the branch; one that changed nothing leaves it as it
        was, as on mongod."""
        for ov, ids, tomb in outcome.cache:
            Catalog.note_written(ov, ids, tombstone=tomb)
        for ov in outcome.bumped:
            ov.version += 1
        if own is not None and not own.present and outcome.changes:
            await self.catalog.set_flags(own, cut=own.cut, present=True)

    def _note_basis(self, ctx: WriteContext, before: tuple[Any, ...]) -> None:
        """After a statement of a client's transaction: what it froze into must be
        what its earlier statements of the same collection froze into."""
        state = self.state(ctx)
        assert state is not None
        key = (ctx.branch.name, ctx.db, ctx.coll)
        now_ = freeze_targets(self.catalog, *key)
        if now_ != before or state.basis.setdefault(key, before) != before:
            raise _stale_in_transaction(ctx)


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


async def confirm_writable(catalog: Catalog, ctx: WriteContext, what: str) -> None:
    """Refuse a write command that changed nothing if its branch, as now stored,
    takes no direct writes.

    A statement that changed something learned the stored catalog in its own
    transaction (its LSNs come with the catalog's epoch); one that changed
    nothing (no document matched, a duplicate key) never asked, and another
    proxy may have protected or archived the branch since this proxy's caches
    let the command in. Its answer must be the refusal the other proxy gives.
    """
    if ctx.joined is not None or ctx.applied.any:
        return
    await catalog.refresh()
    stored = catalog.branches.get(ctx.branch.name)
    if stored is not None:
        ctx.branch = stored
        still_writable(ctx, what)
