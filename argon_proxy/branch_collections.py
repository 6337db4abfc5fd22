"""Collections on branches: create, collMod, renameCollection, drop, dropDatabase
and validate, as a branch's own catalog changes.

Theory of operation: a branch's collection is its overlay layered over what it
inherits (``view.py``). Creating one makes the overlay the whole collection
(``cut``), created with the client's options so mongod applies and lists
them; dropping one drops the overlay collection and cuts the lower layers.
Every change first registers the name in each child's overlays, so children
keep what they had (``Catalog.child_overlays``), and each leaves a mark for the
branch's change streams (``stream_marks.py``). What changes a collection a
child branch reads is refused while the branch has children; options an
overlay cannot carry (capped, time series, a default collation) are refused
with the reason.
"""

from __future__ import annotations

from typing import Any

from . import aggregate_out
from .branch_views import ViewDef
from .catalog import Branch, Catalog, read_only
from .dbclient import CommandError, DbClient
from .errors import (
    BAD_VALUE,
    ILLEGAL_OPERATION,
    INVALID_OPTIONS,
    NAMESPACE_EXISTS,
    NAMESPACE_NOT_FOUND,
    ArgonError,
)
from .indexes import Indexes, list_specs
from .naming import MAIN, namespace
from .reads import GENERIC_FIELDS, Reader, generic, unsupported
from .stream_marks import MOVED, mark
from .wal import ClientIdentity
from .write_context import WriteContext
from .writes import Writer

# Options of create and collMod a branch's collection takes: they leave Argon free to
# write tombstones and frozen copies into the overlay (bypassing its validator). Not a
# default collation: the branch's reads run on the base collection too, which has its own.
BRANCH_CREATE_OPTIONS = frozenset(
    {
        "validator",
        "validationLevel",
        "validationAction",
        "changeStreamPreAndPostImages",
        "storageEngine",
        "indexOptionDefaults",
        "idIndex",
    }
)
BRANCH_COLL_MOD_OPTIONS = frozenset(
    {"validator", "validationLevel", "validationAction", "changeStreamPreAndPostImages"}
)


