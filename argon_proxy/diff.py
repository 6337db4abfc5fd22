"""Differences between two refs (branches, tags, points in time).

Theory of operation: two refs can only differ in documents that one of them
changed since their common base (``history.sides``), so only those are read,
from both views, by ``_id``: the cost follows the number of changes, never
the size of the collections. A document present on one side only is added
or removed; present on both and not equal, modified, with its field changes
(``docdiff.field_changes``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from . import history, refs
from .catalog import Catalog, hashable_id
from .dbclient import DbClient
from .docdiff import field_changes
from .errors import BAD_VALUE, ArgonError
from .timetravel import Snapshots
from .view import fetch


async def changed_ids(
    db: DbClient, windows: tuple[history.Window, ...], where: dict[str, Any]
) -> dict[str, dict[Any, Any]]:
    """``ns -> {hashable id: raw id}`` of every document the windows changed."""
    out: dict[str, dict[Any, Any]] = defaultdict(dict)
    async for entry in history.scan(db, windows, where=where, projection={"ns": 1, "doc_id": 1}):
        out[entry["ns"]].setdefault(hashable_id(entry["doc_id"]), entry["doc_id"])
    return out


async def diff_action(
    db: DbClient, catalog: Catalog, snapshots: Snapshots, cmd: dict[str, Any]
) -> dict[str, Any]:
    """``diff``: what changes from ``from`` to ``to``."""
    limit = int(cmd.get("limit", 100))
    if limit < 0:
        raise ArgonError(BAD_VALUE, "diff: 'limit' must be >= 0")
    left = await refs.resolve(db, catalog, snapshots, cmd.get("from"))
    right = await refs.resolve(db, catalog, snapshots, cmd.get("to"))
    both = history.sides(catalog, left, right)
    where = history.ns_filter(cmd.get("db"), cmd.get("collection"))
    ids = await changed_ids(db, both.left, where)
    for ns, more in (await changed_ids(db, both.right, where)).items():
        ids[ns].update(more)
    summary = {"added": 0, "removed": 0, "modified": 0}
    collections = []
    for ns in sorted(ids):
        history.refuse_main_drops(catalog, (*both.left, *both.right), ns, "diff")
        dbname, coll = ns.split(".", 1)
        raw = list(ids[ns].values())
        before = await fetch(db, catalog, left, dbname, coll, raw)
        after = await fetch(db, catalog, right, dbname, coll, raw)
        entry = _compare(ns, ids[ns], before, after, limit)
        if entry["added"] or entry["removed"] or entry["modified"]:
            collections.append(entry)
            for key in summary:
                summary[key] += entry[key]
    return {
        "diff": {
            "from": cmd.get("from"),
            "to": cmd.get("to"),
            "summary": summary,
            "collections": collections,
        }
    }


def _compare(
    ns: str,
    ids: dict[Any, Any],
    before: dict[Any, dict[str, Any]],
    after: dict[Any, dict[str, Any]],
    limit: int,
) -> dict[str, Any]:
    counts = {"added": 0, "removed": 0, "modified": 0}
    docs: list[dict[str, Any]] = []
    for key, raw in ids.items():
        fields: list[dict[str, Any]] = []
        old, new = before.get(key), after.get(key)
        if old is None and new is None:
            continue
        if old is None:
            change = "added"
        elif new is None:
            change = "removed"
        else:
            fields = [f.to_doc() for f in field_changes(old, new)]
            if not fields:
                continue
            change = "modified"
        counts[change] += 1
        if len(docs) < limit:
            docs.append(
                {"docId": raw, "change": change, "before": old, "after": new, "fields": fields}
            )
    return {"ns": ns, **counts, "documents": docs}
