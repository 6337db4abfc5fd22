"""Garbage collection: expired branches, idle time-travel snapshots, old WAL.

Theory of operation: nothing that a live branch, tag, snapshot or merge base
can still need is removed.

* A branch whose ``expires`` time has passed is deleted like ``deleteBranch``
  would (one with live children is kept and reported).
* The read-only snapshots behind time-travel addresses (``db@main@lsn-5``)
  cost a copy-on-write freeze on every write to their branch; those not read
  for ``snapshotSeconds`` are dropped and rebuilt from the WAL if read again
  (the proxy also keeps only the most recently read ones: ``Snapshots``).
* Collections main dropped or renamed are kept aside (``archives.py``) while
  a branch reads them or time travel reaches a point before the change.
* WAL entries older than ``retainSeconds`` are removed only where nothing
  reads them: a branch's changes since a child forked, since a tag's point,
  and since the source point of a merge are kept, and so is every entry of a
  live branch other than main (they are what merging it applies). Entries of
  deleted branches go once they are older than the retention.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import bson

from . import archives
from .catalog import Catalog, now
from .dbclient import DbClient
from .errors import BAD_VALUE, ArgonError
from .naming import INTERNAL_DB, MAIN
from .timetravel import last_read, lsn_at

DEFAULT_RETAIN = 7 * 24 * 3600
DEFAULT_SNAPSHOT_IDLE = 3600


def _seconds(cmd: dict[str, Any], key: str, default: int) -> int:
    value = cmd.get(key, default)
    if not isinstance(value, int | float) or value < 0:
        raise ArgonError(BAD_VALUE, f"gc: {key!r} is a number of seconds >= 0")
    return int(value)


async def main_floor(db: DbClient, catalog: Catalog, cutoff_lsn: int) -> int:
    """The highest LSN of main's entries that nothing needs any more."""
    needs = [cutoff_lsn]
    needs += [b.base_lsn for b in catalog.children(MAIN)]
    for tag in await db.find(INTERNAL_DB, "tags", {"branch": MAIN}):
        needs.append(int(tag["lsn"]))
    merges = await db.find(INTERNAL_DB, "merges", {"source": MAIN, "status": "applied"})
    needs += [int(m["source_lsn"]) for m in merges]
    return min(needs)


async def gc_action(db: DbClient, catalog: Catalog, cmd: dict[str, Any]) -> dict[str, Any]:
    """``gc``: remove what has expired; ``dryRun`` reports without removing."""
    from .admin import delete_branch  # the admin module owns branch deletion

    retain = _seconds(cmd, "retainSeconds", DEFAULT_RETAIN)
    idle = _seconds(cmd, "snapshotSeconds", DEFAULT_SNAPSHOT_IDLE)
    dry = bool(cmd.get("dryRun"))
    await catalog.reload()
    moment = now()
    expired, kept = [], []
    for b in list(catalog.branches.values()):
        if b.name == MAIN or b.expires is None or _aware(b.expires) > moment:
            continue
        if [k for k in catalog.children(b.name) if "@" not in k.name]:
            kept.append(b.name)
            continue
        expired.append(b.name)
        if not dry:
            await delete_branch(db, catalog, b.name)
    snapshots = []
    for b in list(catalog.branches.values()):
        if b.time_travel and last_read(b) < moment - dt.timedelta(seconds=idle):
            if catalog.children(b.name):
                continue
            snapshots.append(b.name)
            if not dry:
                await delete_branch(db, catalog, b.name)
    cutoff_time = moment - dt.timedelta(seconds=retain)
    cutoff = await lsn_at(db, cutoff_time)
    floor = await main_floor(db, catalog, cutoff)
    live = sorted(b.id for b in catalog.branches.values())
    doomed = [
        {"branch_id": MAIN, "_id": {"$lte": bson.Int64(floor)}},
        # also entries no branch owns (a deleted one's, by name or by id)
        {"branch_id": {"$nin": live}, "_id": {"$lte": bson.Int64(cutoff)}},
    ]
    removed = 0
    for flt in doomed:
        if dry:
            removed += int((await db.command(INTERNAL_DB, {"count": "wal", "query": flt}))["n"])
        else:
            reply = await db.command(
                INTERNAL_DB, {"delete": "wal", "deletes": [{"q": flt, "limit": 0}]}
            )
            removed += int(reply.get("n", 0))
    moved = await archives.collect(catalog, floor, dry)
    return {
        "gc": {
            "dry_run": dry,
            "archives_removed": moved,
            "expired_branches": expired,
            "expired_kept_for_children": kept,
            "snapshots_removed": snapshots,
            "wal_removed": removed,
            "main_wal_floor": floor,
        }
    }


def _aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
