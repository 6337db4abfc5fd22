"""Statement groups: consecutive statements of one command in one transaction.

Theory of operation: outside a client transaction, a run of single-document
updates or deletes of one command (and an insert's documents) share one
transaction per bounded part (``StatementGroups.run``; ``chunks``). Each
statement sees what the ones before it wrote, through a group-local copy of
the overlay's id cache; children get each document's first pre-image once;
one LSN lease and one WAL insert cover the group, and post-images are read
once at its end (``settle_posts``). A statement that fails sends its group
back to statement by statement, which commits the statements before it and
reports the error at its index exactly as mongod; retry records are per
statement either way (``retries.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from . import retries, unique
from .catalog import Catalog, CatalogBusy, Overlay, StaleCatalog, hashable_id
from .dbclient import CommandError
from .documents import find_ids
from .freezes import first_changes, freeze
from .pending import TxnState
from .statements import Prepared, Statements, Watched
from .txn import Receipt, Runner, is_transient
from .view import View, build_view
from .write_context import Body, Change, GroupFallback, Outcome, WriteContext

# What a group's transaction does, given its runner and whether it freezes
# carefully: each statement's outcome, and the total the group commits.
_GroupUnit = Callable[[Runner, bool], Awaitable[tuple[list[Outcome], Outcome]]]

# The statements of a group applied together rather than one after another
# (``pinned_updates.py``), given the runner, the branch's view and its overlay:
# each statement's outcome, post-images read.
Batch = Callable[[Runner, View, Overlay | None], Awaitable[list[Outcome]]]


class StatementGroups:
    """Runs consecutive statements of one command in one transaction."""

    def __init__(self, statements: Statements) -> None:
        self.statements = statements
        self.catalog = statements.catalog

    async def run(
        self, ctx: WriteContext, bodies: list[Body], batch: Batch | None = None
    ) -> list[Outcome] | None:
        """Run consecutive statements of one command, from index ``ctx.statement``, in
        one transaction: one commit, one LSN lease and one WAL insert for them all.

        Each statement still sees what the ones before it wrote. Returns None when
        they cannot commit together (one of them fails, or an earlier attempt of a
        retryable command applied some of them): nothing of them is applied then,
        and the caller runs them one by one, which answers each exactly as mongod.
        ``batch``: the same statements applied together, used where the branch has
        no unique index Argon must judge statement by statement.
        """
        assert ctx.joined is None and isinstance(ctx.statement, int)
        try:
            async with self.catalog.forks.writing(), self.statements.lock(ctx.ns):
                return await self.statements.retrying(
                    ctx, lambda stale: self._run_once(ctx, bodies, batch, stale)
                )
        except GroupFallback:
            return None

    async def _run_once(
        self, ctx: WriteContext, bodies: list[Body], batch: Batch | None, stale: Watched
    ) -> list[Outcome]:
        prep = await self.statements.prepare(ctx)
        stale.watched = prep.watched
        unit = self._unit(ctx, bodies, None if prep.uniques else batch, prep)
        receipt = Receipt()
        try:
            outcomes, total = await self.statements.transactions.commit(
                ctx, prep.kids, unit, receipt
            )
        except (StaleCatalog, CatalogBusy, GroupFallback):
            raise
        except Exception:
            if ctx.retry is None:
                raise
            # Whether it committed is unknown: statement by statement, each one
            # finds the record of an earlier attempt that applied it.
            raise GroupFallback from None
        await self.statements.learn_committed(prep.own, total)
        for out in outcomes:
            out.write_concern_error = receipt.write_concern_error
        return outcomes

    def _unit(
        self, ctx: WriteContext, bodies: list[Body], batch: Batch | None, prep: Prepared
    ) -> _GroupUnit:
        """The group's transaction, given its runner and whether it freezes carefully."""
        target = ctx.coll if prep.own is None else prep.own.name  # where the documents go

        async def unit(runner: Runner, careful: bool) -> tuple[list[Outcome], Outcome]:
            # Each statement changes one document at most.
            ahead = self.statements.log.lease_ahead(runner, len(bodies))
            await self.catalog.verify(runner, prep.watched)
            if batch is not None:
                outcomes = await batch(runner, prep.view, prep.own)
                total = Outcome()
                for out in outcomes:
                    total.changes.extend(out.changes)
                    total.cache.extend(out.cache)
            else:
                outcomes, total = await self._statements(runner, ctx, bodies, prep, target)
                await settle_posts(runner, target, ctx.db, outcomes)
            firsts = first_changes(total.changes)
            await freeze(runner, ctx, prep.kids, firsts, total, careful=careful)
            total.bumped = Catalog.distinct(ov for ov, _, _ in total.cache)
            bumps = [ov.key for ov in total.bumped]  # moved by the WAL's write
            records = retries.records(ctx, outcomes) if ctx.retry is not None else None
            try:
                total.lsns = await self.statements.log.log(
                    runner, ctx, total.changes, records, ahead, bumps=bumps
                )
            except CommandError as exc:
                if records and retries.group_fallback(exc):  # an earlier attempt's record
                    raise GroupFallback from None
                raise
            return outcomes, total

        return unit

    async def _statements(
        self,
        runner: Runner,
        ctx: WriteContext,
        bodies: list[Body],
        prep: Prepared,
        target: str,
    ) -> tuple[list[Outcome], Outcome]:
        """Run the group's statements in order, each seeing what the ones before it
        wrote; returns their outcomes and the group's total."""
        own = prep.own
        # The statements' own copies of the branch's overlay, which learn what
        # each statement wrote, so that the next one's view includes it.
        local = TxnState()
        mine = local.own(own) if own is not None else None
        now_view = prep.view
        outcomes, total = [], Outcome()
        for body in bodies:
            out = await self._one(runner, ctx, body, now_view, mine, prep.uniques, target)
            outcomes.append(out)
            total.changes.extend(out.changes)
            total.cache.extend((_shared(ov, mine, own), i, t) for ov, i, t in out.cache)
            if out.cache:
                local.learn(out.cache)
                now_view = await build_view(
                    self.catalog, ctx.branch, ctx.db, ctx.coll, local.overlays
                )
        return outcomes, total

    async def _one(
        self,
        runner: Runner,
        ctx: WriteContext,
        body: Body,
        view: View,
        mine: Overlay | None,
        uniques: list[dict[str, Any]],
        target: str,
    ) -> Outcome:
        """One statement of the group; one that fails sends the group back to
        statement by statement (``GroupFallback``)."""
        out = Outcome()
        try:
            await body(runner, view, mine, out)
            if uniques:
                # Argon judges the branch's unique indexes on post-images.
                await settle_posts(runner, target, ctx.db, [out])
                hit = await unique.find_collision(runner, view, uniques, out.changes)
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
        return out


async def settle_posts(runner: Runner, coll: str, db: str, outcomes: list[Outcome]) -> None:
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
    for post in await find_ids(runner, db, coll, [c.doc_id for c in waiting.values()]):
        waiting[hashable_id(post["_id"])].post = post
    for out in outcomes:
        for change in out.deferred:
            if change.post is None:
                raise GroupFallback  # gone from under the group: cannot be
            out.modified += 1
        out.deferred = []


def _shared(ov: Overlay, mine: Overlay | None, own: Overlay | None) -> Overlay:
    """The shared overlay a group's write went to (``mine``: the group's copy of ``own``)."""
    return own if ov is mine and own is not None else ov
