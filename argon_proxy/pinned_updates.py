"""A group of single-document updates by ``_id``, applied as a few commands.

Theory of operation: ``bulk_write`` of ``UpdateOne({"_id": x}, ...)`` and
ORMs saving documents by ``_id`` send one ``update`` command whose
statements each name a different document by ``_id`` alone. Such statements
cannot affect one another (an ``_id`` never changes, so no statement can make
another's document match or stop matching), so inside the group's
transaction they run as: one read of every pre-image from the branch's view,
on a branch one copy-up of the documents the overlay lacks, one ``update``
command holding the statements (each pinned to its ``_id``, so mongod's own
update engine applies it), one read of the post-images, and on a branch one
delete of the copies an update left unchanged (so the branch keeps following
its parent).

Per statement, Argon knows which statements matched (the pre-images it read,
keyed by the exact BSON of the ``_id``) and which changed their document (the
post-image differs from the pre-image, mongod's ``nModified`` rule). mongod
evaluates every filter; its totals are the check: unless its ``n`` and
``nModified`` equal Argon's sums, or if any statement failed, the group falls
back to the statements one by one (``GroupFallback``), which answers each
exactly as mongod would. A document found under an ``_id`` no statement names
exactly (1.0 for 1) sends the group back too, and so does a collation making
mongod match what Argon did not key (the totals differ).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import bson

from .catalog import Overlay, hashable_id
from .documents import find_ids, view_docs
from .txn import Runner
from .updates import record_update
from .view import NOT_TOMBSTONE, View, conjoin
from .write_context import GroupFallback, Outcome, WriteContext, chunks, same_doc

# Statement fields that make a statement something other than "this one document".
_NOT_PINNED = ("upsert", "multi", "sort", "collation")


def pinned_ids(statements: list[dict[str, Any]]) -> list[Any] | None:
    """The ``_id`` each update statement names, if every one is a single-document
    update whose filter is ``{_id: value}`` alone and no two name the same value;
    else None (the statements run one at a time)."""
    ids: list[Any] = []
    seen: set[bytes] = set()
    for stmt in statements:
        if any(stmt.get(k) for k in _NOT_PINNED):
            return None
        flt = stmt.get("q")
        if not isinstance(flt, Mapping) or list(flt) != ["_id"]:
            return None
        value = flt["_id"]
        if isinstance(value, list | bson.Regex) or (
            isinstance(value, Mapping) and any(str(k).startswith("$") for k in value)
        ):
            return None  # an operator or a shape with its own matching rules
        key = _key(value)
        if key in seen:
            return None
        seen.add(key)
        ids.append(value)
    return ids


def _key(value: Any) -> bytes:
    """An ``_id``'s exact BSON: what ``$in`` matching is checked against."""
    return bson.encode({"v": value})


async def run_pinned(
    runner: Runner,
    ctx: WriteContext,
    view: View,
    own: Overlay | None,
    statements: list[dict[str, Any]],
    ids: list[Any],
) -> list[Outcome]:
    """Apply the statements (``pinned_ids`` said yes) in ``runner``'s transaction;
    each outcome holds its counts and its change, post-image included."""
    pres = await _pre_images(runner, view, ids)
    if not pres.keys() <= {_key(doc_id) for doc_id in ids}:
        raise GroupFallback  # found under an _id no statement names exactly (1.0 for 1)
    copied = await _copy_up(runner, ctx, own, list(pres.values()))
    target = ctx.coll if own is None else own.name
    reply_n, reply_modified = await _apply(runner, ctx, own, target, statements, ids, pres)
    posts = await _read(runner, ctx.db, target, [pre["_id"] for pre in pres.values()])
    outcomes: list[Outcome] = []
    unchanged: list[Any] = []
    for stmt, doc_id in zip(statements, ids, strict=True):
        out = Outcome()
        outcomes.append(out)
        pre = pres.get(_key(doc_id))
        if pre is None:
            continue
        out.matched = 1
        post = posts.get(_key(pre["_id"]))
        if post is None:
            raise GroupFallback  # gone from under the group: cannot be
        if same_doc(pre, post):
            if _key(pre["_id"]) in copied:
                unchanged.append(pre["_id"])
            elif own is not None:
                out.cache.append((own, [pre["_id"]], False))
            continue
        record_update(pre, post, stmt["u"], out)
        if own is not None:
            out.cache.append((own, [pre["_id"]], False))
    if reply_n != sum(o.matched for o in outcomes) or reply_modified != sum(
        o.modified for o in outcomes
    ):
        raise GroupFallback  # mongod matched otherwise than the _ids say: one by one
    if own is not None and unchanged:
        await _undo_copies(runner, ctx, own, unchanged)
    return outcomes


