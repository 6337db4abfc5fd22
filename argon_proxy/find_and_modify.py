"""findAndModify: one document found, changed or removed, and returned.

Theory of operation: the view picks the document (the user's filter and
``sort``); on main mongod's own ``findAndModify`` then runs with the filter
pinned to that document's ``_id``; on a branch the document is first copied
up into the branch's overlay (``updates.copy_up``) and the command runs
there, a removal also writing a tombstone. The post-image is read after, and
a copy-up that changed nothing is undone. Matching nothing, it upserts with
the tail update statements use (``updates.upserted``), or has mongod judge
the update anyway, so an invalid one fails as it would had something
matched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import wal
from .capped import capped_refused
from .catalog import Overlay
from .documents import find_all, tombstone_own, view_find
from .statements import Statements
from .txn import Runner
from .updates import clear_tombstone, copy_up, record_update, settle_copy, upserted
from .view import MATCH_NOTHING, NOT_TOMBSTONE, View, conjoin, indexable, pin
from .write_context import Body, Change, Outcome, WriteContext, write_options


class FindAndModify:
    """Runs findAndModify on any branch."""

    def __init__(self, statements: Statements) -> None:
        self.statements = statements

    async def find_and_modify(self, ctx: WriteContext, cmd: dict[str, Any]) -> Outcome:
        """Run findAndModify ``cmd`` as one statement; its reply is ``reply_value``."""
        cmd = {**cmd, "query": indexable(cmd.get("query") or {})}
        body = _body(ctx, cmd)
        with capped_refused(ctx, "findAndModify"):
            return await self.statements.run_statement(ctx, body, most=1)


def _body(ctx: WriteContext, cmd: dict[str, Any]) -> Body:
    """What findAndModify ``cmd`` (its query already ``indexable``) does inside its
    transaction."""
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
                await _upsert(runner, ctx, view, own, cmd, passed, out)
            else:
                await _validate_update(runner, ctx, own, passed)
                out.reply_value = {
                    "lastErrorObject": {"n": 0, "updatedExisting": False},
                    "value": None,
                }
            return
        await _modify(runner, ctx, own, matched[0], cmd, passed, out)

    return body


async def _modify(
    runner: Runner,
    ctx: WriteContext,
    own: Overlay | None,
    pre: dict[str, Any],
    cmd: dict[str, Any],
    passed: dict[str, Any],
    out: Outcome,
) -> None:
    """Change or remove ``pre``, the document the view picked."""
    out.matched = 1
    target = ctx.coll if own is None else own.name
    copied = own is not None and await copy_up(runner, ctx, own, pre)
    reply = await runner.run(
        ctx.db,
        {"findAndModify": target, "query": pin(pre["_id"], cmd["query"]), **passed},
    )
    if cmd.get("remove"):
        if own is not None:
            await tombstone_own(runner, ctx, own, pre["_id"], out)
        out.changes.append(Change(pre["_id"], wal.DELETE, pre, None))
    else:
        post = (await find_all(runner, ctx.db, {"find": target, "filter": {"_id": pre["_id"]}}))[0]
        if own is not None:
            await settle_copy(runner, ctx, own, pre, post, copied, out)
        record_update(pre, post, cmd.get("update"), out)
    out.reply_value = {
        "lastErrorObject": reply["lastErrorObject"],
        "value": reply.get("value"),
    }


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


async def _upsert(
    runner: Runner,
    ctx: WriteContext,
    view: View,
    own: Overlay | None,
    cmd: dict[str, Any],
    passed: dict[str, Any],
    out: Outcome,
) -> None:
    """Upsert: the findAndModify matched nothing in the view."""
    flt = cmd.get("query") or {}
    target = ctx.coll if own is None else own.name
    query = flt if own is None else conjoin(flt, NOT_TOMBSTONE)
    if own is not None:
        await clear_tombstone(runner, ctx, own, flt)
    reply = await runner.run(
        ctx.db, {"findAndModify": target, "query": query, "upsert": True, **passed}
    )
    new_id = reply["lastErrorObject"].get("upserted")
    await upserted(runner, ctx, view, own, target, new_id, out)
    out.reply_value = {"lastErrorObject": reply["lastErrorObject"], "value": reply.get("value")}


def _only(fields: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k in names}


def _without(fields: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k not in names}
