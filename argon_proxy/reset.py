"""Reset a branch to an earlier point, and undo a range of its writes.

Theory of operation: both are new writes, never deletions from the WAL: the
history stays auditable and children stay isolated through the usual
copy-on-write freeze. A reset to LSN p restores, for every document the
branch changed after p, the pre-image of its first change after p (absent
if that change inserted it). An undo of the range [a, b] does the same for
the changes in the range, but only for documents whose current version is
still the one the range left (the post-image of its last change in the
range); a document someone changed since is refused and reported.

All the writes of one reset or undo run in one upstream transaction and carry
its id in the WAL. Merges that the reset discards stop counting as merge
bases, so the branches can be merged again.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from typing import Any

import bson

from . import history, refs, timetravel, wal
from .catalog import Branch, BranchError, Catalog, hashable_id
from .dbclient import DbClient
from .docdiff import same
from .errors import BAD_VALUE, READ_ONLY_BRANCH, ArgonError
from .naming import INTERNAL_DB
from .txn import Runner
from .view import fetch
from .write_context import WriteContext
from .writes import Writer

SHOWN = 100
Restore = dict[str, dict[Any, tuple[Any, dict[str, Any] | None, dict[str, Any] | None]]]


def _writable(branch: Branch, what: str) -> None:
    if branch.read_only:
        raise BranchError(READ_ONLY_BRANCH, f"{what} refused: branch {branch.name!r} is read-only")


async def _target_lsn(db: DbClient, catalog: Catalog, branch: Branch, cmd: dict[str, Any]) -> int:
    if cmd.get("tag") is not None:
        tag = await refs.find_tag(db, str(cmd["tag"]))
        if tag is None or tag["branch"] != branch.name:
            raise ArgonError(
                BAD_VALUE, f"tag {cmd['tag']!r} is not a tag of branch {branch.name!r}"
            )
        return int(tag["lsn"])
    if cmd.get("lsn") is not None:
        return await timetravel.resolve_point(db, catalog, branch, f"lsn-{int(cmd['lsn'])}")
    if cmd.get("time") is not None:
        when = cmd["time"]
        text = when.isoformat() if hasattr(when, "isoformat") else str(when)
        return await timetravel.resolve_point(db, catalog, branch, text)
    raise ArgonError(BAD_VALUE, "resetBranch needs one of 'lsn', 'time' or 'tag'")


async def _collect(
    db: DbClient, windows: tuple[history.Window, ...], where: dict[str, Any]
) -> Restore:
    """Per document: (raw id, first pre-image, last post-image) within the windows."""
    out: Restore = defaultdict(dict)
    async for entry in history.scan(db, windows, where=where):
        per_ns = out[entry["ns"]]
        key = hashable_id(entry["doc_id"])
        post = wal.image(entry, "post")
        if key in per_ns:
            raw, pre, _ = per_ns[key]
            per_ns[key] = (raw, pre, post)
        else:
            per_ns[key] = (entry["doc_id"], wal.image(entry, "pre"), post)
    return out


async def _apply(
    catalog: Catalog,
    writer: Writer,
    branch: Branch,
    writes: dict[str, list[tuple[Any, dict[str, Any] | None]]],
    extra: dict[str, Any],
) -> list[int]:
    client = wal.ClientIdentity(f"argon:{next(iter(extra))}", None, 0)

    async def unit(txn: Runner) -> list[int]:
        lsns: list[int] = []
        for ns, items in writes.items():
            db, coll = ns.split(".", 1)
            ctx = WriteContext(branch, db, coll, client, joined=txn, extra=extra)
            lsns.extend((await writer.put_many(ctx, items)).lsns)
        return [min(lsns), max(lsns)] if lsns else []

    async with catalog.forks.writing():  # no branch forks half-way through
        return await writer.in_transaction(unit, restart_on_stale=True)


async def reset_action(
    db: DbClient, catalog: Catalog, writer: Writer, cmd: dict[str, Any]
) -> dict[str, Any]:
    """``resetBranch``: make a branch what it was at an LSN, time or tag."""
    branch = await catalog.get(str(cmd.get("name") or ""))
    _writable(branch, "reset")
    lsn = await _target_lsn(db, catalog, branch, cmd)
    found = await _collect(db, history.since(branch, lsn), {})
    writes: dict[str, list[tuple[Any, dict[str, Any] | None]]] = {}
    shown: list[dict[str, Any]] = []
    changes = 0
    for ns, per_ns in found.items():
        dbname, coll = ns.split(".", 1)
        ids = [raw for raw, _, _ in per_ns.values()]
        now_docs = await fetch(db, catalog, branch, dbname, coll, ids)
        items = []
        for key, (raw, pre, _) in per_ns.items():
            current = now_docs.get(key)
            if same(current, pre):
                continue
            items.append((raw, pre))
            changes += 1
            if len(shown) < SHOWN:
                shown.append({"ns": ns, "docId": raw, "current": current, "restored": pre})
        if items:
            writes[ns] = items
    reply: dict[str, Any] = {
        "branch": branch.name,
        "to_lsn": lsn,
        "discarded": {"documents": changes},
        "collections": [{"ns": ns, "documents": len(items)} for ns, items in writes.items()],
        "documents": shown,
        "applied_lsns": [],
    }
    if cmd.get("dryRun") or not writes:
        return {"reset": reply}
    reset_id = "r" + secrets.token_hex(6)
    reply["id"] = reset_id
    reply["applied_lsns"] = await _apply(catalog, writer, branch, writes, {"reset": reset_id})
    await _forget_merges(db, branch, lsn)
    return {"reset": reply}


async def _forget_merges(db: DbClient, branch: Branch, lsn: int) -> None:
    """Merges into or out of ``branch`` after ``lsn`` are no longer merge bases."""
    after = bson.Int64(lsn)
    await db.command(
        INTERNAL_DB,
        {
            "update": "merges",
            "updates": [
                {
                    "q": {
                        "status": "applied",
                        "$or": [
                            {"target": branch.name, "applied_lsns.0": {"$gt": after}},
                            {"source": branch.name, "source_lsn": {"$gt": after}},
                        ],
                    },
                    "u": {"$set": {"status": "reset"}},
                    "multi": True,
                }
            ],
        },
    )


async def undo_action(
    db: DbClient, catalog: Catalog, writer: Writer, cmd: dict[str, Any]
) -> dict[str, Any]:
    """``undo``: revert the writes of an LSN range (optionally one client's: by its
    appName, ``client``, or by the user it authenticated as, ``user``)."""
    branch = await catalog.get(str(cmd.get("branch") or ""))
    _writable(branch, "undo")
    try:
        first, last = int(cmd["fromLsn"]), int(cmd["toLsn"])
    except (KeyError, TypeError, ValueError):
        raise ArgonError(BAD_VALUE, "undo needs 'fromLsn' and 'toLsn' (numbers)") from None
    if first > last:
        raise ArgonError(BAD_VALUE, "undo: 'fromLsn' is after 'toLsn'")
    window = history.Window.of(branch, max(first - 1, branch.base_lsn), last)
    where = wal.client_filter(
        app=str(cmd["client"]) if cmd.get("client") else None,
        user=str(cmd["user"]) if cmd.get("user") else None,
    )
    found = await _collect(db, (window,), where)
    writes: dict[str, list[tuple[Any, dict[str, Any] | None]]] = {}
    refused: list[dict[str, Any]] = []
    for ns, per_ns in found.items():
        dbname, coll = ns.split(".", 1)
        ids = [raw for raw, _, _ in per_ns.values()]
        now_docs = await fetch(db, catalog, branch, dbname, coll, ids)
        for key, (raw, pre, post) in per_ns.items():
            current = now_docs.get(key)
            if not same(current, post):
                refused.append(
                    {"ns": ns, "docId": raw, "reason": "changed since the range being undone"}
                )
            elif not same(current, pre):
                writes.setdefault(ns, []).append((raw, pre))
    reply: dict[str, Any] = {
        "documents": sum(len(v) for v in writes.values()),
        "refused": refused,
        "applied_lsns": [],
    }
    if not cmd.get("dryRun") and writes:
        undo_id = "u" + secrets.token_hex(6)
        reply["id"] = undo_id
        reply["applied_lsns"] = await _apply(catalog, writer, branch, writes, {"undo": undo_id})
    return {"undo": reply}