async def _pre_images(runner: Runner, view: View, ids: list[Any]) -> dict[bytes, dict[str, Any]]:
    found = await view_docs(runner, view, ids)
    return {_key(doc["_id"]): doc for doc in found.values()}


async def _copy_up(
    runner: Runner, ctx: WriteContext, own: Overlay | None, pres: list[dict[str, Any]]
) -> set[bytes]:
    """Put the view's version of each document the overlay lacks into it; returns
    the keys of those copied."""
    if own is None:
        return set()
    assert own.ids is not None
    missing = [
        pre for pre in pres if (k := hashable_id(pre["_id"])) not in own.ids or k in own.tombstones
    ]
    upserts = [{"q": {"_id": pre["_id"]}, "u": pre, "upsert": True} for pre in missing]
    for part in chunks(upserts):
        await runner.run(ctx.db, {"update": own.name, "updates": part})
    return {_key(pre["_id"]) for pre in missing}


async def _apply(
    runner: Runner,
    ctx: WriteContext,
    own: Overlay | None,
    target: str,
    statements: list[dict[str, Any]],
    ids: list[Any],
    pres: dict[bytes, dict[str, Any]],
) -> tuple[int, int]:
    """Send the statements, each pinned to its ``_id``; returns mongod's ``n`` and
    ``nModified``. On a branch a statement that matched nothing still goes (mongod
    rejects an invalid update whether or not it matches), never to a tombstone."""
    dropped = ("q",) if own is None else ("q", "hint")
    pinned = []
    for stmt, doc_id in zip(statements, ids, strict=True):
        upd = {k: v for k, v in stmt.items() if k not in dropped}
        # Not found: mongod's n still shows if it matches what Argon did not key
        # (a collation's "A" for "a"); a branch's own tombstones never match.
        found = _key(doc_id) in pres
        upd["q"] = {"_id": doc_id} if found or own is None else _visible(doc_id)
        pinned.append(upd)
    n = modified = 0
    for part in chunks(pinned):
        reply = await runner.run(ctx.db, ctx.data_command({"update": target, "updates": part}))
        if reply.get("writeErrors") or reply.get("upserted"):
            raise GroupFallback  # the statements one by one say which failed, and how
        n += int(reply.get("n", 0))
        modified += int(reply.get("nModified", 0))
    return n, modified


def _visible(doc_id: Any) -> dict[str, Any]:
    return conjoin({"_id": doc_id}, NOT_TOMBSTONE)


async def _read(runner: Runner, db: str, coll: str, ids: list[Any]) -> dict[bytes, dict[str, Any]]:
    return {_key(doc["_id"]): doc for doc in await find_ids(runner, db, coll, ids)}


async def _undo_copies(runner: Runner, ctx: WriteContext, own: Overlay, ids: list[Any]) -> None:
    """Delete copies an update left unchanged, so the branch keeps following its parent."""
    deletes = [{"q": {"_id": doc_id}, "limit": 1} for doc_id in ids]
    for part in chunks(deletes):
        await runner.run(ctx.db, {"delete": own.name, "deletes": part})
