"""Time travel: a branch as it was at an LSN or a time, built from the WAL.

Theory of operation: the state of branch X at LSN L is a new child branch S of
X whose overlay holds, for every document X changed after L, the pre-image of
its first change after L (a tombstone when that change was its insert). Every
later write on X freezes into S like into any child, so S stays at L. Building
S reads only X's WAL entries after L: its cost follows the number of changes
since L, never the size of the collections or of the whole history.

The WAL image always wins over a freeze that came before the build wrote
that collection (it is written with a replacement), and both are the same
state anyway: the document as it was before its first change after L. The
build holds the writers' lock of each collection while it writes it, so no
freeze trusts an id cache that misses the images.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import bson

from . import history, wal
from .catalog import Branch, BranchError, hashable_id, now
from .errors import BAD_VALUE, POINT_OUT_OF_RANGE, ArgonError
from .naming import INTERNAL_DB, MAIN, TOMBSTONE

if TYPE_CHECKING:
    from .engine import Engine


def parse_point(text: str) -> int | dt.datetime:
    """``lsn-123`` (an LSN) or an ISO-8601 time (``2026-11-23T06:00:00Z``)."""
    if text.startswith("lsn-") and text[4:].isdigit():
        return int(text[4:])
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ArgonError(
            BAD_VALUE,
            f"cannot read {text!r} as a point in time: use lsn-<number> or an ISO time "
            "such as 2026-11-23T06:00:00Z",
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


async def lsn_at(engine: Engine, when: dt.datetime) -> int:
    """The last LSN committed at or before ``when`` (0 if none).

    Time windows ending at ``when`` grow fourfold until one holds an entry: each
    is a range on the ``ts`` index, where a sort with a limit would scan the
    whole WAL on some servers.
    """
    step = dt.timedelta(seconds=1)
    oldest = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    end = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    while end > oldest:
        start = max(oldest, end - step)
        found = await engine.db.find(
            INTERNAL_DB, "wal", {"ts": {"$gt": start, "$lte": end}}, projection={"_id": 1}
        )
        if found:
            return max(int(d["_id"]) for d in found)
        end, step = start, step * 4
    return 0


async def reachable(engine: Engine, branch: Branch) -> dict[str, Any]:
    """The earliest and latest LSN (and time) at which ``branch`` can be read."""
    find = history.wal_finder(engine.db, {"_id": 1, "ts": 1})
    current = await engine.catalog.current_lsn()
    if branch.name == MAIN:
        # Before Argon's first logged write on main (or what GC kept) nothing is known.
        first = await history.oldest(find, branch.id, above=-1, upto=current)
        earliest = int(first["_id"]) - 1 if first else current
        earliest_time = first["ts"] if first else None
    else:
        earliest, earliest_time = branch.base_lsn, branch.created
    last = await history.newest(find, branch.id, above=earliest, upto=current)
    return {
        "branch": branch.name,
        "earliest_lsn": earliest,
        "earliest_time": earliest_time,
        "latest_lsn": int(last["_id"]) if last else earliest,
        "latest_time": last["ts"] if last else earliest_time,
    }


async def resolve_point(engine: Engine, branch: Branch, point: str) -> int:
    """The LSN ``point`` names on ``branch``, checked against what is reachable.

    A point that is not yet in the past (an LSN above the newest one allocated,
    a time after now) is refused: what it will show is not known yet, and a
    branch or snapshot fixed there would miss the changes made until then.
    """
    value = parse_point(point)
    current = await engine.catalog.current_lsn()
    if isinstance(value, int):
        lsn = value
        if lsn > current:
            raise _future(branch, point, current, "is after the newest LSN")
    else:
        moment = now()
        if value > moment:
            raise _future(branch, point, current, f"is in the future (now {moment.isoformat()})")
        lsn = await lsn_at(engine, value)
    span = await reachable(engine, branch)
    if lsn < span["earliest_lsn"]:
        raise BranchError(
            POINT_OUT_OF_RANGE,
            f"{point} is before the earliest reachable point of branch {branch.name!r} "
            f"(LSN {span['earliest_lsn']}); see `argon time-travel info`",
        )
    return int(lsn)


def _future(branch: Branch, point: str, current: int, why: str) -> BranchError:
    return BranchError(
        POINT_OUT_OF_RANGE,
        f"{point} {why}: branch {branch.name!r} can be read up to the current LSN "
        f"{current} (lsn-{current}); see `argon time-travel info`",
    )


async def build_at(
    engine: Engine, source: Branch, lsn: int, name: str, *, read_only: bool, point: str
) -> Branch:
    """Create branch ``name``: ``source`` as it was at ``lsn``."""
    catalog = engine.catalog
    branch = await catalog.create_branch(
        name, source.name, base_lsn=lsn, read_only=read_only, point=point, internal="@" in name
    )
    firsts: dict[tuple[str, Any], dict[str, Any]] = {}
    cursor = {
        "find": "wal",
        "filter": {"branch_id": source.id, "_id": {"$gt": bson.Int64(lsn)}},
        "sort": {"_id": 1},
    }
    async for entry in engine.db.cursor(INTERNAL_DB, cursor):
        key = (entry["ns"], hashable_id(entry["doc_id"]))
        if key not in firsts:
            pre = wal.image(entry, "pre")
            firsts[key] = pre if pre is not None else {"_id": entry["doc_id"], TOMBSTONE: True}
    by_ns: dict[str, list[dict[str, Any]]] = {}
    for (ns, _), doc in firsts.items():
        by_ns.setdefault(ns, []).append(doc)
    for ns, docs in by_ns.items():
        db, coll = ns.split(".", 1)
        # Writers freeze by the id cache; holding their lock keeps it true.
        async with engine.writer.lock(ns):
            ov = await catalog.ensure_overlay(branch, db, coll)
            for start in range(0, len(docs), 1000):
                chunk = docs[start : start + 1000]
                updates = [{"q": {"_id": d["_id"]}, "u": d, "upsert": True} for d in chunk]
                await engine.db.command(db, {"update": ov.name, "updates": updates})
            ov.ids = None  # reload from what is now stored
    return branch


def snapshot_name(branch: str, lsn: int) -> str:
    """The internal name of the read-only snapshot behind a ``db@branch@point`` address."""
    return f"{branch}@lsn-{lsn}"
