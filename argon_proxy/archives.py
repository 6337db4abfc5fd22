"""Dropping and renaming main's collections: the collection moves aside.

Theory of operation: main is the real data, so a drop on main must take the
collection away from main, yet a branch forked before the drop still shows it
as it was then (its own changes on top). Without any branch mongod's own
drop or rename runs, so main's change streams report it as mongod does, and
time travel no longer reaches a point before it (``HORIZON``: the documents
nobody changed since are in no WAL entry). While branches exist, every drop
and rename is kept as below, even of a collection none of them reads (one
forked before an earlier drop of the name reads that one's archive), so time
travel on main still reaches across it; ``gc`` removes archives no branch
reads once time travel no longer reaches before them. Copying it into every such branch
would cost its size; instead the upstream renames it, in one step whatever
its size, to an internal name in the same database (an *archive*), and the
catalog records the drop's LSN (``Catalog.archives``). A branch forked before
that LSN reads the archive as its base (``Catalog.base_name``), with the
overlay it already had: main wrote nothing to the collection between the
branch's fork and the drop that is not frozen into that overlay. Branches
forked later, and main itself, see main's collection of that name, if main
creates it again, and main's writes to it freeze into those later branches
only.

A rename on main works the same way without any copy: the collection takes
its new name on main at once, and the branches forked before read it under
its old name as their base (a *live* record: main's writes under the new name
freeze into their overlays of the old one, as main's writes under the old
name did). If main later drops or renames it again, the record follows it
(``_repoint``). A ``dropTarget`` drops the target as a drop does. Renames into
another database are refused while branches read the collection (an overlay
and its base must share a database), and otherwise are mongod's own.

The record is written first, marked ``pending``, then the rename runs, then
the mark goes: a crash in between leaves a pending record that the next
start settles by whether the renamed collection exists (``settle``). Views
cannot be moved aside, so dropping one (or a database holding one) is
refused while branches exist.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .catalog import Archive, Catalog
from .dbclient import DbClient
from .errors import COMMAND_NOT_SUPPORTED, NAMESPACE_EXISTS, ArgonError
from .naming import INTERNAL_DB, INTERNAL_PREFIX, MAIN, is_internal
from .writes import Writer

_MAX_NS = 255  # bytes of a namespace, as mongod counts them


async def drop(catalog: Catalog, writer: Writer, db: str, coll: str) -> dict[str, Any] | None:
    """Drop main's ``db.coll`` while branches exist, moving it aside: None without
    branches, or when main has no such collection, so mongod's own drop answers."""
    found = await catalog.db.find_cursor(db, {"listCollections": 1, "filter": {"name": coll}})
    if not found:
        return None  # nothing changes: time travel still reaches as far
    if coll.startswith("system.") or not catalog.children(MAIN):
        await set_horizon(catalog)  # no branch keeps it: time travel stops here
        return None
    if found[0].get("type") != "collection":
        if not catalog.children(MAIN):
            return None
        raise _refused(f"drop of view {db}.{coll}", "a view cannot be kept for them")
    ns = f"{db}.{coll}"
    async with catalog.forks.writing(), writer.lock(ns):
        since = catalog.loads
        await catalog.child_overlays(catalog.branches[MAIN], db, coll)  # never passthrough
        indexes = await catalog.db.find_cursor(db, {"listIndexes": coll})
        until = await catalog.allocate_lsns(catalog.db, 1)
        archive = Archive(db, coll, f"{INTERNAL_PREFIX}main{until}.{coll}", until)
        if len(f"{db}.{archive.physical}".encode()) > _MAX_NS:
            raise _refused(f"drop of {ns}", "its name is too long to keep it under another")
        record = {**archive.to_doc(), "pending": True}
        await catalog.db.command(INTERNAL_DB, {"insert": "archives", "documents": [record]})
        to = f"{db}.{archive.physical}"
        await catalog.db.command("admin", {"renameCollection": ns, "to": to})
        await _settled(catalog.db, archive)
        catalog.archives.setdefault((db, coll), []).append(archive)
        for older in catalog.live_records(db, coll):  # renamed earlier: now still
            still = replace(older, physical=archive.physical, live=False, frozen=until)
            await _repoint(catalog, still)
        await catalog.changed(since=since)
    return {"ns": ns, "nIndexesWas": len(indexes), "ok": 1.0}


