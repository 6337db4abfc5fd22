"""Per-layer queries merged in the proxy: the fast path for ``find`` on a branch.

Theory of operation: each layer of the view gets the user's own filter and
sort, unchanged, so every layer uses the indexes main would. Documents whose
``_id`` a nearer layer holds, and tombstones, are dropped using the overlay id
sets kept in memory; the sorted streams are merged by the sort key in
MongoDB's comparison order; skip and limit apply after the merge.

A projection of top-level fields with 0/1 values is sent to the layers with
what the merge needs (``_id``, the tombstone marker, the sort keys) included,
or no longer excluded, following mongod's inclusion/exclusion rule, and those
fields are stripped afterwards. Any other projection (dotted paths,
``$slice``, ``$elemMatch``, positional, expressions) is never interpreted:
the layers are first asked only for what the merge needs, then mongod applies
the user's projection to the page's documents on their own layers.

This path answers only when the page fits mongod's first batch (``batchSize``,
else 101 documents) and every sort value is a plain scalar; otherwise it
returns None and the caller uses the view's aggregation, whose real upstream
cursor streams any size through ``getMore``; ``narrowed`` keeps that
aggregation's exclusions to the ids that match the filter. So the proxy holds at
most one first batch (plus the ids the layers shadow) per query. The one
exception is a projection only ``find`` knows (``$slice``, ``$elemMatch``,
positional), which no aggregation can apply: up to ``MAX_MERGED`` documents
are answered in one batch, and more are refused by the caller.
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
from .cursors import HeldCursors
from .dbclient import DbClient
from .naming import TOMBSTONE
from .view import Layer, View, conjoin, pin

MAX_MERGED = 1000
MAX_NARROWED = 10_000  # ids listed per layer to narrow a view's exclusions
DEFAULT_FIRST_BATCH = 101  # mongod's first batch of a find without batchSize
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
        "noCursorTimeout",
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
    for path, direction in fields:
        if direction not in (1, -1) or path.startswith("$"):
            raise NotMergeable  # {$meta: ...}, $natural and friends

    def key(doc: Mapping[str, Any]) -> tuple[Any, ...]:
        parts: list[Any] = []
        for path, direction in fields:
            ranked = _rank(_get(doc, path))
            parts.append(ranked if direction == 1 else _Desc(ranked))
        return tuple(parts)

    return key


def find_only_projection(projection: Any) -> bool:
    """Whether ``projection`` uses what only ``find`` projects (positional,
    ``$elemMatch``, ``$slice``), which an aggregation's ``$project`` cannot."""
    if not isinstance(projection, Mapping):
        return False
    for key, value in projection.items():
        if str(key).endswith(".$"):
            return True
        if isinstance(value, Mapping) and ("$elemMatch" in value or "$slice" in value):
            return True
    return False


def _first_batch(cmd: Mapping[str, Any]) -> int:
    """The most documents mongod puts in the first reply to this ``find``: its
    ``batchSize``, else 101 (mongod's default first batch)."""
    size = cmd.get("batchSize")
    return DEFAULT_FIRST_BATCH if size is None else int(size)


def _plain_projection(
    projection: Mapping[str, Any], sort: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]] | None:
    """For a projection of top-level fields with 0/1 (or boolean) values only: what
    to ask each layer for, and the fields to strip afterwards; else None.

    mongod's rule: the projection includes when a field other than ``_id`` is
    included, or when ``_id`` alone is; it excludes otherwise. The merge needs
    ``_id``, the tombstone marker and the sort keys, so an inclusion asks for
    them too and an exclusion stops excluding them; either way the user never
    sees them unless the projection shows them."""
    if not all(isinstance(v, int | float) for v in projection.values()):
        return None  # bool is an int: included
    if any("." in k or k.startswith("$") for k in [*projection, *sort]):
        return None
    included = {k for k, v in projection.items() if v}
    inclusion = bool(included - {"_id"}) or projection.keys() == {"_id"} == included
    asked = dict(projection)
    strip: list[str] = []
    for name in dict.fromkeys(["_id", *sort]):
        if inclusion and not projection.get(name, name == "_id"):
            asked[name] = 1
            strip.append(name)
        elif not inclusion and name in projection and not projection[name]:
            del asked[name]
            strip.append(name)
    if inclusion:
        asked[TOMBSTONE] = 1
        strip.append(TOMBSTONE)
    return asked, strip


def _key_projection(sort: Mapping[str, Any]) -> dict[str, Any]:
    """What to ask each layer for when the user projects: the ``_id``, the tombstone
    marker and the sort keys, all inclusions Argon chose itself. The user's own
    projection is applied by mongod afterwards (``_project``), so no rule about
    mixing it with these fields ever comes into play."""
    paths = ["_id", *sort]
    for path in paths:
        if any(other != path and other.startswith(path + ".") for other in paths):
            raise NotMergeable  # a path and its parent cannot both be projected
    return {**{path: 1 for path in paths}, TOMBSTONE: 1}


