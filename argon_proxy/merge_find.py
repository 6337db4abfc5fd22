"""Per-layer queries merged in the proxy: the fast path for ``find`` on a branch.

Theory of operation: each layer of the view gets the user's own filter and
sort, unchanged, so every layer uses the indexes main would. Documents whose
``_id`` a nearer layer holds, and tombstones, are dropped using the overlay id
sets kept in memory; the sorted streams are merged by the sort key in
MongoDB's comparison order; skip and limit apply after the merge. This path
answers only when the whole result fits in one reply of at most
``MAX_MERGED`` documents and every sort value is a plain scalar; otherwise
it returns None and the caller uses the pushed-down aggregation, which gives
a real upstream cursor for any size.
"""

from __future__ import annotations

import datetime as dt
import heapq
import re
from collections.abc import Mapping
from functools import total_ordering
from typing import Any

import bson
from bson import ObjectId
from bson.regex import Regex

from .catalog import Catalog, hashable_id
from .dbclient import DbClient
from .naming import TOMBSTONE
from .view import View

MAX_MERGED = 1000
_SIMPLE_OPTIONS = frozenset(
    {
        "find",
        "filter",
        "sort",
        "skip",
        "limit",
        "batchSize",
        "singleBatch",
        "projection",
        "$db",
        "lsid",
        "$clusterTime",
        "comment",
        "maxTimeMS",
        "$readPreference",
        "readConcern",
        "apiVersion",
        "apiStrict",
        "apiDeprecationErrors",
    }
)


class NotMergeable(Exception):
    """This query needs the general path."""


@total_ordering
class _Desc:
    __slots__ = ("key",)

    def __init__(self, key: Any) -> None:
        self.key = key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.key == other.key

    def __lt__(self, other: _Desc) -> bool:
        return bool(other.key < self.key)


def _rank(value: Any) -> tuple[int, Any]:
    """MongoDB's comparison order for the scalar types; anything else is not merged."""
    if value is None:
        return (1, 0)
    if isinstance(value, bool):
        return (8, value)
    if isinstance(value, int | float):
        if value != value:  # NaN sorts before every other number
            return (2, float("-inf"))
        return (3, value)
    if isinstance(value, str):
        return (4, value)  # code point order is UTF-8 byte order
    if isinstance(value, ObjectId):
        return (7, value.binary)
    if isinstance(value, dt.datetime):
        return (9, value.replace(tzinfo=None) if value.tzinfo else value)
    raise NotMergeable


