"""Delete statements.

Theory of operation: a delete finds the documents its filter matches in the
branch's view (at most one with ``limit: 1``). On main it deletes them from
the base collection, the user's filter restricted to what the view found; on
a branch it writes a tombstone for each into the branch's overlay, which
hides every version below. A multi-document delete that matches too many
documents for one transaction runs in parts (``multi_writes.py``).
"""

from __future__ import annotations

from typing import Any

from . import wal
from .capped import capped_refused
from .catalog import Overlay
from .documents import tombstone_own, view_find
from .multi_writes import in_parts, maybe_split
from .statements import Statements
from .txn import Runner
from .view import View, indexable
from .write_context import Body, Change, Outcome, WriteContext


class Deletes:
    """Runs delete statements on any branch."""

    def __init__(self, statements: Statements) -> None:
        self.statements = statements

    async def delete(self, ctx: WriteContext, stmt: dict[str, Any]) -> Outcome:
        """Run one delete statement (a multi-document one in parts, if need be)."""
        stmt = {**stmt, "q": indexable(stmt.get("q") or {})}
        with capped_refused(ctx, "delete"):
            if not int(stmt.get("limit", 0)):
                return await in_parts(ctx, stmt, self._delete_once)
            return await self._delete_once(ctx, stmt, most=1)

    async def _delete_once(
        self, ctx: WriteContext, stmt: dict[str, Any], most: int | None = None
    ) -> Outcome:
        return await self.statements.run_statement(ctx, delete_body(ctx, stmt), most=most)


def delete_body(ctx: WriteContext, stmt: dict[str, Any]) -> Body:
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
        maybe_split(ctx, matched)
        out.matched = len(matched)
        if not matched:
            return
        ids = [d["_id"] for d in matched]
        if own is None:
            # The transaction's snapshot makes the user's filter match exactly ``ids``.
            pinned = {**stmt, "q": flt, "limit": 0}
            if limit:
                pinned.update(q={"_id": ids[0]}, limit=1)
            await runner.run(ctx.db, ctx.data_command({"delete": ctx.coll, "deletes": [pinned]}))
        else:
            for doc_id in ids:
                await tombstone_own(runner, ctx, own, doc_id, out)
        out.changes.extend(Change(d["_id"], wal.DELETE, d, None) for d in matched)

    return body
