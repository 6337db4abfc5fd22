"""Whole-document writes: a branch made to hold given versions of documents.

Theory of operation: merges, resets and undos know the exact version each
document must end up as (or that it must be gone). ``put_many`` writes them
as one statement of the write path, so they freeze into children, log in the
WAL and commit like any user's write: one WAL entry per document that
changes, none for a document already as wanted.
"""

from __future__ import annotations

from typing import Any

from . import wal
from .catalog import Overlay, hashable_id
from .documents import put_own, tombstone_own, view_docs
from .statements import Statements
from .txn import Runner
from .view import View
from .write_context import Change, Outcome, WriteContext, same_doc


class WholeDocuments:
    """Writes whole versions of documents on any branch."""

    def __init__(self, statements: Statements) -> None:
        self.statements = statements

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
                await _put_one(runner, ctx, own, doc_id, pre, doc, out)
                op = wal.INSERT if pre is None else wal.DELETE if doc is None else wal.UPDATE
                out.matched += 1
                out.changes.append(Change(doc_id, op, pre, doc, replace=op == wal.UPDATE))

        return await self.statements.run_statement(ctx, body, most=len(docs))


async def _put_one(
    runner: Runner,
    ctx: WriteContext,
    own: Overlay | None,
    doc_id: Any,
    pre: dict[str, Any] | None,
    doc: dict[str, Any] | None,
    out: Outcome,
) -> None:
    """Write one document's wanted version (``doc``) over its current one (``pre``)."""
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