async def _project(
    db_client: DbClient,
    view: View,
    cmd: Mapping[str, Any],
    page: list[tuple[int, dict[str, Any]]],
) -> list[dict[str, Any]] | None:
    """The documents of ``page`` (each with the index of the layer it came from) as
    the user's projection shows them, in page order, or None if one changed
    meanwhile. mongod projects each on its own layer, with the user's filter
    (positional projections need it), sorted by ``_id``, which the projection may
    hide or replace; the order of the ids says which document is which."""
    by_layer: dict[int, list[Any]] = {}
    for index, doc in page:
        by_layer.setdefault(index, []).append(doc["_id"])
    found: dict[tuple[int, Any], dict[str, Any]] = {}
    for index, ids in by_layer.items():
        ids.sort(key=_rank)  # the order of the upstream's {_id: 1} sort
        query = {
            "find": view.layers[index].coll,
            "filter": pin({"$in": ids}, cmd.get("filter") or {}),
            "projection": cmd["projection"],
            "sort": {"_id": 1},
            "limit": len(ids),  # closes the cursor: a full batch alone would not
            "batchSize": len(ids),
            **_passed(cmd),
        }
        reply = await db_client.command(view.db, query)
        batch = reply["cursor"]["firstBatch"]
        if reply["cursor"].get("id"):
            await _kill(db_client, view.db, view.layers[index].coll, reply["cursor"]["id"])
            return None
        if len(batch) != len(ids):
            return None
        for doc_id, doc in zip(ids, batch, strict=True):
            found[(index, hashable_id(doc_id))] = doc
    return [found[(index, hashable_id(doc["_id"]))] for index, doc in page]


def _passed(cmd: Mapping[str, Any]) -> dict[str, Any]:
    """The options of the user's find that every query made for it carries."""
    return {opt: cmd[opt] for opt in ("maxTimeMS", "comment") if opt in cmd}


async def _kill(db_client: DbClient, db: str, coll: str, cursor_id: Any) -> None:
    await db_client.command(db, {"killCursors": coll, "cursors": [cursor_id]})


async def find_merged(
    db_client: DbClient,
    catalog: Catalog,
    view: View,
    cmd: Mapping[str, Any],
    cursors: HeldCursors,
    ns: str,
) -> dict[str, Any] | None:
    """The answer of ``cmd`` on ``view`` when it holds at most ``MAX_MERGED``
    documents: the first batch, and the rest held in ``cursors`` for ``getMore``
    (``ns`` names the cursor as the client addressed it). None when there are
    more: the caller then gives the upstream's cursor over the whole view."""
    plan = _plan(cmd)
    if plan is None:
        return None
    sort, key, asked = plan
    projection = cmd.get("projection")
    plain = _plain_projection(projection, sort) if projection else None
    first = _first_batch(cmd)
    if first <= 0:
        return None  # an empty first batch and an open cursor: the upstream's shape
    single = bool(cmd.get("singleBatch")) or int(cmd.get("limit") or 0) < 0
    at_most = first if single else MAX_MERGED
    # One more than it may hold tells whether it holds them all.
    layer_projection = (plain[0] or None) if plain else asked
    page = await _page(db_client, catalog, view, cmd, layer_projection, key, at_most + 1)
    if page is None:
        return None
    if len(page) > at_most:
        if not single:
            return None  # more than the proxy holds: the upstream's cursor streams it
        page = page[:first]
    docs_out: list[dict[str, Any]] | None = [doc for _, doc in page]
    if plain:
        for doc in docs_out or ():
            for name in plain[1]:
                doc.pop(name, None)
    elif asked:
        try:
            docs_out = await _project(db_client, view, cmd, page)
        except NotMergeable:
            return None  # ids without a plain order: the general path projects
    if docs_out is None:
        return None
    if single:
        return {"cursor": {"firstBatch": docs_out, "id": bson.Int64(0), "ns": ns}, "ok": 1.0}
    return cursors.first_reply(ns, docs_out, first, lasting=bool(cmd.get("noCursorTimeout")))


