"""``$merge`` matching on fields other than ``_id``, on any branch.

Theory of operation: mongod requires a unique index on exactly the ``on``
fields, so each result matches at most one document of the target. Argon
checks that index on the branch's index list, takes each result's ``on``
values (refusing missing, null and array values as mongod does), and asks
the branch's view of the target for the documents holding those values with
one ``$or`` filter per chunk, so mongod evaluates the match. Results and
target documents are then paired by BSON equality of their ``on`` values
(``reads.equality_key``), and the documents to write are computed here: the
matched document keeps its ``_id`` (a result naming another one fails as
mongod's update would), a new one takes the result's ``_id`` or a fresh one.
``aggregate_out`` writes them through the write path in one statement, as for
``$merge`` on ``_id``. A collation would change which values match, so it is
refused rather than matched exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import bson

from .catalog import Catalog, hashable_id
from .dbclient import DbClient
from .errors import ArgonError
from .indexes import list_specs
from .reads import Reader, equality_key
from .view import fetch
from .write_context import WriteContext, duplicate_key

ON_NOT_A_LIST = 51186
ON_EMPTY = 51187
ON_NOT_STRINGS = 51134
NO_UNIQUE_INDEX = 51183
ON_VALUE_MISSING = 51132
ON_VALUE_ARRAY = 51185
NO_MATCH = 13113
IMMUTABLE_FIELD = 66
_CHUNK = 500  # results whose matches one read asks for

Writes = dict[Any, tuple[Any, dict[str, Any] | None]]


def on_fields(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """The ``on`` fields of a ``$merge`` specification, validated as mongod does."""
    on = spec.get("on", "_id")
    if isinstance(on, str):
        return (on,)
    if not isinstance(on, list):
        raise ArgonError(
            ON_NOT_A_LIST, "$merge 'on' field must be either a string or an array of strings"
        )
    if not on:
        raise ArgonError(
            ON_EMPTY, "If explicitly specifying $merge 'on', must include at least one field"
        )
    if not all(isinstance(f, str) for f in on):
        raise ArgonError(ON_NOT_STRINGS, "$merge 'on' array elements must be strings")
    return tuple(dict.fromkeys(on))  # a field named twice counts once


async def planned_writes(
    db: DbClient,
    catalog: Catalog,
    reader: Reader,
    ctx: WriteContext,
    results: list[dict[str, Any]],
    on: tuple[str, ...],
    when: tuple[str, str],
) -> Writes:
    """The documents ``$merge`` with ``on`` writes into the target, by ``_id``;
    ``when``: its ``whenMatched`` and ``whenNotMatched``."""
    index = await _unique_index(catalog, ctx, on)
    keyed = [(_key_of(doc, on, strict=True), doc) for doc in results]
    held = await _matching(db, reader, ctx, on, [doc for _, doc in keyed])
    ids = [doc["_id"] for _, doc in keyed if "_id" in doc]
    taken = await _ids_taken(db, catalog, ctx, on, ids)
    writes: Writes = {}
    for key, doc in keyed:
        assert key is not None
        have = held.get(key)
        new = _merged(ctx, index, doc, have, when) if have is not None else _inserted(doc, when)
        if new is None:
            continue
        if have is None:
            owner = taken.get(hashable_id(new["_id"]))
            if owner is not None and owner != key:  # mongod's insert would clash on _id
                raise duplicate_key(ctx.ns, new["_id"])
            taken[hashable_id(new["_id"])] = key
        held[key] = new
        writes[hashable_id(new["_id"])] = (new["_id"], new)
    return writes


def _merged(
    ctx: WriteContext,
    index: Mapping[str, Any],
    doc: dict[str, Any],
    have: dict[str, Any],
    when: tuple[str, str],
) -> dict[str, Any] | None:
    """What a result does to the target document it matches."""
    matched = when[0]
    if matched == "fail":  # mongod's insert of it clashes on the unique index
        pattern = dict(index["key"])
        values = {f: _value(doc, f)[1] for f in pattern}
        raise duplicate_key(ctx.ns, have["_id"], str(index["name"]), values, pattern)
    if matched == "keepExisting":
        return None
    if "_id" in doc and equality_key(doc["_id"]) != equality_key(have["_id"]):
        raise ArgonError(
            IMMUTABLE_FIELD,
            f"$merge failed to update the matching document, did you attempt to modify the "
            f"_id or the shard key? Performing an update on the path '_id' would modify the "
            f"immutable field '_id' (matched _id {have['_id']!r}, result _id {doc['_id']!r})",
        )
    body = {k: v for k, v in doc.items() if k != "_id"}
    return {"_id": have["_id"], **body} if matched == "replace" else {**have, **body}


def _inserted(doc: dict[str, Any], when: tuple[str, str]) -> dict[str, Any] | None:
    """What a result that matches nothing does."""
    not_matched = when[1]
    if not_matched == "fail":
        raise ArgonError(
            NO_MATCH,
            "$merge could not find a matching document in the target collection for at "
            "least one document in the source collection",
        )
    if not_matched == "discard":
        return None
    return doc if "_id" in doc else {"_id": bson.ObjectId(), **doc}


async def _unique_index(
    catalog: Catalog, ctx: WriteContext, on: tuple[str, ...]
) -> Mapping[str, Any]:
    """The target's unique index on exactly the ``on`` fields, as the branch has it."""
    specs = await list_specs(catalog, ctx.branch, ctx.db, ctx.coll)
    for spec in specs:
        keys = set(dict(spec.get("key", {})))
        unique = spec.get("unique") or spec.get("name") == "_id_"
        if unique and keys == set(on) and "partialFilterExpression" not in spec:
            return spec
    raise ArgonError(
        NO_UNIQUE_INDEX,
        f"Cannot find index to verify that $merge fields will be unique: {ctx.ns} has no "
        f"unique index on exactly {list(on)}",
    )


