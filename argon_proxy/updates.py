"""Update statements, and the upsert tail findAndModify shares.

Theory of operation: an update finds the documents its filter matches in the
branch's view (at most one without ``multi``, chosen by ``sort``). On main it
applies to the base collection, the user's filter restricted to what the view
found (``update_main``). On a branch each matched document is copied up into
the branch's overlay and the user's update applied to that copy with mongod's
own update engine: an ``update`` with the user's filter pinned to its
``_id``, so positional operators work (``modify_own``); a copy-up the update
left unchanged is undone, so the branch keeps following its parent
(``settle_copy``). In a group of statements a single-document update leaves
reading its post-image to the group's end (``update_one_later``).

An update that matches nothing shows mongod the update anyway, so an invalid
one fails as on mongod, or upserts: on a branch the upsert's filter skips
tombstones, a tombstone under the ``_id`` it names goes first, and the new
``_id`` must not be a document of a layer below (``upserted``, which
findAndModify's upsert shares).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import update_description, wal
from .capped import capped_refused
from .catalog import Overlay, hashable_id
from .documents import below, find_all, find_ids, view_find
from .multi_writes import in_parts, maybe_split
from .statements import Statements
from .txn import Runner, run_or_defer
from .view import MATCH_NOTHING, NOT_TOMBSTONE, View, conjoin, indexable, pin
from .write_context import (
    Body,
    Change,
    Outcome,
    WriteContext,
    duplicate_key,
    is_replacement,
    raise_write_errors,
    same_doc,
)

_MISSING = object()


class Updates:
    """Runs update statements on any branch."""

    def __init__(self, statements: Statements) -> None:
        self.statements = statements

    async def update(self, ctx: WriteContext, stmt: dict[str, Any]) -> Outcome:
        """Run one update statement (a multi-document one in parts, if need be)."""
        stmt = {**stmt, "q": indexable(stmt.get("q") or {})}
        with capped_refused(ctx, "update"):
            if stmt.get("multi"):
                return await in_parts(ctx, stmt, self._update_once)
            return await self._update_once(ctx, stmt, most=1)

    async def _update_once(
        self, ctx: WriteContext, stmt: dict[str, Any], most: int | None = None
    ) -> Outcome:
        return await self.statements.run_statement(ctx, update_body(ctx, stmt), most=most)


def update_body(ctx: WriteContext, stmt: dict[str, Any], *, grouped: bool = False) -> Body:
    """What one update statement does inside its transaction (``stmt["q"]``
    already ``indexable``). ``grouped``: it runs in a group of statements
    (``statement_groups.py``), which may read its post-image later."""
    flt = stmt.get("q") or {}
    multi = bool(stmt.get("multi"))
    # In a group, a single-document update leaves reading its post-image to the
    # group's end (``settle_posts``): one read for all of them.
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
        maybe_split(ctx, matched)
        if not matched:
            if stmt.get("upsert"):
                await _upsert(runner, ctx, view, own, stmt, out)
            else:
                await _validate(runner, ctx, own, stmt)
            return
        out.matched = len(matched)
        if defer:
            await _update_one_later(runner, ctx, own, matched[0], stmt, out)
        elif own is None:
            await _update_main(runner, ctx, matched, stmt, out)
        else:
            for pre in matched:
                post = await modify_own(runner, ctx, own, pre, stmt, out)
                record_update(pre, post, stmt["u"], out)

    return body


async def _validate(
    runner: Runner, ctx: WriteContext, own: Overlay | None, stmt: dict[str, Any]
) -> None:
    """Show mongod an update that matched nothing (and does not upsert)."""
    plain = {k: v for k, v in stmt.items() if k != "upsert"}
    if own is None:
        # Main passes through: the upstream validates the update and has its
        # own say on whether a no-match update creates the collection.
        await runner.run(ctx.db, ctx.data_command({"update": ctx.coll, "updates": [plain]}))
    else:
        # mongod rejects an invalid update whether or not anything matches:
        # show it the update, on the overlay, with a filter matching nothing.
        plain["q"] = MATCH_NOTHING
        await runner.run(ctx.db, ctx.data_command({"update": own.name, "updates": [plain]}))


async def _apply_pinned(
    runner: Runner,
    ctx: WriteContext,
    own: Overlay | None,
    pre: dict[str, Any],
    stmt: dict[str, Any],
) -> tuple[bool, dict[str, Any]]:
    """Apply update statement ``stmt`` to the document the view picked: main's, or
    the branch's copy of it (copied up first). The user's filter is pinned to its
    ``_id``, without what chose the document (sort, upsert, multi), and on an
    overlay without ``hint`` (it need not have the index). Returns whether it was
    copied up, and mongod's reply."""
    copied, command = await _pinned_update(runner, ctx, own, pre, stmt)
    reply = await runner.run(ctx.db, command)
    raise_write_errors(reply)
    return copied, reply


