"""A change event's ``updateDescription``, worked out from a pre- and post-image.

Theory of operation: mongod describes an update by what its operators touched,
not by comparing documents: ``updatedFields`` maps each dotted path that got a
new value to that value, ``removedFields`` lists the paths it unset. Argon's
WAL keeps the document before and after, and, for an update with operators, a
few *hints* taken from the update itself (``hints``; stored with the entry):

- arrays written element-wise: a ``$push``/``$addToSet`` without ``$slice``,
  ``$sort`` or ``$position`` reports each appended element (``tags.3``), an
  indexed or positional path (``$inc: {"a.0": 1}``, ``a.$``) the elements it
  wrote; any other changed array is reported whole;
- fields set whole: a ``$set`` of ``a`` reports ``a``'s whole new value even if
  only part of it changed, and a ``$rename`` target is reported even if its
  value did not change;
- a pipeline update, which mongod describes by comparing values (the one case
  that reports ``truncatedArrays``).

Embedded documents are otherwise walked field by field. Values are compared as
stored BSON (``1`` and ``1.0``, ``0.0`` and ``-0.0`` differ), so no change a
consumer could see is left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import bson

PIPELINE = "pipeline"  # the hints of a pipeline update
_APPENDS = ("$push", "$addToSet")
_REORDERS = ("$slice", "$sort", "$position")
_PATH_WRITES = ("$set", "$unset", "$inc", "$mul", "$min", "$max", "$currentDate", "$bit")


def hints(update: Any) -> Any:
    """What ``describe`` needs to know of an update besides its images: a small
    document (or ``PIPELINE``), None when it needs nothing."""
    if isinstance(update, list):
        return PIPELINE
    if not isinstance(update, Mapping):
        return None
    arrays: list[list[Any]] = []  # [path, indices written past the end, or None: any]
    pushed: list[str] = []
    whole: list[list[Any]] = []  # [path, reported even if unchanged]
    for op, spec in update.items():
        if not isinstance(spec, Mapping):
            continue
        for path, value in spec.items():
            parts = str(path).split(".")
            if op in _APPENDS:
                if not (isinstance(value, Mapping) and any(m in value for m in _REORDERS)):
                    arrays.append([str(path), None])
                    pushed.extend([str(path)] if op == "$push" else [])
            elif op in _PATH_WRITES:
                arrays.extend(_indexed(parts))
            if op == "$set" and not any(p.startswith("$") for p in parts):
                whole.append([str(path), False])
            if op == "$rename" and isinstance(value, str):
                whole.append([value, True])
    out = {"arrays": arrays, "pushed": pushed, "whole": whole}
    return {k: v for k, v in out.items() if v} or None


def _indexed(parts: list[str]) -> list[list[Any]]:
    """The arrays an indexed (``a.2``) or positional (``a.$``) path writes into."""
    out: list[list[Any]] = []
    for i, part in enumerate(parts):
        if i and part.startswith("$"):
            out.append([".".join(parts[:i]), None])
        elif i and part.isdigit():
            out.append([".".join(parts[:i]), [int(part)]])
    return out


def describe(
    pre: Mapping[str, Any], post: Mapping[str, Any], how: Any = None, *, expanded: bool = False
) -> dict[str, Any]:
    """``{updatedFields, removedFields, truncatedArrays}`` for ``pre`` becoming
    ``post`` by an update with ``hints`` ``how``; ``expanded`` (a stream with
    ``showExpandedEvents``) adds ``disambiguatedPaths``: each reported path with a
    field name that reads like an array index, as its segments (indexes as ints)."""
    walk = _Walk(how)
    walk.document(pre, post, "")
    if isinstance(how, Mapping):
        for path, always in how.get("whole", ()):
            walk.collapse(post, str(path), bool(always))
    out: dict[str, Any] = {
        "updatedFields": walk.updated,
        "removedFields": walk.removed,
        "truncatedArrays": walk.truncated,
    }
    if expanded:
        paths = [*walk.updated, *walk.removed, *(str(t["field"]) for t in walk.truncated)]
        typed = {path: _segments(pre, post, path) for path in paths}
        out["disambiguatedPaths"] = {
            path: segments
            for path, segments in typed.items()
            if any(isinstance(s, str) and s.isdigit() for s in segments)
        }
    return out


def _segments(pre: Any, post: Any, path: str) -> list[Any]:
    """``path``'s segments, each an int where it indexes an array (of the post-image,
    else the pre-image) and the field name where it names a field."""
    out: list[Any] = []
    nodes = [post, pre]
    for part in path.split("."):
        arrays = [isinstance(n, list) for n in nodes if n is not None]
        index = part.isdigit() and bool(arrays) and arrays[0]
        out.append(int(part) if index else part)
        nodes = [_child(n, part) for n in nodes]
    return out


def _child(node: Any, part: str) -> Any:
    if isinstance(node, Mapping):
        return node.get(part)
    if isinstance(node, list) and part.isdigit() and int(part) < len(node):
        return node[int(part)]
    return None


def same_value(a: Any, b: Any) -> bool:
    """Whether two values are stored alike: same BSON types, same bytes."""
    return bson.encode({"v": a}) == bson.encode({"v": b})


class _Walk:
    """One comparison of two images, collecting what changed."""

    def __init__(self, how: Any) -> None:
        self.by_values = how == PIPELINE
        self.arrays: dict[str, set[int] | None] = {}
        self.pushed: set[str] = set()
        if isinstance(how, Mapping):
            for path, indices in how.get("arrays", ()):
                known = self.arrays.get(path, set())
                if indices is None or known is None:
                    self.arrays[path] = None
                else:
                    self.arrays[path] = known | set(indices)
            self.pushed = set(how.get("pushed", ()))
        self.updated: dict[str, Any] = {}
        self.removed: list[str] = []
        self.truncated: list[dict[str, Any]] = []

    def document(self, pre: Mapping[str, Any], post: Mapping[str, Any], prefix: str) -> None:
        for key, new in post.items():
            if not prefix and key == "_id":
                continue  # mongod never changes a document's _id
            path = f"{prefix}{key}"
            if key in pre:
                self.value(pre[key], new, path)
            else:
                self.updated[path] = new
        self.removed.extend(f"{prefix}{key}" for key in pre if key not in post)

    def value(self, old: Any, new: Any, path: str) -> None:
        if same_value(old, new):
            return
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            before = len(self.updated) + len(self.removed)
            self.document(old, new, f"{path}.")
            if len(self.updated) + len(self.removed) == before:  # only the order changed
                self.updated[path] = new
        elif isinstance(old, list) and isinstance(new, list):
            self.array(old, new, path)
        else:
            self.updated[path] = new

    def array(self, old: list[Any], new: list[Any], path: str) -> None:
        if self.by_values:
            for i, item in enumerate(new):
                if i < len(old):
                    self.value(old[i], item, f"{path}.{i}")
                else:
                    self.updated[f"{path}.{i}"] = item
            if len(new) < len(old):
                self.truncated.append({"field": path, "newSize": len(new)})
            return
        written = self.arrays.get(path, set())
        if path not in self.arrays or len(new) < len(old) or (not old and path in self.pushed):
            self.updated[path] = new
            return
        for i, item in enumerate(new):
            if i < len(old):
                self.value(old[i], item, f"{path}.{i}")
            elif written is None or i in written:
                self.updated[f"{path}.{i}"] = item

    def collapse(self, post: Mapping[str, Any], path: str, always: bool) -> None:
        """Report ``path`` whole in place of what changed at or below it."""
        found, value = _get(post, path)
        if not found:
            return

        def below(p: str) -> bool:
            return p == path or p.startswith(path + ".")

        touched = any(below(k) for k in self.updated) or any(below(r) for r in self.removed)
        touched = touched or any(below(str(t["field"])) for t in self.truncated)
        if not (touched or always):
            return
        self.removed[:] = [r for r in self.removed if not below(r)]
        self.truncated[:] = [t for t in self.truncated if not below(str(t["field"]))]
        kept = {k: v for k, v in self.updated.items() if not below(k)}
        self.updated.clear()
        self.updated.update(kept)
        self.updated[path] = value


def _get(doc: Any, path: str) -> tuple[bool, Any]:
    node = doc
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node
