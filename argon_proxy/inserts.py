"""Inserts, one document at a time or a whole batch as one statement.

Theory of operation: on main an insert goes straight to the collection, and
mongod enforces ``_id`` uniqueness itself. On a branch the document goes into
the branch's overlay, and Argon enforces uniqueness across the view: an
``_id`` any layer shows as a document is a duplicate key. A batch of
documents runs as one statement and one transaction (``insert_batch``) when
none of them can fail; when one would, nothing of it is applied and the
caller runs the documents one by one, which reports each write error at its
index exactly as mongod. Main's capped collections take a path of their own
(``capped.py``).
"""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from . import wal
from .capped import CappedInserts
from .catalog import Overlay, hashable_id
from .dbclient import CommandError
from .documents import put_own, view_docs, view_find
from .statements import Statements
from .txn import Runner
from .view import View
from .write_context import (
    DUPLICATE_KEY,
    Body,
    Change,
    NeedsStatements,
    Outcome,
    StatementError,
    WriteContext,
    chunks,
    duplicate_key,
)


class Inserts:
    """Inserts documents on any branch."""

    def __init__(self, statements: Statements, capped: CappedInserts) -> None:
        self.statements = statements
        self.capped = capped

    async def insert(self, ctx: WriteContext, doc: dict[str, Any]) -> Outcome:
        """Insert one document (given an ``_id`` if it has none) as one statement."""
        if "_id" not in doc:
            doc = {"_id": ObjectId(), **doc}
        if self.capped.takes_path(ctx):
            return await self.capped.insert(ctx, [doc])

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
            return await self.statements.run_statement(ctx, body, most=1)
        except CommandError as exc:
            if not self.capped.found(ctx, exc):
                raise
        return await self.capped.insert(ctx, [doc])

    async def insert_batch(self, ctx: WriteContext, docs: list[dict[str, Any]]) -> Outcome:
        """Insert all of ``docs`` (each with its ``_id``) as one statement and one
        transaction. Raises ``NeedsStatements`` when any of them would fail, so the
        caller runs them one by one and reports write errors exactly as mongod."""
        keys = {hashable_id(d["_id"]) for d in docs}
        if len(keys) != len(docs):
            raise NeedsStatements
        if self.capped.takes_path(ctx):
            return await self.capped.insert(ctx, docs)
        try:
            return await self.statements.run_statement(ctx, _batch_body(ctx, docs), most=len(docs))
        except StatementError as exc:
            if exc.code == DUPLICATE_KEY:
                raise NeedsStatements from None
            raise
        except CommandError as exc:
            if exc.code == DUPLICATE_KEY or "writeErrors" in exc.reply:
                raise NeedsStatements from None
            if self.capped.found(ctx, exc):
                return await self.capped.insert(ctx, docs)
            raise


def _batch_body(ctx: WriteContext, docs: list[dict[str, Any]]) -> Body:
    """What a batch of inserts does inside its transaction."""

    async def body(runner: Runner, view: View, own: Overlay | None, out: Outcome) -> None:
        ids = [d["_id"] for d in docs]
        if own is None:  # main: mongod enforces _id uniqueness itself
            for part in chunks(docs):
                await runner.run(ctx.db, ctx.data_command({"insert": ctx.coll, "documents": part}))
        else:
            if await view_docs(runner, view, ids, id_only=True):
                raise NeedsStatements
            await _insert_own(runner, ctx, own, docs)
            out.cache.append((own, ids, False))
        out.matched = len(docs)
        out.changes.extend(Change(d["_id"], wal.INSERT, None, d) for d in docs)

    return body


async def _insert_own(
    runner: Runner, ctx: WriteContext, own: Overlay, docs: list[dict[str, Any]]
) -> None:
    """Write a batch's documents, none of which the view holds, into the overlay."""
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
