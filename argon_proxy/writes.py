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

Statements of one command run in order; ``ordered`` stops at the first
failure, and failures become ``writeErrors`` exactly where mongod puts them
(``write_commands.py``). The parts, each of which explains itself:

- ``write_context.py``: what a statement works with, what it did, how it fails;
- ``documents.py``: finding documents in the view, writing the branch's own;
- ``statements.py``: one statement's transaction (steps 1 to 5), its retries
  past other proxies' changes, and statements of a client's transaction;
- ``statement_groups.py``: several statements of one command in one transaction;
- ``freezes.py``, ``write_log.py``, ``retries.py``: what a transaction writes
  besides the data (children's images, WAL entries, retry records);
- ``write_transactions.py``: the writers' lock and their upstream transactions;
- ``inserts.py``, ``updates.py``, ``deletes.py``, ``find_and_modify.py``: the
  statements themselves; ``multi_writes.py``: large multi-writes in parts;
  ``capped.py``: main's capped collections; ``whole_documents.py``: the
  whole-document writes of merges, resets and undos.

``Writer`` puts them together for the rest of the proxy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from .capped import CappedInserts
from .catalog import Catalog, Overlay
from .deletes import Deletes, delete_body
from .find_and_modify import FindAndModify
from .inserts import Inserts
from .pending import Pending, TxnState
from .pinned_updates import pinned_ids, run_pinned
from .statement_groups import Batch, StatementGroups
from .statements import Statements
from .txn import Receipt, Runner, SessionPool
from .updates import Updates, update_body
from .upstream import UpstreamPool
from .view import View, indexable
from .whole_documents import WholeDocuments
from .write_context import Body, Outcome, WriteContext
from .write_log import WriteLog
from .write_transactions import WriterLock, WriteTransactions

T = TypeVar("T")


class Writer:
    """Executes write commands on any branch."""

    def __init__(
        self,
        pool: UpstreamPool,
        catalog: Catalog,
        sessions: SessionPool | None = None,
        pending: Pending | None = None,
    ) -> None:
        self.catalog = catalog
        self.pending = pending or Pending()  # what open client transactions wrote
        self.transactions = WriteTransactions(pool, catalog, sessions)
        self.log = WriteLog(catalog, self.pending)
        self.statements = Statements(catalog, self.pending, self.transactions, self.log)
        self.groups = StatementGroups(self.statements)
        self.capped = CappedInserts(catalog, self.statements)
        self.inserts = Inserts(self.statements, self.capped)
        self.updates = Updates(self.statements)
        self.deletes = Deletes(self.statements)
        self.fam = FindAndModify(self.statements)
        self.whole = WholeDocuments(self.statements)

    def lock(self, ns: str) -> WriterLock:
        """The lock this proxy's writers of ``ns`` (and of every collection) hold."""
        return self.transactions.lock(ns)

    async def in_transaction(
        self,
        unit: Callable[[Runner], Awaitable[T]],
        *,
        write_concern: Mapping[str, Any] | None = None,
        receipt: Receipt | None = None,
        restart_on_stale: bool = False,
    ) -> T:
        """``run_in_transaction`` with this proxy's sessions, under the writers' lock
        (``WriteTransactions.in_transaction``)."""
        return await self.transactions.in_transaction(
            unit, write_concern=write_concern, receipt=receipt, restart_on_stale=restart_on_stale
        )

    async def log_commit(self, joined: Runner, state: TxnState) -> int | None:
        """Write a client's transaction's WAL entries before it commits
        (``WriteLog.log_commit``)."""
        return await self.log.log_commit(joined, state)

    async def insert(self, ctx: WriteContext, doc: dict[str, Any]) -> Outcome:
        return await self.inserts.insert(ctx, doc)

    async def insert_batch(self, ctx: WriteContext, docs: list[dict[str, Any]]) -> Outcome:
        return await self.inserts.insert_batch(ctx, docs)

    async def update(self, ctx: WriteContext, stmt: dict[str, Any]) -> Outcome:
        return await self.updates.update(ctx, stmt)

    async def delete(self, ctx: WriteContext, stmt: dict[str, Any]) -> Outcome:
        return await self.deletes.delete(ctx, stmt)

    async def find_and_modify(self, ctx: WriteContext, cmd: dict[str, Any]) -> Outcome:
        return await self.fam.find_and_modify(ctx, cmd)

    async def put_many(
        self, ctx: WriteContext, docs: list[tuple[Any, dict[str, Any] | None]]
    ) -> Outcome:
        return await self.whole.put_many(ctx, docs)

    async def group(
        self, ctx: WriteContext, name: str, statements: list[dict[str, Any]]
    ) -> list[Outcome] | None:
        """Single-document updates or deletes (``name``) of one command, from index
        ``ctx.statement``, as one transaction (``StatementGroups.run``); None: run
        them one by one."""
        if self.capped.takes_path(ctx):
            return None  # main's capped collections take no transactions
        pinned = [{**s, "q": indexable(s.get("q") or {})} for s in statements]
        bodies: list[Body]
        batch: Batch | None = None
        if name == "update":
            bodies = [update_body(ctx, stmt, grouped=True) for stmt in pinned]
            ids = pinned_ids(pinned)
            if ids is not None:
                batch = _pinned_batch(ctx, pinned, ids)
        else:
            bodies = [delete_body(ctx, stmt) for stmt in pinned]
        return await self.groups.run(ctx, bodies, batch)


def _pinned_batch(ctx: WriteContext, statements: list[dict[str, Any]], ids: list[Any]) -> Batch:
    """A group's update statements by ``_id`` applied together (``pinned_updates.py``)."""

    async def batch(runner: Runner, view: View, own: Overlay | None) -> list[Outcome]:
        return await run_pinned(runner, ctx, view, own, statements, ids)

    return batch