async def _pinned_update(
    runner: Runner,
    ctx: WriteContext,
    own: Overlay | None,
    pre: dict[str, Any],
    stmt: dict[str, Any],
) -> tuple[bool, dict[str, Any]]:
    """Copy the document up if need be (``_apply_pinned``); returns whether it was
    copied, and the update command to run."""
    copied = own is not None and await copy_up(runner, ctx, own, pre)
    dropped = ("upsert", "multi", "sort") if own is None else ("upsert", "multi", "sort", "hint")
    upd = {k: v for k, v in stmt.items() if k not in dropped}
    upd["q"] = pin(pre["_id"], stmt.get("q") or {})
    target = ctx.coll if own is None else own.name
    return copied, ctx.data_command({"update": target, "updates": [upd]})


def _change(pre: dict[str, Any], post: dict[str, Any] | None, update: Any) -> Change:
    """The WAL change of update ``update`` (the client's) of ``pre``."""
    replaced = is_replacement(update)
    how = None if replaced else update_description.hints(update)
    return Change(pre["_id"], wal.UPDATE, pre, post, replaced, how)


async def _update_one_later(
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
    copied, reply = await _apply_pinned(runner, ctx, own, pre, stmt)
    if not reply.get("nModified"):
        if own is not None:
            await settle_copy(runner, ctx, own, pre, pre, copied, out)
        return
    if own is not None:
        out.cache.append((own, [pre["_id"]], False))
    change = _change(pre, None, stmt["u"])
    out.changes.append(change)
    out.deferred.append(change)


def record_update(pre: dict[str, Any], post: dict[str, Any], update: Any, out: Outcome) -> None:
    """Count and log the change ``update`` (the client's) made, if it made one."""
    if not same_doc(pre, post):
        out.modified += 1
        out.changes.append(_change(pre, post, update))


async def _update_main(
    runner: Runner,
    ctx: WriteContext,
    matched: list[dict[str, Any]],
    stmt: dict[str, Any],
    out: Outcome,
) -> None:
    """Apply an update to main's collection, restricted to what the view matched."""
    ids = [d["_id"] for d in matched]
    multi = bool(stmt.get("multi"))
    upd = {k: v for k, v in stmt.items() if k not in ("q", "upsert", "multi")}
    # In the transaction's snapshot the user's filter matches exactly ``matched``,
    # so a multi-update runs as the user wrote it; a single update is pinned to
    # the document the view picked.
    flt = stmt.get("q") or {}
    upd.update(q=flt if multi else pin(ids[0], flt), multi=multi)
    upd.pop("sort", None)  # the view's find chose the document by it
    # The post-images' read goes with it: one round trip for both.
    await run_or_defer(runner, ctx.db, ctx.data_command({"update": ctx.coll, "updates": [upd]}))
    by_id: dict[Any, dict[str, Any]] = {}
    for post in await find_ids(runner, ctx.db, ctx.coll, ids):
        by_id[hashable_id(post["_id"])] = post
    for pre in matched:
        record_update(pre, by_id[hashable_id(pre["_id"])], stmt["u"], out)


async def copy_up(runner: Runner, ctx: WriteContext, own: Overlay, pre: dict[str, Any]) -> bool:
    """Put the view's version of a document into the branch's overlay; True if it
    was not there."""
    assert own.ids is not None
    key = hashable_id(pre["_id"])
    if key in own.ids and key not in own.tombstones:
        return False
    copy = {"update": own.name, "updates": [{"q": {"_id": pre["_id"]}, "u": pre, "upsert": True}]}
    await run_or_defer(runner, ctx.db, copy)  # goes with the command that changes the copy
    return True


async def settle_copy(
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
        undo = {"delete": own.name, "deletes": [{"q": {"_id": pre["_id"]}, "limit": 1}]}
        await run_or_defer(runner, ctx.db, undo)
    else:
        out.cache.append((own, [pre["_id"]], False))


async def modify_own(
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
    copied, command = await _pinned_update(runner, ctx, own, pre, stmt)
    await run_or_defer(runner, ctx.db, command)  # the post-image's read goes with it
    found = await runner.run(ctx.db, {"find": own.name, "filter": {"_id": pre["_id"]}, "limit": 1})
    post = dict(found["cursor"]["firstBatch"][0])
    await settle_copy(runner, ctx, own, pre, post, copied, out)
    return post


async def _upsert(
    runner: Runner,
    ctx: WriteContext,
    view: View,
    own: Overlay | None,
    stmt: dict[str, Any],
    out: Outcome,
) -> None:
    """Upsert: the update statement matched nothing in the view."""
    flt = stmt.get("q") or {}
    upd = {k: v for k, v in stmt.items() if k not in ("multi", "sort")}
    target = ctx.coll if own is None else own.name
    if own is not None:
        upd["q"] = conjoin(flt, NOT_TOMBSTONE)
        await clear_tombstone(runner, ctx, own, flt)
    reply = await runner.run(ctx.db, ctx.data_command({"update": target, "updates": [upd]}))
    raise_write_errors(reply)
    await upserted(runner, ctx, view, own, target, reply["upserted"][0]["_id"], out)


async def clear_tombstone(
    runner: Runner, ctx: WriteContext, own: Overlay, flt: dict[str, Any]
) -> None:
    """Before an upsert on a branch: remove the branch's tombstone of the ``_id``
    the filter names, if it names one, so the upsert can insert under it."""
    literal = _literal_id(flt)
    if literal is not _MISSING and hashable_id(literal) in own.tombstones:
        await runner.run(
            ctx.db, {"delete": own.name, "deletes": [{"q": {"_id": literal}, "limit": 1}]}
        )


async def upserted(
    runner: Runner,
    ctx: WriteContext,
    view: View,
    own: Overlay | None,
    target: str,
    new_id: Any,
    out: Outcome,
) -> None:
    """The tail of an upsert (update's and findAndModify's) that inserted ``new_id``
    into ``target``: on a branch the ``_id`` must not be a document of a layer
    below; the inserted document is the statement's change."""
    if own is not None and await view_find(runner, below(view), {"_id": new_id}, limit=1):
        raise duplicate_key(ctx.ns, new_id)
    post = (await find_all(runner, ctx.db, {"find": target, "filter": {"_id": new_id}}))[0]
    if own is not None:
        out.cache.append((own, [new_id], False))
    out.upserted, out.did_upsert = new_id, True
    out.changes.append(Change(new_id, wal.INSERT, None, post))


def _literal_id(flt: Mapping[str, Any]) -> Any:
    """The ``_id`` an upsert with this filter would get from it, if it names one."""
    if "_id" not in flt:
        return _MISSING
    value = flt["_id"]
    if isinstance(value, dict) and value and next(iter(value)).startswith("$"):
        return value["$eq"] if set(value) == {"$eq"} else _MISSING
    return value
