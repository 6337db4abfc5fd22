"""The WAL entries of write statements, numbered in commit order.

Theory of operation: every changed document gets one WAL entry, inserted in
the transaction of the statement that changed it. LSNs are allocated inside
that transaction, just before the WAL insert, so they follow commit order: an
LSN is visible exactly when its entry and its data are. Every write
transaction therefore updates the one LSN counter (``write_transactions.py``
says how writers take turns at it).

A statement of a client's transaction leaves its entries in the
transaction's state without LSNs, so the counter is not held while the client
thinks; the client's commit leases their LSNs and writes them inside the
transaction (``log_commit``), at a catalog epoch under which everything it
wrote froze into what it froze into.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from . import wal
from .catalog import Catalog, RiddenLease, StaleCatalog, now
from .dbclient import ERROR_DETAILS, CommandError
from .naming import INTERNAL_DB
from .pending import Pending, TxnState, freeze_targets
from .txn import JoinedTransaction, Runner, Transaction
from .write_context import (
    STALE_ATTEMPTS,
    Change,
    WriteContext,
    chunks,
    still_writable,
    takes_writes,
)


class WriteLog:
    """Writes the WAL entries of statements, with the catalog's LSN counter."""

    def __init__(self, catalog: Catalog, pending: Pending) -> None:
        self.catalog = catalog
        self.pending = pending  # what open client transactions wrote

    async def log(
        self,
        runner: Runner,
        ctx: WriteContext,
        changes: list[Change],
        retry_records: list[dict[str, Any]] | None = None,
        ahead: RiddenLease | None = None,
        *,
        bumps: Sequence[str] = (),
    ) -> list[int]:
        """Write the entries of ``changes`` in the runner's transaction, and the
        statements' ``retry_records`` (``retries.py``); returns the first and last
        LSN written (none in a client's transaction, yet). ``ahead``: LSNs leased
        already (``lease_ahead``), used if they came back and are enough.
        ``bumps``: the keys of the overlays whose versions the write moves
        (``Catalog.bump_keys``), in the same command where it can.

        Where the upstream speaks ``bulkWrite`` (MongoDB 8.0) and they are few,
        they go in one round trip; a failure of either (a retry record
        an earlier attempt wrote) raises ``CommandError`` as its insert would.
        """
        records = retry_records or []
        state = self.pending.peek(runner) if isinstance(runner, JoinedTransaction) else None
        if state is not None:  # a client's: its entries take their LSNs at its commit
            assert not bumps  # moved at its commit (``log_commit``)
            state.entries.extend(self.entries(0, ctx, changes))
            await _insert(runner, [("retries", records)])
            return []
        if not changes:
            await Catalog.bump_keys(runner, bumps)
            await _insert(runner, [("retries", records)])
            return []
        ctx.applied.any = True
        if ahead is not None and ahead.first is not None and ahead.count >= len(changes):
            first = ahead.first  # LSNs it does not use stay unused (LSNs have gaps)
        else:
            first = await self.catalog.allocate_lsns(runner, len(changes))
        self._still_writable(ctx)
        entries = self.entries(first, ctx, changes)
        if self._together(runner, entries, records):
            await _insert_together(runner, [("wal", entries), ("retries", records)], bumps)
        else:
            await Catalog.bump_keys(runner, bumps)  # goes with the first insert
            await _insert(runner, [("wal", entries), ("retries", records)])
        return [first, first + len(changes) - 1]

    def _still_writable(self, ctx: WriteContext) -> None:
        """Refuse the write, in its transaction, if its branch as this proxy holds
        it now takes no direct writes. The lease just confirmed that what this
        proxy holds is the stored catalog; it may have been reloaded since the
        write was let in (another proxy protected or archived the branch)."""
        stored = self.catalog.branches.get(ctx.branch.name)
        if stored is not None and stored.id == ctx.branch.id:
            still_writable(replace(ctx, branch=stored))

    def lease_ahead(self, runner: Runner, most: int | None) -> RiddenLease | None:
        """In one of Argon's own transactions, before its first command: lease LSNs
        for at most ``most`` changes behind that command (``Catalog.lease_behind``),
        saving the lease's round trip. None: ``most`` is unknown (a multi-document
        statement), or the runner is not such a transaction."""
        if not most or not isinstance(runner, Transaction) or runner.started:
            return None
        return self.catalog.lease_behind(runner, most)

    def _together(
        self, runner: Runner, entries: list[dict[str, Any]], records: list[dict[str, Any]]
    ) -> bool:
        """Whether one ``bulkWrite`` can carry them (it saves a round trip). Not as a
        transaction's first command: that one carries its read concern, which
        ``bulkWrite`` does not take."""
        if not records or self.catalog.db.pool.facts.max_wire_version < BULK_WRITE_WIRE_VERSION:
            return False
        if not getattr(runner, "started", False):
            return False
        return len(entries) + len(records) <= TOGETHER_AT_MOST

    async def log_commit(self, joined: Runner, state: TxnState) -> int | None:
        """Before a client's transaction commits: lease LSNs for the WAL entries its
        statements left (``log``) and write them inside it, with what the
        statements changed of the catalog (``TxnState.moved``, ``created``).
        Returns the first LSN of the lease, to release once the commit has
        answered (None: no entries)."""
        moved, state.moved = sorted(state.moved), set()
        await Catalog.bump_keys(joined, moved)
        created, state.created = list(state.created.values()), {}
        for ov in created:
            await self.catalog.set_flags(
                ov,
                cut=ov.cut,
                present=True,
                runner=joined,
                announce=lambda: self.catalog.announce_in(joined),
            )
        entries, state.entries = state.entries, []
        if not entries:
            return None
        lease = await self._lease_unchanged(state, len(entries))
        try:  # as the statements' own writes do (``_still_writable``)
            for name in {branch for branch, _db, _coll in state.basis}:
                stored = self.catalog.branches.get(name)
                if stored is not None:
                    takes_writes(stored, f"commitTransaction (branch {name!r})")
        except BaseException:
            await self.catalog.release_lsns(lease)
            raise
        first = lease
        wal.stamp(entries, first, now())
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

    @staticmethod
    def entries(first: int, ctx: WriteContext, changes: list[Change]) -> list[dict[str, Any]]:
        """The WAL documents of ``changes``, numbered from ``first``, written in
        one transaction (``wal.stamp``)."""
        ts = now()
        return [
            wal.entry(
                first + i,
                branch_id=ctx.branch.id,
                ns=ctx.ns,
                doc_id=ch.doc_id,
                op=ch.op,
                pre=ch.pre,
                post=ch.post,
                client=ctx.client,
                ts=ts,
                last=i == len(changes) - 1,
                extra=ctx.extra,
                replace=ch.replace,
                hints=ch.hints,
            )
            for i, ch in enumerate(changes)
        ]


