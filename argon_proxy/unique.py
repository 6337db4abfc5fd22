"""Unique indexes across a branch's view.

Theory of operation: a branch's documents live in several collections (its
overlay, its ancestors' overlays, main's base), so no one mongod index can
hold a key unique across the view; overlays carry unique indexes as plain
ones, since tombstones and shadowed versions would collide in them. Instead,
inside a write's transaction and after the statement's documents are
written, each key the statement wrote is looked up in every layer of the
view: in the branch's own layer among the other documents, in lower layers
among the documents the branch does not shadow. mongod evaluates each lookup
(equality on every key path, with the index's collation, sparse and partial
filter), so key equality is mongod's: numbers by value, null and missing
alike, arrays element by element. A hit is a duplicate key error.

mongod checks a multi-document update document by document, in the order its
plan visits them: a document's new key collides with the old key of one it
has not reached yet (``$inc`` over consecutive keys, a swap), and whether it
does depends on that order, which no view can reproduce. So a key one
document takes from another document the statement also moves is refused
whatever the order (``_order_collision``): Argon refuses where mongod may, and
never applies what mongod may refuse.

The building blocks here are pure (``unique_specs``, ``key_filter``) except
``find_collision``, which only issues finds through the caller's runner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import bson

from .view import conjoin

if TYPE_CHECKING:
    from .view import View


class _Runner(Protocol):
    async def run(self, db: str, command: dict[str, Any]) -> dict[str, Any]: ...


class _Change(Protocol):
    doc_id: Any
    pre: dict[str, Any] | None
    post: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Collision:
    """A key the statement wrote that another document of the view already has."""

    index: str
    key: dict[str, Any]  # key path -> the value written
    pattern: dict[str, Any]  # the index's key pattern


def unique_specs(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The unique indexes Argon must enforce itself (``_id`` is handled apart)."""
    return [s for s in specs if s.get("unique") and s.get("name") != "_id_"]


def _values(value: Any, parts: list[str]) -> list[Any]:
    """Every value the dotted path reaches, arrays traversed as mongod does."""
    if not parts:
        return [value]
    if isinstance(value, dict):
        return _values(value[parts[0]], parts[1:]) if parts[0] in value else []
    if isinstance(value, list):
        out: list[Any] = []
        if parts[0].isdigit() and int(parts[0]) < len(value):
            out.extend(_values(value[int(parts[0])], parts[1:]))
        for item in value:
            if isinstance(item, dict):
                out.extend(_values(item, parts))
        return out
    return []


def key_values(spec: dict[str, Any], doc: dict[str, Any]) -> dict[str, list[Any]]:
    """For each key path of the index, the values ``doc`` has there ([] if missing)."""
    return {path: _values(doc, path.split(".")) for path in spec["key"]}


def key_filter(spec: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any] | None:
    """The filter matching documents whose key in ``spec`` equals one of ``doc``'s,
    or None when ``doc`` is not in the index (sparse, and no key field present)."""
    found = key_values(spec, doc)
    if spec.get("sparse") and not any(found.values()):
        return None
    parts: list[dict[str, Any]] = []
    for path, values in found.items():
        keys: list[Any] = []
        for value in values or [None]:
            # An array is indexed by its elements; an empty one by itself.
            keys.extend(value if isinstance(value, list) and value else [value])
        alternatives = [{path: {"$eq": k}} for k in keys]
        parts.append(alternatives[0] if len(alternatives) == 1 else {"$or": alternatives})
    if spec.get("sparse"):
        parts.append({"$or": [{path: {"$exists": True}} for path in spec["key"]]})
    if spec.get("partialFilterExpression"):
        parts.append(spec["partialFilterExpression"])
    return conjoin(*parts)


async def _first(
    runner: _Runner, db: str, coll: str, flt: dict[str, Any], spec: dict[str, Any]
) -> bool:
    cmd: dict[str, Any] = {
        "find": coll,
        "filter": flt,
        "projection": {"_id": 1},
        "limit": 1,
        "singleBatch": True,
    }
    if spec.get("collation"):
        cmd["collation"] = spec["collation"]
    reply = await runner.run(db, cmd)
    return bool(reply["cursor"]["firstBatch"])