class BranchCollections:
    """The collection-level commands of branches, with the services they use."""

    def __init__(
        self, db: DbClient, catalog: Catalog, reader: Reader, writer: Writer, indexes: Indexes
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.reader = reader
        self.writer = writer
        self.indexes = indexes

    async def validate(
        self, db: str, branch: Branch, coll: str, cmd: dict[str, Any]
    ) -> dict[str, Any]:
        """Validate every collection that holds the branch's view of ``db.coll`` (main's
        and the overlays), with the client's options; valid if all of them are."""
        listed = await self.reader.list_collections(branch, db, {"filter": {"name": coll}})
        if not listed["cursor"]["firstBatch"]:
            raise ArgonError(26, f"Collection '{db}.{coll}' does not exist to validate.")
        options = {k: v for k, v in cmd.items() if k not in ("validate", "$db", *GENERIC_FIELDS)}
        out: dict[str, Any] = {"ns": f"{db}.{coll}", "valid": True, "errors": [], "warnings": []}
        for layer in (await self.reader.view(branch, db, coll)).layers:
            try:
                reply = await self.db.command(db, {"validate": layer.coll, **options})
            except ArgonError as exc:
                if exc.code == 26:  # an overlay nothing was written to yet
                    continue
                raise
            out["valid"] = out["valid"] and bool(reply.get("valid"))
            out["errors"] += list(reply.get("errors") or [])
            out["warnings"] += list(reply.get("warnings") or [])
        return {**out, "ok": 1.0}

    async def create_on(self, branch: Branch, db: str, coll: str) -> None:
        """Create ``db.coll`` on ``branch`` (main included), keeping children isolated."""
        if branch.name != MAIN:
            await self.create(db, branch, {"create": coll})
            return
        await self.catalog.child_overlays(branch, db, coll)
        await self.db.command(db, {"create": coll})

    async def create(
        self, db: str, branch: Branch, cmd: dict[str, Any], *, quiet: bool = False
    ) -> dict[str, Any]:
        """Create ``db.coll`` on ``branch``: its overlay becomes the whole collection,
        created with the client's options, so mongod applies them (validation,
        collation, pre- and post-images) and lists them. ``quiet``: no ``create``
        event for the branch's change streams (a rename's target)."""
        if branch.read_only:
            raise read_only(branch, "create")
        coll = cmd["create"]
        if "viewOn" in cmd:
            return await self._create_view(db, branch, cmd)
        options = {k: v for k, v in cmd.items() if k not in ("create", "$db", *generic(cmd))}
        refused = sorted(set(options) - BRANCH_CREATE_OPTIONS)
        if refused:
            raise unsupported(
                f"create with {', '.join(refused)}",
                branch.name,
                "a branch's collection is an overlay that Argon writes tombstones and "
                "copies into and reads together with its base, which capped, time series, "
                "clustered collections, views and a default collation do not allow",
            )
        listed = await self.reader.list_collections(branch, db, {"filter": {"name": coll}})
        if listed["cursor"]["firstBatch"]:
            raise ArgonError(48, f"Collection {db}.{coll} already exists.")
        await self.catalog.child_overlays(branch, db, coll)  # keep it off the children
        ov = await self.catalog.ensure_overlay(branch, db, coll)
        await self.catalog.set_flags(ov, cut=ov.cut, present=True)
        exists = await self.catalog.upstream_has(db, ov.name)
        if exists and options:  # it holds nothing the branch shows: start it anew
            await self.db.command(db, {"drop": ov.name})
        if options or not exists:
            await self.db.command(db, {"create": ov.name, **options})
        if not quiet:
            described = {"idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"}, **options}
            await mark(self.db, branch, "create", db, coll, described)
        return {"ok": 1.0}

    async def _create_view(self, db: str, branch: Branch, cmd: dict[str, Any]) -> dict[str, Any]:
        """A view created on ``branch``: its definition kept in the branch's catalog
        (``branch_views.py``), read over the branch's view of its source."""
        name, view_on, pipeline = cmd["create"], cmd.get("viewOn"), cmd.get("pipeline", [])
        extra = set(cmd) - {"create", "viewOn", "pipeline", "collation", *generic(cmd)}
        if not isinstance(view_on, str) or not view_on or not isinstance(pipeline, list):
            raise ArgonError(BAD_VALUE, "create: 'viewOn' must be a name and 'pipeline' a list")
        if extra:
            raise ArgonError(INVALID_OPTIONS, f"create of a view does not take {sorted(extra)}")
        if await self._listed(branch, db, name) is not None:
            raise ArgonError(NAMESPACE_EXISTS, f"Collection {db}.{name} already exists.")
        definition = ViewDef(view_on, tuple(pipeline), cmd.get("collation")).to_options()
        await self.catalog.child_overlays(branch, db, name)  # keep it off the children
        ov = await self.catalog.ensure_overlay(branch, db, name)
        await self.catalog.set_view(ov, definition)
        await self.catalog.set_flags(ov, cut=True, present=True)
        await mark(self.db, branch, "create", db, name, definition)
        return {"ok": 1.0}

    async def coll_mod(self, db: str, branch: Branch, cmd: dict[str, Any]) -> dict[str, Any]:
        """``collMod`` of a collection the branch alone holds (created on it, or
        dropped and created again): its overlay is the whole collection."""
        if branch.read_only:
            raise read_only(branch, "collMod")
        coll = cmd["collMod"]
        options = {k: v for k, v in cmd.items() if k not in ("collMod", "$db", *generic(cmd))}
        refused = sorted(set(options) - BRANCH_COLL_MOD_OPTIONS)
        own = self.catalog.overlay(branch, db, coll)
        alone = own is not None and own.present and await self._holds_alone(branch, db, coll)
        if refused or not alone or self.catalog.children(branch.name):
            why = (
                f"Argon does not apply {', '.join(refused)} to a branch's collection"
                if refused
                else "it has child branches"
                if self.catalog.children(branch.name)
                else "the collection also reads its parent's data, whose options it shares"
            )
            raise unsupported("collMod", branch.name, why)
        assert own is not None
        reply = await self.db.command(db, {**cmd, "collMod": own.name})
        await mark(self.db, branch, "modify", db, coll, options)
        return {k: v for k, v in reply.items() if k not in ("$clusterTime", "operationTime")}

    async def rename(
        self, branch: Branch, cmd: dict[str, Any], client: ClientIdentity
    ) -> dict[str, Any]:
        """``renameCollection`` on a branch: the target created with the source's
        options and indexes, the source's documents put into it (one transaction
        and WAL entry each, as ``$out`` does), then the source dropped."""
        if branch.read_only:
            raise read_only(branch, "renameCollection")
        if self.catalog.children(branch.name):
            raise unsupported("renameCollection", branch.name, "it has child branches")
        (src_db, src), (dst_db, dst) = (namespace(cmd.get(k)) for k in ("renameCollection", "to"))
        if (src_db, src) == (dst_db, dst):
            raise ArgonError(ILLEGAL_OPERATION, "Can't rename a collection to itself")
        source = await self._listed(branch, src_db, src)
        if source is None:
            missing = f"Source collection {src_db}.{src} does not exist"
            raise ArgonError(NAMESPACE_NOT_FOUND, missing)
        options = dict(source.get("options") or {})
        if set(options) - BRANCH_CREATE_OPTIONS or source.get("type") != "collection":
            raise unsupported(
                f"renameCollection of {src_db}.{src}",
                branch.name,
                "its options (capped, a view, ...) cannot be created on a branch",
            )
        everything = await self._everything(branch, src_db, src)
        docs = [d async for d in self.db.cursor(src_db, everything)]
        if len(docs) > aggregate_out.MAX_DOCUMENTS:
            raise unsupported(
                f"renameCollection of {len(docs)} documents",
                branch.name,
                f"Argon moves them in one transaction, up to {aggregate_out.MAX_DOCUMENTS}",
            )
        described: dict[str, Any] = {"to": {"db": dst_db, "coll": dst}}
        target = await self._listed(branch, dst_db, dst)
        if target is not None:
            if not cmd.get("dropTarget"):
                raise ArgonError(NAMESPACE_EXISTS, "target namespace exists")
            await self.drop(dst_db, branch, {"drop": dst})
            if target.get("info", {}).get("uuid") is not None:
                described["dropTarget"] = target["info"]["uuid"]
        specs = await list_specs(self.catalog, branch, src_db, src)
        # The steps are the rename's, not changes of their own: its streams see it alone.
        await self.create(dst_db, branch, {"create": dst, **options}, quiet=True)
        made = [{k: v for k, v in s.items() if k not in ("v", "ns")} for s in specs]
        made = [s for s in made if s.get("name") != "_id_"]
        if made:
            create = {"createIndexes": dst, "indexes": made}
            await self.indexes.create_indexes(branch, dst_db, create, quiet=True)
        ctx = WriteContext(branch, dst_db, dst, client, extra={MOVED: f"{src_db}.{src}"})
        await self.writer.put_many(ctx, [(d["_id"], d) for d in docs])
        await self.drop(src_db, branch, {"drop": src}, moved=True)
        uuid = source.get("info", {}).get("uuid")
        await mark(self.db, branch, "rename", src_db, src, described, uuid)
        return {"ok": 1.0}

    async def _listed(self, branch: Branch, db: str, coll: str) -> dict[str, Any] | None:
        """The branch's listCollections entry of ``db.coll``, if it has the collection."""
        listed = await self.reader.list_collections(branch, db, {"filter": {"name": coll}})
        found: list[dict[str, Any]] = listed["cursor"]["firstBatch"]
        return found[0] if found else None

    async def _everything(self, branch: Branch, db: str, coll: str) -> dict[str, Any]:
        """An aggregate reading every document of the branch's ``db.coll``."""
        read: dict[str, Any] = {"aggregate": coll, "pipeline": [], "cursor": {}}
        return await self.reader.aggregate(branch, db, read) or read

    async def _holds_alone(self, branch: Branch, db: str, coll: str) -> bool:
        """Whether no layer below the branch's own overlay holds ``db.coll``."""
        for b in self.catalog.layers(branch):
            ov = self.catalog.overlay(b, db, coll)
            if b.name == branch.name:
                if ov is not None and ov.cut:
                    return True
                continue
            if b.name == MAIN:
                return not await self.catalog.base_exists(branch, db, coll)
            if ov is not None and ov.present:
                return False
            if ov is not None and ov.cut:
                return True
        return True

    async def drop(
        self, db: str, branch: Branch, cmd: dict[str, Any], *, moved: bool = False
    ) -> dict[str, Any]:
        """Drop ``db.coll`` on ``branch`` (``moved``: by a rename, whose own event the
        branch's change streams report instead of a drop)."""
        if branch.read_only:
            raise read_only(branch, "drop")
        coll = cmd["drop"]
        if self.catalog.children(branch.name):
            raise unsupported("drop", branch.name, "it has child branches")
        listed = await self.reader.list_collections(branch, db, {"filter": {"name": coll}})
        if not listed["cursor"]["firstBatch"]:
            raise ArgonError(26, "ns not found")
        # Under the writers' lock: no write transaction of this proxy is open on the
        # overlay while it goes (the test upstream's drop would wait for it while
        # holding what it needs to end, see ``Engine._moved_on_main``), and none
        # decides on its id cache meanwhile.
        async with self.writer.lock(f"{db}.{coll}"):
            ov = await self.catalog.ensure_overlay(branch, db, coll)
            # The overlay collection goes whole, its indexes and options (a validator)
            # with it: a collection created again under the name starts without them,
            # as on mongod. Whatever it held was the branch's alone, now dropped.
            try:
                await self.db.command(db, {"drop": ov.name})
            except CommandError as exc:
                if exc.code != NAMESPACE_NOT_FOUND:  # no overlay collection yet
                    raise
            for bumped in await self.catalog.bump(self.db, [ov]):
                bumped.version += 1
            ov.ids, ov.tombstones = {}, set()
            if ov.view is not None:
                await self.catalog.set_view(ov, None)
            await self.catalog.set_flags(ov, cut=True, present=False, dropped=True, moved=moved)
            await self.indexes.store(ov, None)
        return {"ns": f"{db}.{coll}", "nIndexesWas": 1, "ok": 1.0}

    async def drop_database(self, db: str, branch: Branch) -> dict[str, Any]:
        """Drop every collection the branch shows in ``db``, each as ``drop`` does.

        Like mongod, dropping a database that has no collections succeeds
        without ``dropped``; main and the branch's parents keep theirs."""
        if branch.read_only:
            raise read_only(branch, "dropDatabase")
        if self.catalog.children(branch.name):
            raise unsupported("dropDatabase", branch.name, "it has child branches")
        listed = await self.reader.list_collections(branch, db, {"nameOnly": True})
        names = [c["name"] for c in listed["cursor"]["firstBatch"]]
        for coll in names:
            if not coll.startswith("system."):
                await self.drop(db, branch, {"drop": coll})
        if names:
            await mark(self.db, branch, "dropDatabase", db)
        return {"dropped": db, "ok": 1.0} if names else {"ok": 1.0}