async def rename(
    catalog: Catalog,
    writer: Writer,
    source: tuple[str, str],
    target: tuple[str, str],
    drop_target: bool,
) -> dict[str, Any] | None:
    """Rename main's collection while branches exist, recording it: None without
    branches, or when there is no such collection, so mongod's own rename answers."""
    (db, coll), (to_db, to) = source, target
    found = await catalog.db.find_cursor(db, {"listCollections": 1, "filter": {"name": coll}})
    if not found or found[0].get("type") != "collection" or source == target:
        return None  # mongod says what is wrong with it; nothing changes
    if to_db != db:  # a record cannot follow it: kept only if no branch reads it
        readers = [k for k in catalog.children(MAIN) if catalog.archive_of(k, db, coll) is None]
        if readers or catalog.fed_by(db, coll):
            raise _refused(
                f"renameCollection of {db}.{coll} to database {to_db}",
                "they read it from its own database",
            )
    # Kept while branches exist, even if none reads it: time travel then can.
    kept = to_db == db and bool(catalog.children(MAIN))
    listed = {"listCollections": 1, "filter": {"name": to}}
    if await catalog.db.find_cursor(to_db, listed):
        if not drop_target:
            if not kept:
                return None  # mongod's own answer
            raise ArgonError(NAMESPACE_EXISTS, "target namespace exists")
        # Branches may read the target too, whether or not they read the source:
        # mongod's dropTarget would take it from them.
        if await drop(catalog, writer, to_db, to) is None and kept:
            await catalog.db.command(to_db, {"drop": to})
    if not kept:
        await set_horizon(catalog)
        return None
    main = catalog.branches[MAIN]
    locks = (writer.lock(f"{db}.{coll}"), writer.lock(f"{db}.{to}"))
    async with catalog.forks.writing(), locks[0], locks[1]:
        since = catalog.loads
        await catalog.child_overlays(main, db, coll)  # never passthrough
        await catalog.child_overlays(main, db, to)  # the new name stays off them
        until = await catalog.allocate_lsns(catalog.db, 1)
        record = Archive(db, coll, to, until, live=True, path=((to, until),))
        stored = {**record.to_doc(), "pending": True}
        await catalog.db.command(INTERNAL_DB, {"insert": "archives", "documents": [stored]})
        await catalog.db.command("admin", {"renameCollection": f"{db}.{coll}", "to": f"{db}.{to}"})
        await _settled(catalog.db, record)
        catalog.archives.setdefault((db, coll), []).append(record)
        for older in catalog.live_records(db, coll):  # renamed before: follow it
            moved = replace(older, physical=to, path=(*older.path, (to, until)))
            await _repoint(catalog, moved)
        await catalog.changed(since=since)
    return {"ok": 1.0}


async def drop_database(catalog: Catalog, writer: Writer, db: str) -> dict[str, Any] | None:
    """Drop main's database ``db`` while branches exist, collection by collection
    (each moved aside), and its views; Argon's own collections
    in it (overlays, archives) stay. None without branches: mongod's own drop."""
    listed = await catalog.db.find_cursor(db, {"listCollections": 1})
    mine = [c for c in listed if not is_internal(c["name"])]
    if not catalog.children(MAIN):
        if mine:  # dropping nothing changes nothing
            await set_horizon(catalog)
        return None
    if any(c.get("type") == "view" for c in mine):
        raise _refused(f"dropDatabase of {db}", "it holds views, which cannot be kept for them")
    for entry in mine:
        name = entry["name"]
        if await drop(catalog, writer, db, name) is None:
            await catalog.db.command(db, {"drop": name})
    return {"dropped": db, "ok": 1.0} if mine else {"ok": 1.0}


HORIZON = "time_travel_horizon"  # __argon.counters: main's earliest readable point


async def set_horizon(catalog: Catalog) -> None:
    """Time travel on main reaches no point before now: a drop or rename is about to
    change main without WAL entries and no branch keeps what it changes."""
    lsn = await catalog.allocate_lsns(catalog.db, 1)
    await catalog.db.command(
        INTERNAL_DB,
        {
            "update": "counters",
            "updates": [{"q": {"_id": HORIZON}, "u": {"$max": {"lsn": lsn}}, "upsert": True}],
        },
    )


async def horizon(db: DbClient) -> int:
    """The LSN before which time travel on main cannot read (0: none)."""
    found = await db.find(INTERNAL_DB, "counters", {"_id": HORIZON})
    return int(found[0].get("lsn", 0)) if found else 0


async def collect(catalog: Catalog, floor: int, dry: bool) -> list[str]:
    """Remove the records (and archives) of drops and renames at or below ``floor``
    (time travel reaches no point before it) that no branch reads; returns them."""
    gone: list[str] = []
    for found in list(catalog.archives.values()):
        for record in list(found):
            readers = [
                b
                for b in catalog.branches.values()
                if b.name != MAIN and catalog.archive_of(b, record.db, record.coll) == record
            ]
            if record.until > floor or readers:
                continue
            gone.append(record.key)
            if dry:
                continue
            if not record.live:
                await catalog.db.command(record.db, {"drop": record.physical})
            done = {"q": {"_id": record.key}, "limit": 1}
            await catalog.db.command(INTERNAL_DB, {"delete": "archives", "deletes": [done]})
            found.remove(record)
    if gone and not dry:
        await catalog.changed()
    return gone


async def settle(catalog: Catalog) -> None:
    """Finish or forget the drops a crash interrupted (records still ``pending``)."""
    for doc in await catalog.db.find(INTERNAL_DB, "archives", {"pending": True}):
        archive = Archive.from_doc(doc)
        if await catalog.upstream_has(archive.db, archive.physical):
            await _settled(catalog.db, archive)
        else:  # the rename never ran: main still has the collection
            gone = {"q": {"_id": doc["_id"]}, "limit": 1}
            await catalog.db.command(INTERNAL_DB, {"delete": "archives", "deletes": [gone]})


async def _repoint(catalog: Catalog, record: Archive) -> None:
    """Store a record's new state (the collection it follows moved or was dropped)."""
    await catalog.db.command(
        INTERNAL_DB,
        {"update": "archives", "updates": [{"q": {"_id": record.key}, "u": record.to_doc()}]},
    )
    found = catalog.archives[(record.db, record.coll)]
    found[:] = [record if r.key == record.key else r for r in found]


async def _settled(db: DbClient, archive: Archive) -> None:
    key = archive.key
    await db.command(
        INTERNAL_DB,
        {"update": "archives", "updates": [{"q": {"_id": key}, "u": {"$unset": {"pending": ""}}}]},
    )


def _refused(what: str, why: str) -> ArgonError:
    return ArgonError(
        COMMAND_NOT_SUPPORTED,
        f"{what} on branch 'main' is refused while branches forked before it exist: {why}. "
        "Delete or merge those branches first.",
    )