async def narrowed(
    db_client: DbClient, catalog: Catalog, view: View, cmd: Mapping[str, Any]
) -> View | None:
    """``view`` with each layer excluding only the ids that a nearer layer holds and
    that match the find's filter there, or None when a layer matches more than
    ``MAX_NARROWED`` documents.

    The view's own exclusions are every id the nearer overlays hold, a long
    ``$nin`` some planners pay for dearly beside the user's filter; asking each
    layer for the ``_id``s matching the filter first (which uses the same indexes
    as the filter) leaves only the exclusions that matter, usually none."""
    flt = cmd.get("filter") or {}
    if not isinstance(flt, Mapping):
        return None
    layers: list[Layer] = []
    shadow: set[Any] = set()
    for layer in view.layers:
        own = layer.held
        rows = MAX_NARROWED + len(shadow) + len(own) + 1
        query: dict[str, Any] = {
            "find": layer.coll,
            "filter": conjoin(dict(flt)),
            "projection": {"_id": 1},
            "limit": rows,
            "batchSize": rows,
            **_passed(cmd),
            **{k: cmd[k] for k in ("collation", "let") if k in cmd},
        }
        reply = await db_client.command(view.db, query)
        batch = reply["cursor"]["firstBatch"]
        if reply["cursor"].get("id"):
            await _kill(db_client, view.db, layer.coll, reply["cursor"]["id"])
            return None
        if len(batch) >= rows:
            return None  # too many to list: the view's own exclusions apply
        dropped = [d["_id"] for d in batch if hashable_id(d["_id"]) in shadow]
        layers.append(Layer(layer.coll, tuple(dropped), layer.overlay, layer.held))
        shadow.update(own)
    return View(view.db, view.coll, tuple(layers))


def _plan(cmd: Mapping[str, Any]) -> tuple[dict[str, Any], Any, dict[str, Any] | None] | None:
    """The sort, its key and what to ask the layers for, or None if not mergeable."""
    if set(cmd) - _SIMPLE_OPTIONS or "txnNumber" in cmd:
        return None
    if not isinstance(cmd.get("filter") or {}, Mapping):
        return None
    try:
        sort = dict(cmd.get("sort") or {})
        key = sort_key(sort)
        asked = _key_projection(sort) if cmd.get("projection") else None
    except NotMergeable:
        return None
    return sort, key, asked


async def _page(
    db_client: DbClient,
    catalog: Catalog,
    view: View,
    cmd: Mapping[str, Any],
    asked: dict[str, Any] | None,
    key: Any,
    at_most: int,
) -> list[tuple[int, dict[str, Any]]] | None:
    """Up to ``at_most`` documents of the merged result after ``skip`` (fewer when
    ``limit`` says so), each with the index of its layer; None if not mergeable."""
    sort = dict(cmd.get("sort") or {})
    skip = int(cmd.get("skip") or 0)
    limit = abs(int(cmd.get("limit") or 0))
    needed = min(limit, at_most) if limit else at_most
    if needed > MAX_MERGED + 1:
        return None
    wanted = skip + needed
    streams: list[list[tuple[int, dict[str, Any]]]] = []
    shadow: set[Any] = set()
    for index, layer in _layers_for(catalog, view, cmd.get("filter")):
        own = layer.held
        # Enough rows that, after dropping shadowed ids and tombstones, ``wanted`` remain;
        # every layer's stream is then complete up to the ``wanted``-th merged document.
        rows = wanted + len(shadow) + len(own)
        query: dict[str, Any] = {
            "find": layer.coll,
            "filter": conjoin(cmd.get("filter") or {}),
            "limit": rows,
            "batchSize": rows,
        }
        if sort:
            query["sort"] = sort
        if asked:
            query["projection"] = asked
        query.update(_passed(cmd))
        reply = await db_client.command(view.db, query)
        batch = reply["cursor"]["firstBatch"]
        if reply["cursor"].get("id"):
            await _kill(db_client, view.db, layer.coll, reply["cursor"]["id"])
            return None
        docs = [d for d in batch if hashable_id(d["_id"]) not in shadow]
        if layer.overlay:
            docs = [d for d in docs if not d.get(TOMBSTONE)]
        streams.append([(index, d) for d in docs])
        shadow.update(own)
    try:
        merged = (
            list(heapq.merge(*streams, key=lambda item: key(item[1])))
            if sort
            else [item for s in streams for item in s]
        )
    except NotMergeable:
        return None
    return merged[skip:wanted]


def _layers_for(catalog: Catalog, view: View, flt: Any) -> list[tuple[int, Layer]]:
    """The layers worth asking, with their index in the view: for ``{_id: <value>}``
    only the nearest one holding that id (the base if no overlay does), so a point
    read costs one query."""
    every = list(enumerate(view.layers))
    if not isinstance(flt, Mapping) or set(flt) != {"_id"}:
        return every
    value = flt["_id"]
    if isinstance(value, list | re.Pattern | Regex) or (
        isinstance(value, Mapping) and any(str(k).startswith("$") for k in value)
    ):
        return every
    key = hashable_id(value)
    for index, layer in every:
        if not layer.overlay:
            return [(index, layer)]
        if key in layer.held:
            return [(index, layer)]
    return []