def _get(doc: Mapping[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    if isinstance(value, list):
        raise NotMergeable  # array sort keys use min/max element semantics
    return value


def sort_key(sort: Mapping[str, Any]) -> Any:
    fields = list(sort.items())
    for _, direction in fields:
        if direction not in (1, -1):
            raise NotMergeable  # {$meta: ...} and friends

    def key(doc: Mapping[str, Any]) -> tuple[Any, ...]:
        parts: list[Any] = []
        for path, direction in fields:
            ranked = _rank(_get(doc, path))
            parts.append(ranked if direction == 1 else _Desc(ranked))
        return tuple(parts)

    return key


def _layer_projection(
    projection: Mapping[str, Any] | None, sort: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, list[str]]:
    """What to ask each layer for, and the top-level fields to strip afterwards."""
    if not projection:
        return None, []
    values = set(projection.values())
    if not values <= {0, 1} or any("$" in k for k in projection):
        raise NotMergeable
    needed = ["_id", *sort]
    if any("." in k for k in needed):
        raise NotMergeable
    inclusion = any(v for k, v in projection.items() if k != "_id")
    asked = dict(projection)
    strip = []
    for name in needed:
        if inclusion and not projection.get(name, name == "_id"):
            asked[name] = 1
            strip.append(name)
        elif not inclusion and name in projection and not projection[name]:
            del asked[name]
            strip.append(name)
    return asked or None, strip


async def find_merged(
    db_client: DbClient, catalog: Catalog, view: View, cmd: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The whole answer of ``cmd`` on ``view`` as a one-batch reply, or None."""
    if set(cmd) - _SIMPLE_OPTIONS or "txnNumber" in cmd:
        return None
    try:
        sort = dict(cmd.get("sort") or {})
        key = sort_key(sort)
        asked, strip = _layer_projection(cmd.get("projection"), sort)
    except NotMergeable:
        return None
    skip = int(cmd.get("skip") or 0)
    limit = abs(int(cmd.get("limit") or 0))
    wanted = skip + limit if limit else MAX_MERGED + 1
    streams = []
    shadow: set[Any] = set()
    for layer in _layers_for(catalog, view, cmd.get("filter")):
        own = _layer_ids(catalog, view, layer.coll)
        # Enough rows that, after dropping shadowed ids and tombstones, ``wanted`` remain.
        rows = wanted + len(shadow) + len(own)
        query: dict[str, Any] = {
            "find": layer.coll,
            "filter": cmd.get("filter") or {},
            "limit": rows,
            "batchSize": rows,
        }
        if sort:
            query["sort"] = sort
        if asked:
            inclusion = any(v for k, v in asked.items() if k != "_id")
            query["projection"] = {**asked, TOMBSTONE: 1} if layer.overlay and inclusion else asked
        for opt in ("maxTimeMS", "comment"):
            if opt in cmd:
                query[opt] = cmd[opt]
        reply = await db_client.command(view.db, query)
        batch = reply["cursor"]["firstBatch"]
        if reply["cursor"].get("id"):
            await db_client.command(
                view.db, {"killCursors": layer.coll, "cursors": [reply["cursor"]["id"]]}
            )
            return None
        if not limit and len(batch) >= rows:
            return None  # there may be more than one reply's worth: not this path's job
        docs = [d for d in batch if hashable_id(d["_id"]) not in shadow]
        if layer.overlay:
            docs = [d for d in docs if not d.get(TOMBSTONE)]
        streams.append(docs)
        shadow.update(own)
    try:
        merged = list(heapq.merge(*streams, key=key)) if sort else [d for s in streams for d in s]
    except NotMergeable:
        return None
    if not limit and len(merged) - skip > MAX_MERGED:
        return None
    page = merged[skip : skip + limit] if limit else merged[skip:]
    for doc in page:
        for name in strip:
            doc.pop(name, None)
    return {
        "cursor": {"firstBatch": page, "id": bson.Int64(0), "ns": f"{view.db}.{view.coll}"},
        "ok": 1.0,
    }


def _layers_for(catalog: Catalog, view: View, flt: Any) -> tuple[Any, ...]:
    """The layers worth asking: for ``{_id: <value>}`` only the nearest one holding
    that id (the base if no overlay does), so a point read costs one query."""
    if not isinstance(flt, Mapping) or set(flt) != {"_id"}:
        return view.layers
    value = flt["_id"]
    if isinstance(value, list | re.Pattern | Regex) or (
        isinstance(value, Mapping) and any(str(k).startswith("$") for k in value)
    ):
        return view.layers
    key = hashable_id(value)
    for index, layer in enumerate(view.layers):
        if not layer.overlay:
            return view.layers[index : index + 1]
        held = next(
            (
                ov.ids
                for ov in catalog.overlays.values()
                if ov.name == layer.coll and ov.db == view.db
            ),
            None,
        )
        if held is None:
            return view.layers  # ids not loaded: ask every layer
        if key in held:
            return view.layers[index : index + 1]
    return ()


def _layer_ids(catalog: Catalog, view: View, coll: str) -> set[Any] | dict[Any, Any]:
    """Keys of every id the overlay ``coll`` holds (nothing for the base layer)."""
    for ov in catalog.overlays.values():
        if ov.name == coll and ov.db == view.db and ov.ids is not None:
            return ov.ids
    return set()
