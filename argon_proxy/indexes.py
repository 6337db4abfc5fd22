"""Indexes per branch: createIndexes, dropIndexes and listIndexes as branch-local changes.

Theory of operation: a branch's index list for a collection is either its
own explicit list, stored with its overlay entry, or inherited from its
parent (main's is the physical list of the base collection). Changing the
indexes of a branch stores its new explicit list; as with documents, the
old list is first frozen into every child that inherits it, so a child's
indexes never change through its parent. Indexes a branch adds are also
built on its overlay, so that layer plans like the base does; mongod
validates every specification there first. A unique index is built there
without its ``unique`` flag (tombstones and shadowed versions would collide):
``unique.py`` enforces it across the view on every write, and creating one
first builds it on a scratch copy of the view, so mongod judges the data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import bson

from .catalog import Branch, Catalog, Overlay
from .errors import INDEX_NOT_FOUND, ArgonError
from .naming import INTERNAL_DB, MAIN
from .stream_marks import mark
from .view import build_view, scratch_copy

if TYPE_CHECKING:
    from .dbclient import DbClient
    from .reads import Reader
    from .txn import Runner
    from .writes import Writer

INVALID_OPTIONS = 72
INDEX_OPTIONS_CONFLICT = 85
INDEX_KEY_SPECS_CONFLICT = 86
_ID_INDEX = {"v": 2, "key": {"_id": 1}, "name": "_id_"}


def _options(spec: Mapping[str, Any]) -> bytes:
    """What makes two indexes on one key different (flags that are off count as absent)."""
    kept = {
        k: v
        for k, v in sorted(spec.items())
        if k not in ("v", "ns", "name", "key", "background") and v is not False
    }
    return bson.encode(kept)


def _clean(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in ("ns",)}


async def list_specs(catalog: Catalog, branch: Branch, db: str, coll: str) -> list[dict[str, Any]]:
    """The index specifications of ``db.coll`` as ``branch`` sees them."""
    for b in catalog.layers(branch):
        if b.name == MAIN:
            break
        ov = catalog.overlay(b, db, coll)
        if ov is None:
            continue
        if ov.indexes is not None:
            return [dict(s) for s in ov.indexes]
        if ov.cut:
            return [dict(_ID_INDEX)]
    base = catalog.base_name(branch, db, coll)
    try:
        return [_clean(s) for s in await catalog.db.find_cursor(db, {"listIndexes": base})]
    except ArgonError as exc:
        if exc.code == 26:
            return [dict(_ID_INDEX)]
        raise


def comparable(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in ("v", "ns", "background")}


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return bson.encode(a.get("key", {})) == bson.encode(b.get("key", {})) and _options(
        a
    ) == _options(b)


_NOT_PASSED = ("lsid", "txnNumber", "$clusterTime", "$db", "$readPreference", "autocommit")


class Indexes:
    """createIndexes, dropIndexes and listIndexes on branches, and index changes on
    main that its children must not see, with the services they use."""

    def __init__(self, db: DbClient, catalog: Catalog, reader: Reader, writer: Writer) -> None:
        self.db = db
        self.catalog = catalog
        self.reader = reader
        self.writer = writer

    async def log_changes(
        self,
        branch: Branch,
        ns: str,
        before: list[dict[str, Any]],
        after: list[dict[str, Any]],
    ) -> None:
        """Record in ``__argon.index_log`` each index the change created or dropped, so a
        merge can carry index changes like document changes."""
        old = {s["name"]: s for s in before}
        new = {s["name"]: s for s in after}
        events: list[tuple[str, dict[str, Any] | None]] = [
            (n, comparable(new[n])) for n in new if n not in old or not _same(old[n], new[n])
        ]
        events += [(n, None) for n in old if n not in new]
        if not events:
            return

        async def unit(runner: Runner) -> None:
            # In one transaction with their LSNs, so LSN order stays commit order.
            first = await self.catalog.allocate_lsns(runner, len(events))
            docs = [
                {
                    "_id": bson.Int64(first + i),
                    "branch": branch.name,
                    "branch_id": branch.id,
                    "ns": ns,
                    "name": n,
                    "spec": spec,
                }
                for i, (n, spec) in enumerate(events)
            ]
            await runner.run(INTERNAL_DB, {"insert": "index_log", "documents": docs})

        await self.writer.in_transaction(unit, restart_on_stale=True)

    async def store(self, ov: Overlay, specs: list[dict[str, Any]] | None) -> None:
        """Record the branch's own index list (None: inherit again)."""
        since = self.catalog.loads
        await self.db.command(
            INTERNAL_DB,
            {
                "update": "overlays",
                "updates": [{"q": {"_id": ov.key}, "u": {"$set": {"indexes": specs}}}],
            },
        )
        await self.catalog.changed(since=since)
        self.catalog.note_overlay(ov, indexes=specs)

    async def freeze_children(self, branch: Branch, db: str, coll: str) -> None:
        """Give every child that inherits this collection's indexes its own copy of them."""
        if not self.catalog.children(branch.name):
            return
        current = await list_specs(self.catalog, branch, db, coll)
        for ov in await self.catalog.child_overlays(branch, db, coll):
            if ov.indexes is None and not ov.cut:
                await self.store(ov, current)

    async def create_indexes(
        self, branch: Branch, db: str, cmd: dict[str, Any], *, quiet: bool = False
    ) -> dict[str, Any]:
        """``createIndexes`` on a branch (``quiet``: as part of another change, with no
        event of its own for the branch's change streams)."""
        coll = cmd["createIndexes"]
        wanted = [dict(s) for s in cmd.get("indexes") or []]
        await self.freeze_children(branch, db, coll)
        ov = await self.catalog.ensure_overlay(branch, db, coll)
        created = not ov.present and not await self._exists(branch, db, coll)
        if created:  # createIndexes creates a missing collection, as on mongod
            await self.catalog.set_flags(ov, cut=True, present=True)
        current = await list_specs(self.catalog, branch, db, coll)
        before = len(current)
        by_name = {s["name"]: s for s in current}
        fresh = []
        for spec in wanted:
            same = by_name.get(spec.get("name", ""))
            if same is not None:
                if bson.encode(same["key"]) != bson.encode(spec.get("key", {})) or _options(
                    same
                ) != _options(spec):
                    raise ArgonError(
                        INDEX_KEY_SPECS_CONFLICT,
                        "An existing index has the same name as the requested index. When index "
                        "names are not specified, they are auto generated and can cause "
                        f"conflicts. Requested index: {spec}, existing index: {same}",
                    )
                continue
            if any(bson.encode(s["key"]) == bson.encode(spec.get("key", {})) for s in current):
                raise ArgonError(
                    INDEX_OPTIONS_CONFLICT,
                    f"Index already exists with a different name: {spec.get('name')}",
                )
            fresh.append(spec)
        if fresh:
            async with self.writer.lock(f"{db}.{coll}"):  # no write slips in between
                for spec in fresh:
                    if spec.get("unique"):
                        await self._check_unique(branch, db, coll, spec)
                plain = [{k: v for k, v in s.items() if k != "unique"} for s in fresh]
                await self.db.command(db, {"createIndexes": ov.name, "indexes": plain})
                await self.store(ov, current + [{"v": 2, **s} for s in fresh])
            await self.log_changes(branch, f"{db}.{coll}", current, ov.indexes or [])
            if not quiet:
                described = {"indexes": [{"v": 2, **s} for s in fresh]}
                await mark(self.db, branch, "createIndexes", db, coll, described)
        return {
            "numIndexesBefore": before,
            "numIndexesAfter": before + len(fresh),
            "createdCollectionAutomatically": created,
            "ok": 1.0,
        }

    async def _check_unique(self, branch: Branch, db: str, coll: str, spec: dict[str, Any]) -> None:
        """Build ``spec`` on a scratch copy of the view, so mongod itself says whether the
        branch's documents are unique under it (and rejects the spec if it is invalid)."""
        view = await build_view(self.catalog, branch, db, coll)
        async with scratch_copy(self.db, view) as scratch:
            if not await self.catalog.upstream_has(db, scratch):
                await self.db.command(db, {"create": scratch})
            try:
                await self.db.command(db, {"createIndexes": scratch, "indexes": [spec]})
            except ArgonError as exc:
                shown = exc.errmsg.replace(f"{db}.{scratch}", f"{db}.{coll}")
                raise ArgonError(exc.code, shown) from None

    async def drop_indexes(self, branch: Branch, db: str, cmd: dict[str, Any]) -> dict[str, Any]:
        coll = cmd["dropIndexes"]
        target = cmd.get("index")
        await self._must_exist(branch, db, coll)
        current = await list_specs(self.catalog, branch, db, coll)
        if target == "*":
            gone = [s for s in current if s["name"] != "_id_"]
        else:
            names = target if isinstance(target, list) else [target]
            gone = []
            for name in names:
                match = [
                    s
                    for s in current
                    if s["name"] == name
                    or (isinstance(name, dict) and bson.encode(s["key"]) == bson.encode(name))
                ]
                if not match:
                    raise ArgonError(INDEX_NOT_FOUND, f"index not found with name [{name}]")
                if match[0]["name"] == "_id_":
                    raise ArgonError(INVALID_OPTIONS, "cannot drop _id index")
                gone.extend(match)
        await self.freeze_children(branch, db, coll)
        ov = await self.catalog.ensure_overlay(branch, db, coll)
        names_gone = {s["name"] for s in gone}
        for name in names_gone:
            with contextlib.suppress(ArgonError):  # inherited ones were never built on the overlay
                await self.db.command(db, {"dropIndexes": ov.name, "index": name})
        await self.store(ov, [s for s in current if s["name"] not in names_gone])
        await self.log_changes(branch, f"{db}.{coll}", current, ov.indexes or [])
        await mark(self.db, branch, "dropIndexes", db, coll, {"indexes": gone})
        return {"nIndexesWas": len(current), "ok": 1.0}

    async def change_on_main(self, db: str, cmd: dict[str, Any]) -> dict[str, Any]:
        """createIndexes / dropIndexes on main: run upstream, then log what changed."""
        name = next(iter(cmd))
        coll = cmd[name]
        await self.freeze_children(self.catalog.branches[MAIN], db, coll)
        main = self.catalog.branches[MAIN]
        before = await list_specs(self.catalog, main, db, coll)
        reply = await self.db.command(db, {k: v for k, v in cmd.items() if k not in _NOT_PASSED})
        after = await list_specs(self.catalog, main, db, coll)
        await self.log_changes(main, f"{db}.{coll}", before, after)
        return {k: v for k, v in reply.items() if k not in ("$clusterTime", "operationTime")}

    async def _exists(self, branch: Branch, db: str, coll: str) -> bool:
        listed = await self.reader.list_collections(branch, db, {"filter": {"name": coll}})
        return bool(listed["cursor"]["firstBatch"])

    async def _must_exist(self, branch: Branch, db: str, coll: str) -> None:
        listed = await self.reader.list_collections(branch, db, {"filter": {"name": coll}})
        if not listed["cursor"]["firstBatch"]:
            raise ArgonError(26, f"ns does not exist: {db}.{coll}")

    async def list_indexes(self, branch: Branch, db: str, cmd: dict[str, Any]) -> dict[str, Any]:
        coll = cmd["listIndexes"]
        await self._must_exist(branch, db, coll)
        specs = await list_specs(self.catalog, branch, db, coll)
        return {
            "cursor": {"id": bson.Int64(0), "ns": f"{db}.{coll}", "firstBatch": specs},
            "ok": 1.0,
        }