async def _matching(
    db: DbClient,
    reader: Reader,
    ctx: WriteContext,
    on: tuple[str, ...],
    results: Sequence[dict[str, Any]],
) -> dict[Any, dict[str, Any]]:
    """The target's documents the results match, by their ``on`` values."""
    found: dict[Any, dict[str, Any]] = {}
    for start in range(0, len(results), _CHUNK):
        chunk = results[start : start + _CHUNK]
        wanted = [{f: _value(doc, f)[1] for f in on} for doc in chunk]
        read = {"aggregate": ctx.coll, "pipeline": [{"$match": {"$or": wanted}}], "cursor": {}}
        rewritten = await reader.aggregate(ctx.branch, ctx.db, read)
        async for doc in db.cursor(ctx.db, rewritten or read):
            key = _key_of(doc, on, strict=False)
            if key is not None:  # an array value matched element-wise: not a $merge match
                found[key] = doc
    return found


async def _ids_taken(
    db: DbClient, catalog: Catalog, ctx: WriteContext, on: tuple[str, ...], ids: list[Any]
) -> dict[Any, Any]:
    """For the results' own ``_id``s, the ``on`` values of the target documents
    already holding them (an insert with such an ``_id`` clashes)."""
    held = await fetch(db, catalog, ctx.branch, ctx.db, ctx.coll, ids)
    return {k: _key_of(doc, on, strict=False) for k, doc in held.items()}


def _key_of(doc: Mapping[str, Any], on: tuple[str, ...], *, strict: bool) -> Any:
    """The BSON-equality key of a document's ``on`` values; None (or, ``strict``,
    mongod's error) when one is missing, null or an array."""
    parts = []
    for field in on:
        through_array, value = _value(doc, field)
        if through_array or value is None:
            if strict:
                raise ArgonError(
                    ON_VALUE_MISSING,
                    f"$merge write error: 'on' field '{field}' cannot be missing, null, "
                    "undefined or an array",
                )
            return None
        if isinstance(value, list):
            if strict:
                raise ArgonError(
                    ON_VALUE_ARRAY, f"$merge write error: 'on' field '{field}' cannot be an array"
                )
            return None
        parts.append(equality_key(value))
    return tuple(parts)


def _value(doc: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    """``(crossed an array, value)`` at a dotted ``path`` (None where missing)."""
    current: Any = doc
    for step in path.split("."):
        if isinstance(current, list):
            return True, None
        if not isinstance(current, Mapping) or step not in current:
            return False, None
        current = current[step]
    return False, current
