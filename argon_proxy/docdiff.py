"""Comparing and three-way merging documents, field path by field path.

Theory of operation: these are pure functions over decoded BSON documents; no
I/O. A *path* is a tuple of field names (names may contain dots, so paths are
never split on them). Subdocuments are compared field by field; arrays and
every other value are compared whole, so a change anywhere inside an array
is a change of the array. Values are equal when their BSON encodings are:
``1`` and ``1.0`` differ, and so does key order, as they do for mongod's
document equality.

``None`` stands for "no document" (never inserted, or deleted).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import bson

Path = tuple[str, ...]
Side = Literal["ours", "theirs"]


class _Missing:
    """A field that is absent (distinct from a field holding null)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def same(a: Any, b: Any) -> bool:
    """BSON equality of two values (``MISSING`` equals only itself)."""
    if a is MISSING or b is MISSING:
        return a is b
    if a is None or b is None:
        return a is None and b is None
    return bson.encode({"v": a}) == bson.encode({"v": b})


def dotted(path: Path) -> str:
    return ".".join(path)


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field that differs between two versions of a document."""

    path: Path
    change: Literal["added", "removed", "modified"]
    before: Any
    after: Any

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"path": dotted(self.path), "change": self.change}
        if self.before is not MISSING:
            doc["before"] = self.before
        if self.after is not MISSING:
            doc["after"] = self.after
        return doc


def field_changes(
    before: Mapping[str, Any], after: Mapping[str, Any], prefix: Path = ()
) -> list[FieldChange]:
    """The fields that differ from ``before`` to ``after``, deepest paths where both
    sides hold subdocuments."""
    out: list[FieldChange] = []
    for key in _keys(before, after):
        old, new = before.get(key, MISSING), after.get(key, MISSING)
        if same(old, new):
            continue
        path = (*prefix, key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            out.extend(field_changes(old, new, path))
        elif old is MISSING:
            out.append(FieldChange(path, "added", MISSING, new))
        elif new is MISSING:
            out.append(FieldChange(path, "removed", old, MISSING))
        else:
            out.append(FieldChange(path, "modified", old, new))
    return out


def _keys(*docs: Mapping[str, Any]) -> list[str]:
    """Every key of ``docs``, in the order of the first document that has it."""
    seen: dict[str, None] = {}
    for doc in docs:
        for key in doc:
            seen.setdefault(key, None)
    return list(seen)


@dataclass(frozen=True, slots=True)
class FieldMerge:
    """The result of merging one document field by field."""

    doc: dict[str, Any]
    conflicts: tuple[Path, ...]


def merge_fields(
    base: Mapping[str, Any],
    ours: Mapping[str, Any],
    theirs: Mapping[str, Any],
    prefer: Side = "ours",
) -> FieldMerge:
    """Three-way merge of two versions of a document against their common base.

    A path changed on one side only takes that side's value; changed on both
    sides to the same value, that value; changed differently on both sides (or
    removed on one and changed on the other) is a conflict, and the result
    holds ``prefer``'s value there.
    """
    conflicts: list[Path] = []
    doc = _merge_value(base, ours, theirs, (), prefer, conflicts)
    assert isinstance(doc, dict)
    return FieldMerge(doc, tuple(conflicts))


def _merge_value(
    base: Any, ours: Any, theirs: Any, path: Path, prefer: Side, conflicts: list[Path]
) -> Any:
    if same(ours, theirs) or same(base, theirs):
        return ours
    if same(base, ours):
        return theirs
    if isinstance(ours, Mapping) and isinstance(theirs, Mapping):
        old = base if isinstance(base, Mapping) else {}
        merged: dict[str, Any] = {}
        for key in _keys(ours, theirs):
            value = _merge_value(
                old.get(key, MISSING),
                ours.get(key, MISSING),
                theirs.get(key, MISSING),
                (*path, key),
                prefer,
                conflicts,
            )
            if value is not MISSING:
                merged[key] = value
        return merged
    conflicts.append(path)
    return ours if prefer == "ours" else theirs


ConflictKind = Literal["both-changed", "changed-deleted", "deleted-changed", "both-inserted"]


@dataclass(frozen=True, slots=True)
class DocMerge:
    """What a three-way merge of one document decides.

    ``result`` is the document the target should hold (``None``: deleted) when
    there is no conflict, or the ``prefer`` side's resolution when there is.
    ``changed`` is False when the target already holds the result.
    """

    result: dict[str, Any] | None
    changed: bool
    conflict: ConflictKind | None = None
    paths: tuple[Path, ...] = ()


def merge_document(
    base: Mapping[str, Any] | None,
    ours: Mapping[str, Any] | None,
    theirs: Mapping[str, Any] | None,
    *,
    granularity: Literal["document", "field"] = "field",
    prefer: Side = "ours",
) -> DocMerge:
    """Three-way merge of one document: ``ours`` is the target's version, ``theirs``
    the source's, ``base`` their common ancestor's (``None``: absent)."""
    o = dict(ours) if ours is not None else None
    t = dict(theirs) if theirs is not None else None
    if same(o, t) or same(base, t):
        return DocMerge(o, False)
    if same(base, o):
        return DocMerge(t, True)
    pick = o if prefer == "ours" else t
    if base is None:
        return DocMerge(pick, not same(pick, o), "both-inserted")
    if o is None:
        return DocMerge(pick, not same(pick, o), "deleted-changed")
    if t is None:
        return DocMerge(pick, not same(pick, o), "changed-deleted")
    if granularity == "document":
        return DocMerge(pick, not same(pick, o), "both-changed")
    fields = merge_fields(base, o, t, prefer)
    kind: ConflictKind | None = "both-changed" if fields.conflicts else None
    return DocMerge(fields.doc, not same(fields.doc, o), kind, fields.conflicts)


def leaf_paths(doc: Mapping[str, Any], prefix: Path = ()) -> list[Path]:
    """Every path of ``doc`` down to non-document values (arrays are leaves)."""
    out: list[Path] = []
    for key, value in doc.items():
        path = (*prefix, key)
        if isinstance(value, Mapping) and value:
            out.extend(leaf_paths(value, path))
        else:
            out.append(path)
    return out