async def _in_index(runner: _Runner, view: View, spec: dict[str, Any], doc_id: Any) -> bool:
    """Whether the written document passes the index's partial filter (mongod decides)."""
    partial = spec.get("partialFilterExpression")
    if not partial:
        return True
    flt = conjoin({"_id": doc_id}, partial)
    return await _first(runner, view.db, view.layers[0].coll, flt, spec)


async def find_collision(
    runner: _Runner, view: View, specs: list[dict[str, Any]], changes: Sequence[_Change]
) -> Collision | None:
    """The first unique key among ``changes`` that another document of the view holds.

    ``view`` is the view as it was before the statement, its first layer the
    branch's own overlay, which now holds every changed document.
    """
    moved = [ch.doc_id for ch in changes if ch.pre is not None]
    for spec in specs:
        movers: list[_Change] = []
        for ch in changes:
            if ch.post is None:
                continue
            flt = key_filter(spec, ch.post)
            if flt is None:
                continue
            unchanged = ch.pre is not None and key_filter(spec, ch.pre) == flt
            if unchanged and not spec.get("partialFilterExpression"):
                continue  # it was unique before and its key did not move
            if not await _in_index(runner, view, spec, ch.doc_id):
                continue
            if ch.pre is not None:
                movers.append(ch)
            for depth, layer in enumerate(view.layers):
                if depth == 0:
                    others: dict[str, Any] = {"_id": {"$ne": ch.doc_id}}
                else:
                    others = {"_id": {"$nin": moved}} if moved else {}
                wanted = conjoin(flt, others)
                if await _first(runner, view.db, layer.coll, layer.match(wanted), spec):
                    return _collision(spec, ch.post)
        hit = await _order_collision(runner, view, spec, movers)
        if hit is not None:
            return hit
    return None


def _collision(spec: dict[str, Any], doc: dict[str, Any]) -> Collision:
    values = key_values(spec, doc)
    key = {p: (v[0] if len(v) == 1 else v) if v else None for p, v in values.items()}
    return Collision(spec["name"], key, dict(spec["key"]))


# Bytes of old images one order check sends (mongod takes commands up to 16 MB).
_ORDER_CHECK_BYTES = 4 * 1024 * 1024


async def _order_collision(
    runner: _Runner, view: View, spec: dict[str, Any], movers: Sequence[_Change]
) -> Collision | None:
    """A document the statement moved whose old key another one it moved now
    takes: mongod, reaching the second first, may refuse the statement.

    ``movers``: the statement's updated documents whose key in ``spec`` moved
    and that are in the index. Their old images no longer exist in the view,
    so mongod judges them as literal documents, beside the overlay's first
    document (an aggregate on a collection runs in any transaction)."""
    if len(movers) < 2:
        return None
    wanted = {
        "$or": [
            conjoin(key_filter(spec, ch.post) or {}, {"_id": {"$ne": ch.doc_id}})
            for ch in movers
            if ch.post is not None
        ]
    }
    olds = [ch.pre for ch in movers if ch.pre is not None]
    start = 0
    while start < len(olds):
        end, size = start, 0
        while end < len(olds) and (end == start or size < _ORDER_CHECK_BYTES):
            size += len(bson.encode(olds[end]))
            end += 1
        hit = await _first_literal(runner, view, spec, olds[start:end], wanted)
        if hit is not None:
            return _collision(spec, hit)
        start = end
    return None


async def _first_literal(
    runner: _Runner,
    view: View,
    spec: dict[str, Any],
    docs: list[dict[str, Any]],
    flt: dict[str, Any],
) -> dict[str, Any] | None:
    """The first of ``docs`` matching ``flt``, as mongod evaluates it (with the
    index's collation). The branch's overlay holds the statement's new images,
    so it has a document to start the pipeline from."""
    cmd: dict[str, Any] = {
        "aggregate": view.layers[0].coll,
        "pipeline": [
            {"$limit": 1},
            {"$replaceWith": {"d": {"$literal": docs}}},
            {"$unwind": "$d"},
            {"$replaceWith": "$d"},
            {"$match": flt},
            {"$limit": 1},
        ],
        "cursor": {},
    }
    if spec.get("collation"):
        cmd["collation"] = spec["collation"]
    reply = await runner.run(view.db, cmd)
    batch = reply["cursor"]["firstBatch"]
    return dict(batch[0]) if batch else None
