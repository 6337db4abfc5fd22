"""``find``'s ``min`` and ``max`` as a filter, for reads that merge a branch's layers.

Theory of operation: ``min`` and ``max`` bound a find to a range of the hinted
index: documents whose key is at or after ``min`` and before ``max``, in the
index's order (each field ascending or descending, compared field by field).
A branch's read spans several collections, so no single index scan can apply
them; the same range is a filter instead, an aggregation expression so that
values compare across types in BSON order as index keys do (``$gt`` in a
query would only match values of the bound's own type). A missing field keys
as null, as in an index. The caller sorts by the index's keys, the order the
scan would have returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import ArgonError

HINT_REQUIRED = 51173  # mongod: min/max without a hint
NOT_THE_INDEX = 51174  # mongod: min/max fields other than the index's


def bounds_filter(
    key: Mapping[str, Any], lower: Mapping[str, Any] | None, upper: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The filter of documents from ``lower`` (inclusive) to ``upper`` (exclusive)
    in the order of an index with key pattern ``key``."""
    fields = list(key.items())
    names = [name for name, _ in fields]
    for bound in (lower, upper):
        if bound is not None and list(bound) != names:
            raise ArgonError(
                NOT_THE_INDEX,
                f"The index chosen is not equal to min/max, min: {dict(lower or {})}, "
                f"max: {dict(upper or {})}, index key pattern: {dict(key)}",
            )
    parts: list[Any] = []
    if lower is not None:
        parts.append(_at_or_after(fields, lower))
    if upper is not None:
        parts.append({"$not": [_at_or_after(fields, upper)]})
    return {"$expr": {"$and": parts}}


def _at_or_after(fields: list[tuple[str, Any]], bound: Mapping[str, Any]) -> dict[str, Any]:
    """Whether a document's key is at or after ``bound`` in the index's order."""
    (name, direction), rest = fields[0], fields[1:]
    value = {"$ifNull": [f"${name}", None]}  # a missing field keys as null
    literal = {"$literal": bound[name]}
    beyond = {"$gt" if direction > 0 else "$lt": [value, literal]}
    if not rest:
        return {"$or": [beyond, {"$eq": [value, literal]}]}
    return {"$or": [beyond, {"$and": [{"$eq": [value, literal]}, _at_or_after(rest, bound)]}]}


def ordered_key(key: Mapping[str, Any]) -> bool:
    """Whether every field of an index's key pattern is ascending or descending."""
    return all(v in (1, -1) or (isinstance(v, int | float) and v != 0) for v in key.values())