BULK_WRITE_WIRE_VERSION = 25  # MongoDB 8.0: bulkWrite across collections, in transactions
# Documents one bulkWrite carries at most. It saves a round trip, which counts for
# a statement that changed a few documents; for hundreds, two plain inserts are
# cheaper on the test upstream (300 updates by _id: 0.29 s together, 0.22 s apart).
TOGETHER_AT_MOST = 16


async def _insert(runner: Runner, batches: list[tuple[str, list[dict[str, Any]]]]) -> None:
    """Insert each batch into its collection of ``__argon``, one command per chunk."""
    for coll, docs in batches:
        for part in chunks(docs):
            await runner.run(INTERNAL_DB, {"insert": coll, "documents": part})


async def _insert_together(
    runner: Runner, batches: list[tuple[str, list[dict[str, Any]]]], bumps: Sequence[str] = ()
) -> None:
    """Insert the batches into their collections of ``__argon`` in one ``bulkWrite``,
    in order, after moving the versions of the overlays ``bumps`` (as
    ``Catalog.bump_keys``); the first failure is raised as its own insert would
    raise it."""
    names = (["counters"] if bumps else []) + [coll for coll, _ in batches]
    ns_info = [{"ns": f"{INTERNAL_DB}.{coll}"} for coll in names]
    ops: list[dict[str, Any]] = [
        {"update": 0, "filter": u["q"], "updateMods": u["u"], "upsert": u["upsert"]}
        for u in Catalog.version_bumps(bumps)
    ]
    first = 1 if bumps else 0
    ops += [
        {"insert": i, "document": doc} for i, (_, docs) in enumerate(batches, first) for doc in docs
    ]
    command = {"bulkWrite": 1, "ops": ops, "nsInfo": ns_info, "ordered": True, "errorsOnly": True}
    reply = await runner.run("admin", command)
    if not reply.get("nErrors"):
        return
    failed = [r for r in reply.get("cursor", {}).get("firstBatch", []) if not r.get("ok")]
    first = failed[0] if failed else {}
    raise CommandError(
        {
            "ok": 0,
            "code": first.get("code", 2),
            "codeName": first.get("codeName", "BadValue"),
            "errmsg": first.get("errmsg", "bulkWrite of Argon's records failed"),
            **{k: first[k] for k in ERROR_DETAILS if k in first},
        }
    )
