"""Index changes in a merge.

Theory of operation: every index change on a branch, main included, is in
``__argon.index_log`` under an LSN, as the index's specification after the
change (None: dropped). A merge takes the net change of each index name on
each side since the merge base, from the same windows as for documents: an
index only the source changed is changed the same way on the target; one
both sides changed alike agrees; one they changed differently conflicts,
and strategy ours / theirs or a resolution decides. Index changes are
applied before the documents, so the documents meet the target's new unique
indexes; an index the target's data cannot satisfy fails the merge before
any document moves, and the index changes already made are put back.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import bson
import trio

from . import history
from .catalog import Branch, Catalog
from .dbclient import DbClient
from .errors import ArgonError
from .indexes import Indexes, comparable, list_specs
from .naming import INTERNAL_DB, MAIN


@dataclass(frozen=True, slots=True)
class IndexChange:
    """Make index ``name`` of ``ns`` on the target be ``spec`` (None: absent)."""

    ns: str
    name: str
    spec: dict[str, Any] | None

    def to_doc(self) -> dict[str, Any]:
        return {"ns": self.ns, "name": self.name, "op": "drop" if self.spec is None else "create"}


async def net_changes(
    db: DbClient, windows: tuple[history.Window, ...], *, after: int | None = None
) -> dict[tuple[str, str], dict[str, Any] | None]:
    """The last specification of each index changed in ``windows`` (None: dropped)."""
    out: dict[tuple[str, str], dict[str, Any] | None] = {}
    for w in sorted(windows, key=lambda w: w.after):
        flt = w.query()
        if after is not None:
            flt["_id"] = {**flt["_id"], "$gt": bson.Int64(max(after, w.after))}
        cmd = {"find": "index_log", "filter": flt, "sort": {"_id": 1}}
        async for entry in db.cursor(INTERNAL_DB, cmd):
            out[(entry["ns"], entry["name"])] = entry.get("spec")
    return out


def same_spec(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    if a is None or b is None:
        return a is b
    return bson.encode(dict(sorted(a.items()))) == bson.encode(dict(sorted(b.items())))


async def apply_all(
    catalog: Catalog, indexes: Indexes, target: Branch, changes: list[IndexChange]
) -> None:
    """Apply ``changes`` to the target; if one fails, put back those already made."""
    undo: list[IndexChange] = []
    try:
        for change in changes:
            before = await _apply(catalog, indexes, target, change)
            if before is not None:
                undo.append(before)
    except BaseException:
        with trio.CancelScope(shield=True):
            for change in reversed(undo):
                with contextlib.suppress(ArgonError):
                    await _apply(catalog, indexes, target, change)
        raise


async def _apply(
    catalog: Catalog, indexes: Indexes, target: Branch, change: IndexChange
) -> IndexChange | None:
    """Make the target's index ``change.name`` be ``change.spec``; returns the change
    that puts it back (None when nothing changed)."""
    db, coll = change.ns.split(".", 1)
    current = {s["name"]: s for s in await list_specs(catalog, target, db, coll)}
    have = current.get(change.name)
    old = comparable(have) if have is not None else None
    if same_spec(old, change.spec):
        return None
    if have is not None:
        await _run(indexes, target, db, {"dropIndexes": coll, "index": change.name})
    back = IndexChange(change.ns, change.name, old)
    if change.spec is not None:
        try:
            await _run(indexes, target, db, {"createIndexes": coll, "indexes": [change.spec]})
        except ArgonError:
            if old is not None:
                await _run(indexes, target, db, {"createIndexes": coll, "indexes": [old]})
            raise
    return back


async def _run(indexes: Indexes, target: Branch, db: str, cmd: dict[str, Any]) -> None:
    if target.name == MAIN:
        await indexes.change_on_main(db, cmd)
    elif "createIndexes" in cmd:
        await indexes.create_indexes(target, db, cmd)
    else:
        await indexes.drop_indexes(target, db, cmd)
