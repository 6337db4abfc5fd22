"""Main's capped collections, which mongod never writes in a transaction.

Theory of operation: the write path runs every statement in a transaction,
and mongod refuses to write a capped collection in one. Argon learns which of
main's collections are capped from that refusal, once per namespace, so no
write pays a lookup for it. Inserts into them then take a path of their own:
log, then insert, then confirm (``CappedInserts.insert``). Updates, deletes
and findAndModify of a capped collection are refused as Argon's own error
(``capped_refused``): they cannot be logged in the transaction that makes
them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from . import wal
from .catalog import Catalog, Overlay
from .dbclient import CommandError
from .errors import COMMAND_NOT_SUPPORTED, NOT_IN_TRANSACTION
from .naming import MAIN
from .retries import remember
from .statements import Statements
from .txn import Runner
from .view import View
from .write_context import (
    Change,
    NeedsStatements,
    Outcome,
    StatementError,
    WriteContext,
    raise_write_errors,
)


class CappedInserts:
    """Inserts into main's capped collections, logged before they are made."""

    def __init__(self, catalog: Catalog, statements: Statements) -> None:
        self.catalog = catalog
        self.statements = statements
        self._capped: set[str] = set()  # main's namespaces mongod said are capped

    def takes_path(self, ctx: WriteContext) -> bool:
        """Whether a write of ``ctx`` goes to a capped collection of main, outside
        a client's transaction."""
        return ctx.ns in self._capped and ctx.branch.name == MAIN and ctx.joined is None

    def found(self, ctx: WriteContext, exc: CommandError) -> bool:
        """Whether ``exc`` is mongod refusing to write a capped collection of main in
        a transaction (learnt once per namespace: no write pays a lookup for it)."""
        if exc.code != NOT_IN_TRANSACTION or ctx.branch.name != MAIN or ctx.joined is not None:
            return False
        self._capped.add(ctx.ns)
        return True

    async def insert(self, ctx: WriteContext, docs: list[dict[str, Any]]) -> Outcome:
        """Insert into a capped collection of main, which mongod never writes in a
        transaction: log, then insert, then confirm.

        The WAL entries, marked ``unconfirmed``, commit first with the children's
        tombstones (children never see main's later documents); the documents go
        in after, in order, as the client's insert would; then the entries of the
        documents that went in are confirmed and the rest removed. The log so
        never misses a write; a crash between the steps leaves entries that say
        they were never confirmed.
        """
        async with self.catalog.forks.writing(), self.statements.lock(ctx.ns):

            async def log_only(
                runner: Runner, view: View, own: Overlay | None, out: Outcome
            ) -> None:
                out.changes.extend(Change(d["_id"], wal.INSERT, None, d) for d in docs)

            logged = replace(ctx, retry=None, extra={**(ctx.extra or {}), wal.UNCONFIRMED: True})
            out = await self.statements.run_statement(logged, log_only)
            reply = await self._insert_confirmed(ctx, docs, out.lsns[0])
            done = int(reply.get("n", 0))
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

    async def _insert_confirmed(
        self, ctx: WriteContext, docs: list[dict[str, Any]], first: int
    ) -> dict[str, Any]:
        """Insert ``docs``, logged from LSN ``first`` on, and confirm the entries of
        those that went in (removing the rest); returns mongod's reply."""
        cmd = {"insert": ctx.coll, "documents": docs, "ordered": True}
        if ctx.write_concern is not None:
            cmd["writeConcern"] = ctx.write_concern
        reply = await self.catalog.db.reply(ctx.db, ctx.data_command(cmd))
        done = int(reply.get("n", 0))
        lsns = list(range(first, first + len(docs)))
        await wal.confirm(self.catalog.db, lsns[:done], lsns[done:])
        return reply


@contextmanager
def capped_refused(ctx: WriteContext, what: str) -> Iterator[None]:
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
