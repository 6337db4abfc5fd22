"""Time travel: a branch as it was at an LSN or a time, built from the WAL.

Theory of operation: the state of branch X at LSN L is a new child branch S of
X whose overlay holds, for every document X changed after L, the pre-image of
its first change after L (a tombstone when that change was its insert). Every
later write on X freezes into S like into any child, so S stays at L. Building
S reads only X's WAL entries after L: its cost follows the number of changes
since L, never the size of the collections or of the whole history.

Snapshots behind ``db@branch@point`` addresses are shared by every point
showing the same state, bounded in number and collected when idle
(``Snapshots``); a point not yet in the past is refused, never cached.

The WAL image always wins over a freeze that came before the build wrote
that collection (it is written with a replacement), and both are the same
state anyway: the document as it was before its first change after L. The
build holds the writers' lock of each collection while it writes it, so no
freeze trusts an id cache that misses the images.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import bson
import trio

from . import history, wal
from .catalog import Branch, BranchError, Catalog, hashable_id, now
from .dbclient import DbClient
from .errors import BAD_VALUE, BRANCH_EXISTS, POINT_OUT_OF_RANGE, ArgonError
from .naming import INTERNAL_DB, MAIN, TOMBSTONE
from .writes import Writer


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


async def lsn_at(db: DbClient, when: dt.datetime) -> int:
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
        found = await db.find(
            INTERNAL_DB, "wal", {wal.TIME: {"$gt": start, "$lte": end}}, projection={"_id": 1}
        )
        if found:
            return max(int(d["_id"]) for d in found)
        end, step = start, step * 4
    return 0


async def reachable(db: DbClient, catalog: Catalog, branch: Branch) -> dict[str, Any]:
    """The earliest and latest LSN (and time) at which ``branch`` can be read."""
    find = history.wal_finder(db, wal.TIME_FIELDS)
    current = await catalog.current_lsn()
    if branch.name == MAIN:
        # Before Argon's first logged write on main (or what GC kept) nothing is known.
        first = await history.oldest(find, branch.id, above=-1, upto=current)
        earliest = int(first["_id"]) - 1 if first else current
        earliest_time = wal.time_of(first) if first else None
        # A drop or rename no branch kept changed main without WAL entries.
        from .archives import horizon  # archives builds on the catalog, as this does

        floor = await horizon(db)
        if floor > earliest:
            earliest, earliest_time = floor, None
    else:
        earliest, earliest_time = branch.base_lsn, branch.created
    last = await history.newest(find, branch.id, above=earliest, upto=current)
    return {
        "branch": branch.name,
        "earliest_lsn": earliest,
        "earliest_time": earliest_time,
        "latest_lsn": int(last["_id"]) if last else earliest,
        "latest_time": wal.time_of(last) if last else earliest_time,
    }


async def resolve_point(db: DbClient, catalog: Catalog, branch: Branch, point: str) -> int:
    """The LSN ``point`` names on ``branch``, checked against what is reachable.

    A point that is not yet in the past (an LSN above the newest one allocated,
    a time after now) is refused: what it will show is not known yet, and a
    branch or snapshot fixed there would miss the changes made until then.
    """
    value = parse_point(point)
    current = await catalog.current_lsn()
    if isinstance(value, int):
        lsn = value
        if lsn > current:
            raise _future(branch, point, current, "is after the newest LSN")
    else:
        moment = now()
        if value > moment:
            raise _future(branch, point, current, f"is in the future (now {moment.isoformat()})")
        lsn = await lsn_at(db, value)
    span = await reachable(db, catalog, branch)
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
    db: DbClient,
    catalog: Catalog,
    writer: Writer,
    source: Branch,
    lsn: int,
    name: str,
    *,
    read_only: bool,
    point: str,
    store_last: bool = False,
) -> Branch:
    """Create branch ``name``: ``source`` as it was at ``lsn``.

    ``store_last`` stores the branch only once it is complete (BranchExists, and
    nothing left behind, if another proxy stored one of that name meanwhile).
    """
    branch = await catalog.create_branch(
        name,
        source.name,
        base_lsn=lsn,
        read_only=read_only,
        point=point,
        internal="@" in name,
        store=not store_last,
    )
    try:
        await _fill(db, catalog, writer, source, branch, lsn)
        if store_last:
            await catalog.publish(branch)
    except BaseException:
        if store_last:
            with trio.CancelScope(shield=True):
                await catalog.drop_overlays(await catalog.discard(branch))
        raise
    return branch


async def _fill(
    db: DbClient, catalog: Catalog, writer: Writer, source: Branch, branch: Branch, lsn: int
) -> None:
    """Give ``branch`` the first pre-image of every document ``source`` changed after ``lsn``."""
    if source.name == MAIN:
        await _hide_later_names(catalog, branch, lsn)
    firsts: dict[tuple[str, Any], dict[str, Any]] = {}
    cursor = {
        "find": "wal",
        "filter": {"branch_id": source.id, "_id": {"$gt": bson.Int64(lsn)}},
        "sort": {"_id": 1},
    }
    async for entry in db.cursor(INTERNAL_DB, cursor):
        ns = str(entry["ns"])
        if source.name == MAIN:
            if _after_archive(catalog, branch, entry):
                continue  # a later collection of that name: not the one the branch reads
            dbname, coll = ns.split(".", 1)
            renamed = catalog.renamed_from(branch, dbname, coll, int(entry["_id"]))
            ns = f"{dbname}.{renamed}" if renamed is not None else ns  # under its name then
        key = (ns, hashable_id(entry["doc_id"]))
        if key not in firsts:
            pre = wal.image(entry, "pre")
            firsts[key] = pre if pre is not None else {"_id": entry["doc_id"], TOMBSTONE: True}
    by_ns: dict[str, list[dict[str, Any]]] = {}
    for (ns, _), doc in firsts.items():
        by_ns.setdefault(ns, []).append(doc)
    for ns, docs in by_ns.items():
        dbname, coll = ns.split(".", 1)
        # Writers freeze by the id cache; holding their lock keeps it true.
        async with writer.lock(ns):
            ov = await catalog.ensure_overlay(branch, dbname, coll)
            for start in range(0, len(docs), 1000):
                chunk = docs[start : start + 1000]
                updates = [{"q": {"_id": d["_id"]}, "u": d, "upsert": True} for d in chunk]
                await db.command(dbname, {"update": ov.name, "updates": updates})
            # A catalog reload may have copied the cache while it was empty: the new
            # version makes every holder of it read the overlay again.
            for bumped in await catalog.bump(db, [ov]):
                bumped.version += 1
            ov.ids = None  # reload from what is now stored


async def _hide_later_names(catalog: Catalog, branch: Branch, lsn: int) -> None:
    """Register absent, on a snapshot of main at ``lsn``, the names main's
    collections took by renames after it: at ``lsn`` they did not exist."""
    for found in catalog.archives.values():
        for record in found:
            if record.until <= lsn:
                continue
            for name, _ in record.path:
                if catalog.archive_of(branch, record.db, name) is None:
                    await catalog.ensure_overlay(branch, record.db, name, absent=True)


def _after_archive(catalog: Catalog, branch: Branch, entry: dict[str, Any]) -> bool:
    """Whether a WAL entry of main changed a collection created after main dropped
    the one ``branch`` reads as its base (an archive)."""
    db, coll = str(entry["ns"]).split(".", 1)
    archive = catalog.archive_of(branch, db, coll)
    return archive is not None and int(entry["_id"]) > archive.until


def snapshot_name(branch: str, lsn: int) -> str:
    """The internal name of the read-only snapshot behind a ``db@branch@point`` address."""
    return f"{branch}@lsn-{lsn}"


async def same_state(db: DbClient, catalog: Catalog, branch: Branch, lsn: int) -> int:
    """The LSN of ``branch``'s newest own write at or before ``lsn`` (or its base).

    The branch reads the same at every LSN from its write up to the next one, so
    all those points share one snapshot. On main a drop or rename of a collection
    while branches existed (``archives.py``) changes it too, without WAL entries.
    """
    floor = branch.base_lsn if branch.parent is not None else -1
    find = history.wal_finder(db)
    found = await history.newest(find, branch.id, above=floor, upto=lsn)
    if branch.name == MAIN:
        moved = [r.until for rs in catalog.archives.values() for r in rs if r.until <= lsn]
        if found is None:
            return lsn
        return max([int(found["_id"]), *moved])
    if found is not None:
        return int(found["_id"])
    return max(floor, 0) if branch.parent is not None else lsn


_KNOWN_POINTS = 4096  # remembered point resolutions, forgotten all at once past this


@dataclass(frozen=True, slots=True)
class SnapshotLimits:
    """How many snapshots ``Snapshots`` keeps, and for how many seconds after a read
    one is safe from eviction."""

    keep: int = 64
    grace: float = 30.0


class Snapshots:
    """The hidden read-only snapshots behind time-travel addresses and tags.

    One per branch and distinct state (``same_state``), built on first read and
    reused. Each costs a copy-on-write freeze on every write to its branch, so at
    most ``keep`` are kept: beyond that the least recently read go, except those
    read in the last ``grace`` seconds (by any proxy: the time of the last read is
    stored, at most every ``grace / 3`` seconds), which a read may still be using.
    ``gc`` removes those idle for longer than its ``snapshotSeconds``.
    """

    def __init__(
        self, db: DbClient, catalog: Catalog, writer: Writer, limits: SnapshotLimits
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.writer = writer
        self.keep = limits.keep
        self.grace = dt.timedelta(seconds=limits.grace)
        self._lock = trio.Lock()
        # (branch id, LSN point) -> snapshot name: a point in the past always shows
        # the same state, so a second read skips resolving it against the history.
        self._known: dict[tuple[str, int], str] = {}

    async def get(self, branch: Branch, point: str) -> Branch:
        """The snapshot of ``branch`` at ``point``, built if needed."""
        value = parse_point(point)
        key = (branch.id, value) if isinstance(value, int) else None
        known = self.catalog.visible(self._known.get(key, "")) if key else None
        if known is not None:
            await self._touch(known)
            return known
        snap = await self._resolve_and_get(branch, point)
        if key is not None:
            if len(self._known) >= _KNOWN_POINTS:
                self._known.clear()
            self._known[key] = snap.name
        return snap

    async def _resolve_and_get(self, branch: Branch, point: str) -> Branch:
        lsn = await resolve_point(self.db, self.catalog, branch, point)
        # A write holding an LSN up to the point may not have committed yet: the
        # state there is known once it has.
        await self.catalog.forks.settle()
        lsn = await same_state(self.db, self.catalog, branch, lsn)
        name = snapshot_name(branch.name, lsn)
        catalog = self.catalog
        async with self._lock:
            if name not in catalog.branches:
                await catalog.reload()
            if name not in catalog.branches:
                await self._build(branch, lsn, name)
            snap = catalog.branches[name]
            await self._touch(snap)
            await self._evict()
        return snap

    async def _build(self, branch: Branch, lsn: int, name: str) -> None:
        try:
            await build_at(
                self.db,
                self.catalog,
                self.writer,
                branch,
                lsn,
                name,
                read_only=True,
                point=f"lsn-{lsn}",
                store_last=True,
            )
        except BranchError as exc:
            if exc.code != BRANCH_EXISTS:
                raise
            await self.catalog.reload()  # another proxy stored it first, complete

    async def _touch(self, snap: Branch) -> None:
        moment = now()
        if snap.used is None or moment - _aware(snap.used) > self.grace / 3:
            # Not a metadata change other proxies must reload for: no epoch bump.
            snap.used = moment
            await self.db.command(
                INTERNAL_DB,
                {
                    "update": "branches",
                    "updates": [
                        {"q": {"_id": snap.name, "id": snap.id}, "u": {"$set": {"used": moment}}}
                    ],
                },
            )

    async def _evict(self) -> None:
        catalog = self.catalog
        snaps = [
            b for b in catalog.branches.values() if b.time_travel and b.name not in catalog.pending
        ]
        snaps = [b for b in snaps if not catalog.children(b.name)]
        if len(snaps) <= self.keep:
            return
        snaps.sort(key=last_read)
        recent = now() - self.grace
        for snap in snaps[: len(snaps) - self.keep]:
            if last_read(snap) > recent:
                break  # the rest were read more recently still
            from .admin import delete_branch  # admin builds on this module

            await delete_branch(self.db, catalog, snap.name)


def last_read(snap: Branch) -> dt.datetime:
    """When a snapshot was last read, as far as is stored (else when it was built)."""
    return _aware(snap.used or snap.created)


def _aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
