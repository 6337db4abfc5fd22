"""History of a branch or a document: ``log`` and ``blame``, read from the WAL.

Theory of operation: a branch's own changes are its WAL entries (index
``branch_lsn``). A document's history as a branch sees it is every entry of
that document (index ``ns_doc_lsn``) that falls in the branch's lineage: its
own entries after its base, its parent's up to that base, and so on down to
main. ``blame`` replays those entries oldest first and remembers, for every
field path, the last entry that changed it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import bson

from . import history, wal
from .catalog import Catalog
from .dbclient import DbClient
from .docdiff import MISSING, Path, dotted, field_changes, leaf_paths
from .errors import BAD_VALUE, ArgonError
from .naming import INTERNAL_DB
from .view import fetch

_SUMMARY = {"pre": 0, "post": 0, "pre_z": 0, "post_z": 0, "post_d": 0}


def show(
    entry: dict[str, Any], names: Mapping[str, str], *, images: bool = False
) -> dict[str, Any]:
    """A WAL entry as ``log`` lists it: images left out unless ``images``, then
    with the document before and after and the fields that changed. ``names``:
    branch names by id (``branch_names``)."""
    out: dict[str, Any] = {
        "lsn": int(entry["_id"]),
        "ts": wal.time_of(entry),
        "branch": _branch_name(entry, names),
        "ns": entry["ns"],
        "docId": entry["doc_id"],
        "op": {"i": "insert", "u": "update", "d": "delete"}.get(entry["op"], entry["op"]),
        "client": wal.client_of(entry),
    }
    for key in ("merge", "reset", "undo"):
        if key in entry:
            out[key] = entry[key]
    if images:
        before, after = wal.image(entry, "pre"), wal.image(entry, "post")
        out["before"], out["after"] = before, after
        out["changes"] = [c.to_doc() for c in field_changes(before or {}, after or {})]
    return out


def branch_names(catalog: Catalog) -> dict[str, str]:
    """Branch names by id, for ``show``."""
    return {b.id: b.name for b in catalog.branches.values()}


def _branch_name(entry: Mapping[str, Any], names: Mapping[str, str]) -> str:
    # Entries name their branch by id; older ones also stored its name.
    branch_id = str(entry.get("branch_id", ""))
    return names.get(branch_id) or str(entry.get("branch") or branch_id)


async def document_entries(
    db: DbClient, catalog: Catalog, branch_name: str, ns: str, doc_id: Any, *, images: bool
) -> list[dict[str, Any]]:
    """The entries that shaped one document on a branch, oldest first."""
    branch = await catalog.get(branch_name)
    windows = history.lineage(catalog, branch)
    cmd: dict[str, Any] = {
        "find": "wal",
        "filter": {"ns": ns, "doc_id": doc_id},
        "sort": {"_id": 1},
    }
    if not images:
        cmd["projection"] = _SUMMARY
    out = []
    async for entry in db.cursor(INTERNAL_DB, cmd):
        if any(w.holds(entry) for w in windows):
            out.append(entry)
    return out


def _ns(cmd: dict[str, Any]) -> str | None:
    db, coll = cmd.get("db"), cmd.get("collection")
    if db and coll:
        return f"{db}.{coll}"
    return None


async def log_action(db: DbClient, catalog: Catalog, cmd: dict[str, Any]) -> dict[str, Any]:
    """``log``: a branch's WAL entries, or one document's, newest first."""
    name = str(cmd.get("branch") or catalog.default_branch)
    branch = await catalog.get(name)
    limit = int(cmd.get("limit", 100))
    images = bool(cmd.get("images"))
    if "docId" in cmd:
        ns = _ns(cmd)
        if ns is None:
            raise ArgonError(BAD_VALUE, "log of a document needs 'db' and 'collection'")
        entries = await document_entries(db, catalog, branch.name, ns, cmd["docId"], images=images)
        entries.reverse()
        names = branch_names(catalog)
        return {"entries": [show(e, names, images=images) for e in entries[:limit]]}
    flt: dict[str, Any] = {
        "branch_id": branch.id,
        **history.ns_filter(cmd.get("db"), cmd.get("collection")),
    }
    lsn: dict[str, Any] = {}
    if cmd.get("sinceLsn") is not None:
        lsn["$gte"] = bson.Int64(int(cmd["sinceLsn"]))
    if cmd.get("untilLsn") is not None:
        lsn["$lte"] = bson.Int64(int(cmd["untilLsn"]))
    if lsn:
        flt["_id"] = lsn
    # who authenticated (auth on: see auth.py), the client's appName
    user, app = cmd.get("user"), cmd.get("app")
    flt.update(
        wal.client_filter(
            app=str(app) if app is not None else None, user=str(user) if user is not None else None
        )
    )
    options: dict[str, Any] = {} if images else {"projection": _SUMMARY}
    found = await db.find(INTERNAL_DB, "wal", flt, sort={"_id": -1}, limit=limit, **options)
    names = branch_names(catalog)
    return {"entries": [show(e, names, images=images) for e in found]}


async def blame_action(db: DbClient, catalog: Catalog, cmd: dict[str, Any]) -> dict[str, Any]:
    """``blame``: for each field of one document, the write that last changed it."""
    ns = _ns(cmd)
    if ns is None or "docId" not in cmd:
        raise ArgonError(BAD_VALUE, "blame needs 'db', 'collection' and 'docId'")
    name = str(cmd.get("branch") or catalog.default_branch)
    entries = await document_entries(db, catalog, name, ns, cmd["docId"], images=True)
    last: dict[Path, dict[str, Any]] = {}
    for entry in entries:
        pre, post = wal.image(entry, "pre"), wal.image(entry, "post")
        if post is None:
            last.clear()
        elif pre is None:
            last = {p: entry for p in leaf_paths(post)}
        else:
            for change in field_changes(pre, post):
                last = {p: e for p, e in last.items() if p[: len(change.path)] != change.path}
                if change.after is not MISSING:
                    last[change.path] = entry
    branch = await catalog.get(name)
    dbname, coll = ns.split(".", 1)
    found = await fetch(db, catalog, branch, dbname, coll, [cmd["docId"]])
    current = next(iter(found.values()), None)
    names = branch_names(catalog)
    fields = []
    for path in leaf_paths(current or {}):
        owner = next((last[path[:n]] for n in range(len(path), 0, -1) if path[:n] in last), None)
        row: dict[str, Any] = {"path": dotted(path), "lsn": None}
        if owner is not None:
            row.update(
                lsn=int(owner["_id"]),
                ts=wal.time_of(owner),
                op=show(owner, names)["op"],
                client=wal.client_of(owner),
                branch=_branch_name(owner, names),
            )
        fields.append(row)
    return {"document": current, "fields": fields}
