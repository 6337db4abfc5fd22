"""The command router: which branch an operation is on, and who answers it.

Theory of operation: ``Engine.route`` looks at a command that cannot take the
pass-through fast path (see ``protocol.py``), resolves its branch (``db@branch``
in ``$db``, else ``argon:<branch>`` in the connection's appName, else the
proxy's default branch) and returns either a reply document Argon made, or a
command to forward upstream in place of the client's (``Forward``), whose
reply then travels back as raw bytes. Writes on every branch, main included,
go through ``Writer`` and the WAL. A command Argon cannot yet answer exactly
on a branch is refused with a MongoDB-style error naming it and the branch.
Before anything runs, every namespace the command names is checked
(``namespaces.check``): Argon's own data is invisible from every branch, and
commands that would write documents without WAL entries are refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import bson
from bson import ObjectId

from . import (
    admin,
    aggregate_out,
    archives,
    bulk_write,
    indexes,
    metrics,
    namespaces,
    projects,
    refs,
    timetravel,
)
from .branch_streams import BranchStreams, is_change_stream
from .branch_views import ViewDef, not_on_a_view
from .catalog import READ_ONLY_BRANCH, Branch, BranchError, Catalog, StaleCatalog
from .cursors import HeldCursors
from .dbclient import CommandError, DbClient, hold
from .errors import (
    BAD_VALUE,
    COMMAND_NOT_SUPPORTED,
    DUPLICATE_FIELD,
    ILLEGAL_OPERATION,
    INVALID_NAMESPACE,
    INVALID_OPTIONS,
    NAMESPACE_EXISTS,
    NAMESPACE_NOT_FOUND,
    NOT_IN_TRANSACTION,
    WRITE_CONFLICT,
    ArgonError,
    UpstreamIOError,
)
from .incarnation import Incarnation
from .merge_find import find_merged
from .naming import (
    INTERNAL_DB,
    MAIN,
    branch_from_app_name,
    is_internal,
    parse_db,
    selects_branch,
)
from .pending import Pending
from .reads import GENERIC_FIELDS, Reader, generic, snapshot_concern, unsupported
from .stream_marks import MOVED, mark
from .txn import JoinedTransaction, Runner, is_transient
from .upstream import UpstreamPool
from .wal import ClientIdentity
from .writes import (
    NeedsStatements,
    StatementError,
    WriteContext,
    Writer,
    chunks,
    write_options,
)

WRITE_COMMANDS = frozenset({"insert", "update", "delete", "findAndModify"})
# Commands that never name a collection, and killCursors, whose collection only
# names the cursors' namespace: the same on every branch.
NAMESPACE_FREE = namespaces.SERVER_COMMANDS | {"killCursors"}
# On main these change collections, not documents, without the write path: refused
# while other branches exist, because children could not be kept isolated from them.
MAIN_GUARDED = frozenset({"drop", "dropDatabase", "renameCollection"})
# These would write documents without WAL entries (applyOps, mapReduce into a
# collection, capped copies and truncations): refused on every branch, main
# included, until they go through the write path (as client-level bulkWrite does).
BYPASSES_WAL = frozenset(
    {
        "applyOps",
        "convertToCapped",
        "cloneCollectionAsCapped",
        "emptycapped",
        "mapReduce",
    }
)
# Commands that change Argon's catalog on a branch (or on main's children). A client
# transaction holds the LSN counter such a change writes, so they run before it.
CATALOG_CHANGES = (
    frozenset({"create", "createIndexes", "drop", "dropIndexes", "dropDatabase", "collMod"})
    | MAIN_GUARDED
)
# Catalog changes whose reply Argon may build itself: they carry the client's
# writeConcern to the upstream through ``Engine._concern_error``.
ACKNOWLEDGED = frozenset(
    {"create", "createIndexes", "dropIndexes", "drop", "dropDatabase", "collMod"}
    | {"renameCollection"}
)
# Times a drop or rename on main is decided again when another proxy changes the
# catalog meanwhile (each time after reloading it), before answering WriteConflict.
_STALE_RETRIES = 5

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
# Commands the engine must see even on main (everything else on main is forwarded).
ON_MAIN = (
    WRITE_COMMANDS
    | MAIN_GUARDED
    | BYPASSES_WAL
    | {"bulkWrite"}
    | {"createIndexes", "dropIndexes", "create"}  # children must not see these appear
    | {"argon", "listCollections", "listDatabases", "aggregate"}
    | {"collMod"}  # of a view: children must keep the definition they have
)


@dataclass(frozen=True, slots=True)
class Forward:
    """Forward this command upstream instead of the client's."""

    command: dict[str, Any]


@dataclass
class Request:
    """A command and what the connection knows about its sender."""

    command: dict[str, Any]
    app_name: str | None
    connection_id: int
    joined: Runner | None = None  # the client's own transaction, if it is in one
    branch: str = MAIN  # set by the engine once resolved, for metrics


class Engine:
    """Routes commands to the branch engine."""

    def __init__(self, pool: UpstreamPool, snapshots: timetravel.Snapshots | None = None) -> None:
        self.pool = pool
        self.db = DbClient(pool)
        self.catalog = Catalog(self.db)
        self.pending = Pending()  # what open client transactions wrote on branches
        self.reader = Reader(self.db, self.catalog, self.pending)
        self.cursors = HeldCursors()  # the rest of merged branch reads, for getMore
        self.streams = BranchStreams(self.db, self.reader)  # change streams on branches
        self.incarnation = Incarnation(self.db)
        self.writer = Writer(pool, self.catalog, self.incarnation.sessions, self.pending)
        self.snapshots = snapshots or timetravel.Snapshots()

    async def start(self) -> None:
        """Load the catalog, record this proxy, end what killed ones left open."""
        await self.catalog.load()
        await self.incarnation.register()

    def needs_engine(
        self, name: str, db: str, app_name: str | None, collection: str | None = None
    ) -> bool:
        """False when the command may pass straight through (main, nothing to log).

        ``collection`` is the one collection a ``FIRST_VALUE_ONLY`` command names
        (its first value if a string; ``getMore``'s ``collection``): only these
        commands, and only when that name cannot be Argon's, skip the engine.
        """
        if "@" in db or namespaces.mentions_internal(db) or selects_branch(app_name):
            return True
        if self.catalog.default_branch != MAIN:
            return True
        if name in ON_MAIN or name not in namespaces.FIRST_VALUE_ONLY:
            return True
        if name in ("getMore", "killCursors") and (self.cursors or self.streams):
            return True  # it may continue a branch read or stream this proxy serves
        return collection is not None and namespaces.mentions_internal(collection)

    async def resolve(self, db_field: str, app_name: str | None) -> tuple[str, Branch]:
        address = parse_db(db_field)
        name = address.branch or branch_from_app_name(app_name) or self.catalog.default_branch
        branch = self.catalog.visible(name)
        if branch is None or address.at:  # a tag, a point in time, or not loaded yet
            branch = await refs.resolve(self, f"{name}@{address.at}" if address.at else name)
        return address.db, branch

    async def snapshot(self, branch: Branch, point: str) -> Branch:
        """The read-only snapshot of ``branch`` at ``point``, built once and reused."""
        return await self.snapshots.get(self, branch, point)

    async def route(self, req: Request) -> dict[str, Any] | Forward:
        """Answer ``req`` or say what to forward, on one upstream connection.

        The connection is taken first, before any lock, and everything Argon
        runs for the request reuses it (a client transaction's pinned one,
        if the client is in one): no request ever waits for a second one.
        """
        joined = req.joined if isinstance(req.joined, JoinedTransaction) else None
        async with hold(self.pool, joined.conn if joined is not None else None):
            if joined is None:
                if next(iter(req.command)) in ACKNOWLEDGED:
                    return await self._acknowledged(req)
                return await self._route(req)
            try:
                result = await self._route(req)
            except (ArgonError, CommandError):
                await joined.abort()  # a failed statement ends the transaction on mongod
                raise
            if isinstance(result, dict) and result.get("writeErrors"):
                await joined.abort()
            return result

    async def _acknowledged(self, req: Request) -> dict[str, Any] | Forward:
        """``_route`` of a catalog change, whose reply (or refusal) Argon may build
        itself: then it carries what the client's write concern met, as mongod's
        does, failures included."""
        if isinstance(req.command.get("writeConcern"), dict) and len(self.catalog.branches) > 1:
            # A concern the upstream cannot parse fails the command before any
            # change, as on mongod (what it cannot satisfy is reported after).
            # Without branches every such change is mongod's own, which checks it.
            await self._concern_error(req.command)
        try:
            result = await self._route(req)
        except ArgonError as exc:
            # The refusal stands whatever the concern meets (an upstream that is away
            # answers neither).
            with contextlib.suppress(ArgonError, CommandError, UpstreamIOError):
                concern_error = await self._concern_error(req.command)
                if concern_error is not None:
                    exc.details["writeConcernError"] = concern_error
            raise
        if isinstance(result, dict) and result.get("ok"):
            concern_error = await self._concern_error(req.command)
            if concern_error is not None:
                return {**result, "writeConcernError": concern_error}
        return result

    async def _concern_error(self, cmd: dict[str, Any]) -> dict[str, Any] | None:
        """For a catalog change Argon made (or refused) itself, on a branch or on main
        while branches read the collection: the client's ``writeConcern`` applied
        as mongod applies it, after Argon's last write; what the upstream could
        not satisfy (its ``writeConcernError``), if anything."""
        concern = cmd.get("writeConcern")
        if not isinstance(concern, dict):
            return None
        # A small write of Argon's own carries the concern: mongod applies it to
        # everything this connection wrote before, Argon's change included.
        ack = {"q": {"_id": "acknowledged"}, "u": {"$inc": {"n": 1}}, "upsert": True}
        # Its own collection: never contended with the LSN counter client
        # transactions hold.
        probe = {"update": "acknowledgements", "updates": [ack], "writeConcern": concern}
        answer = await self.db.reply(INTERNAL_DB, probe)
        error = answer.get("writeConcernError")
        return error if isinstance(error, dict) else None

    async def _route(self, req: Request) -> dict[str, Any] | Forward:
        cmd = req.command
        name = next(iter(cmd))
        if name in ("getMore", "killCursors") and (self.cursors or self.streams):
            held = await self._own_cursor_reply(name, cmd)
            if held is not None:
                return held
        if name == "argon":
            await self.catalog.refresh()
            return await admin.handle(self, cmd)
        if name == "renameCollection":
            cmd = _addressed_rename(cmd)
        db_field = cmd.get("$db")
        if not isinstance(db_field, str):  # e.g. a document sequence named $db
            raise ArgonError(73, f"{name} needs a database name (a string) in $db")
        db, branch = await self.resolve(db_field, req.app_name)
        if branch.name != MAIN:  # another proxy may have changed what the caches hold
            branch = await self.catalog.sync(branch, db)
        req.branch = branch.name
        namespaces.check(cmd, db, branch.name)  # __argon, overlays, the oplog: never
        if name in BYPASSES_WAL:
            _refuse_bypass(name, branch.name, cmd)
        if req.joined is not None and name in CATALOG_CHANGES:
            self._refuse_in_transaction(name, branch)
        if name not in NAMESPACE_FREE:
            projects.check(self, branch, db)
        if name == "aggregate" and branch.name != MAIN and is_change_stream(cmd):
            return await self.streams.open(branch, db, cmd, req.joined is not None)
        if name == "aggregate" and aggregate_out.ends_in_write(cmd):
            if req.joined is not None:
                raise unsupported("aggregate with $out or $merge in a transaction", branch.name)
            client = ClientIdentity(req.app_name, None, req.connection_id)
            return await aggregate_out.run(self, branch, db, cmd, client)
        if name == "renameCollection" and branch.name != MAIN:
            client = ClientIdentity(req.app_name, None, req.connection_id)
            return await self._rename(branch, cmd, client)
        if name in WRITE_COMMANDS:
            return await self._write(name, db, branch, req)
        if name == "bulkWrite":
            return await self._bulk_write(branch, req)
        if name == "listDatabases":
            return await self._list_databases(branch, cmd)
        if name == "listCollections":
            return await self.reader.list_collections(branch, db, cmd)
        if branch.name == MAIN:
            if name in ("drop", "dropDatabase", "renameCollection"):
                moved = await self._move_on_main(name, db, cmd)
                if moved is not None:
                    return moved
            if name == "collMod" and isinstance(cmd.get(name), str):
                await self._coll_mod_on_main(db, cmd[name])
            if name == "aggregate":
                await self.reader.aggregate(branch, db, cmd)  # refuses $out/$merge
                cmd = namespaces.without_internal_changes(cmd)
            # In a client transaction main has no children here (else refused above):
            # the upstream alone judges the index change.
            indexed = name in ("createIndexes", "dropIndexes") and isinstance(cmd.get(name), str)
            if indexed and req.joined is None:
                return await indexes.change_on_main(self, db, cmd)
            if name == "create" and isinstance(cmd.get(name), str):
                await self.catalog.child_overlays(branch, db, cmd[name])
            return Forward({**cmd, "$db": db})
        return await self._branch_command(name, db, branch, cmd, req.joined)

    async def _move_on_main(self, name: str, db: str, cmd: dict[str, Any]) -> dict[str, Any] | None:
        """A drop or rename on main, which branches (of this proxy or another one)
        may read: decided on the stored catalog, and again if it changes meanwhile.
        None: no branch reads it, mongod's own command answers."""
        for _ in range(_STALE_RETRIES):
            await self.catalog.refresh()
            try:
                target = cmd.get(name)
                if name == "drop":
                    return (
                        None
                        if not isinstance(target, str)
                        else await archives.drop(self, db, target)
                    )
                if name == "dropDatabase":
                    return await archives.drop_database(self, db)
                return await archives.rename(
                    self,
                    _namespace(target),
                    _namespace(cmd.get("to")),
                    bool(cmd.get("dropTarget")),
                )
            except StaleCatalog:
                continue  # another proxy changed the catalog meanwhile: decide again
        raise ArgonError(WRITE_CONFLICT, f"{name} on main: the catalog kept changing")

    def _refuse_in_transaction(self, name: str, branch: Branch) -> None:
        """Refuse, inside a client transaction, a command that changes the catalog of
        a branch (or of main's children): the change would wait for the LSN counter
        the transaction holds. On main without branches it is mongod's to judge."""
        if branch.name == MAIN and not self.catalog.children(MAIN):
            return
        raise ArgonError(
            NOT_IN_TRANSACTION,
            f"{name} inside a transaction is not supported on branch {branch.name!r}"
            + (" while it has child branches" if branch.name == MAIN else "")
            + ": it changes Argon's branch catalog. Run it before the transaction.",
        )

    async def _coll_mod_on_main(self, db: str, name: str) -> None:
        """Refuse changing a view of main while branches exist: they read main's
        definition of it, which must stay as it was when they forked."""
        if not self.catalog.children(MAIN):
            return
        listed = await self.db.find_cursor(db, {"listCollections": 1, "filter": {"name": name}})
        if listed and listed[0].get("type") == "view":
            self._guard_main(f"collMod of view {db}.{name}")

    def _guard_main(self, name: str) -> None:
        others = sorted(b for b in self.catalog.branches if b != MAIN)
        if others:
            raise ArgonError(
                COMMAND_NOT_SUPPORTED,
                f"{name} on branch 'main' is refused while other branches exist "
                f"({', '.join(others[:5])}{', ...' if len(others) > 5 else ''}): they could "
                "not be kept isolated from it. Delete or merge them first.",
            )

    async def _branch_command(
        self, name: str, db: str, branch: Branch, cmd: dict[str, Any], joined: Runner | None
    ) -> dict[str, Any] | Forward:
        handlers = {
            "find": self.reader.find,
            "aggregate": self.reader.aggregate,
            "count": self.reader.count,
            "distinct": self.reader.distinct,
        }
        # A held cursor reads outside transactions and snapshots, and without the plan
        # a hint names: the upstream's own cursor does all three.
        if (
            name == "find"
            and joined is None
            and "hint" not in cmd
            and snapshot_concern(cmd) is None
            and not await self.reader.is_view(branch, db, cmd["find"])
        ):
            view = await self.reader.view(branch, db, cmd["find"])
            if not view.passthrough:
                ns = f"{cmd['$db']}.{cmd['find']}"  # as the client named it: getMore comes back
                merged = await find_merged(self.db, self.catalog, view, cmd, self.cursors, ns)
                if merged is not None:
                    metrics.BRANCH_READS.labels("merged").inc()
                    return merged
        if name in handlers:
            result = await handlers[name](branch, db, cmd, joined)
            metrics.BRANCH_READS.labels("passthrough" if result is None else "pushdown").inc()
            if result is None:
                return Forward({**cmd, "$db": db})
            return Forward({**result, "$db": db}) if name in ("find", "aggregate") else result
        if name in NAMESPACE_FREE:
            return Forward({**cmd, "$db": db})
        if name in ("createIndexes", "dropIndexes"):
            if branch.read_only:
                raise _read_only(branch, name)
            if await self.reader.is_view(branch, db, cmd.get(name)):
                raise not_on_a_view(db, str(cmd[name]), name)
            change = indexes.create_indexes if name == "createIndexes" else indexes.drop_indexes
            return await change(self, branch, db, cmd)
        if name == "listIndexes":
            return await indexes.list_indexes(self, branch, db, cmd)
        if name == "create":
            return await self._create(db, branch, cmd)
        if name == "collMod" and isinstance(cmd.get(name), str):
            return await self._coll_mod(db, branch, cmd)
        if name == "drop":
            return await self._drop(db, branch, cmd)
        if name == "dropDatabase":
            return await self._drop_database(db, branch)
        if name == "explain":
            return await self._explain(db, branch, cmd, joined)
        if name in ("collStats", "dbStats", "validate"):
            coll = cmd.get(name) if isinstance(cmd.get(name), str) else None
            if coll and (await self.reader.view(branch, db, coll)).passthrough:
                return Forward({**cmd, "$db": db})
            if coll and name == "validate":
                return await self._validate(db, branch, coll, cmd)
        raise unsupported(name, branch.name)

    async def _validate(
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

    async def _explain(
        self, db: str, branch: Branch, cmd: dict[str, Any], joined: Runner | None
    ) -> Forward:
        """Explain what Argon really runs for a branch's find or aggregate: the
        command itself where the branch has not changed the collection, else the
        aggregate over the branch's layers. Others run as several commands, which
        no one plan describes."""
        inner = cmd.get("explain")
        kind = next(iter(inner), "") if isinstance(inner, dict) else ""
        if kind not in ("find", "aggregate"):
            raise unsupported(
                f"explain of {kind or 'this command'}",
                branch.name,
                "Argon runs it as several commands on the branch's layers",
            )
        assert isinstance(inner, dict)
        read = self.reader.find if kind == "find" else self.reader.aggregate
        rewritten = await read(branch, db, {**inner, "$db": db}, joined)
        plan = {k: v for k, v in (rewritten or inner).items() if k != "$db"}
        return Forward({**cmd, "explain": plan, "$db": db})

    async def _own_cursor_reply(
        self, name: str, cmd: dict[str, Any]
    ) -> dict[str, Any] | Forward | None:
        """Answer ``getMore`` / ``killCursors`` for cursors this proxy serves itself:
        held merged reads and change streams on branches."""
        if name == "getMore":
            cursor_id = cmd.get("getMore")
            if isinstance(cursor_id, int) and cursor_id in self.streams:
                return await self.streams.get_more(cursor_id, cmd)
            if not isinstance(cursor_id, int) or cursor_id not in self.cursors:
                return None
            return self.cursors.get_more(cursor_id, cmd.get("batchSize"))
        ids = cmd.get("cursors")
        if not isinstance(ids, list):
            return None
        killed = self.cursors.kill(ids) + await self.streams.kill(ids)
        if not killed:
            return None
        rest = [i for i in ids if i not in killed]
        if rest:  # the upstream's own cursors in the same command
            return Forward({**cmd, "cursors": rest, "$db": parse_db(str(cmd["$db"])).db})
        reply = {"cursorsKilled": killed, "cursorsNotFound": [], "cursorsAlive": []}
        return {**reply, "cursorsUnknown": [], "ok": 1.0}

    async def _list_databases(self, branch: Branch, cmd: dict[str, Any]) -> dict[str, Any]:
        reply = await self.db.command("admin", {k: v for k, v in cmd.items() if k != "$db"})
        reply["databases"] = [
            d
            for d in reply.get("databases", [])
            if d["name"] != INTERNAL_DB and projects.covers(self, branch, d["name"])
        ]
        reply.pop("$clusterTime", None)
        reply.pop("operationTime", None)
        return reply

    # -- collections on branches ---------------------------------------------

    async def route_create(self, branch: Branch, db: str, coll: str) -> None:
        """Create ``db.coll`` on ``branch`` (main included), keeping children isolated."""
        if branch.name != MAIN:
            await self._create(db, branch, {"create": coll})
            return
        await self.catalog.child_overlays(branch, db, coll)
        await self.db.command(db, {"create": coll})

    async def _create(
        self, db: str, branch: Branch, cmd: dict[str, Any], *, quiet: bool = False
    ) -> dict[str, Any]:
        """Create ``db.coll`` on ``branch``: its overlay becomes the whole collection,
        created with the client's options, so mongod applies them (validation,
        collation, pre- and post-images) and lists them. ``quiet``: no ``create``
        event for the branch's change streams (a rename's target)."""
        if branch.read_only:
            raise _read_only(branch, "create")
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

    async def _coll_mod(self, db: str, branch: Branch, cmd: dict[str, Any]) -> dict[str, Any]:
        """``collMod`` of a collection the branch alone holds (created on it, or
        dropped and created again): its overlay is the whole collection."""
        if branch.read_only:
            raise _read_only(branch, "collMod")
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

    async def _rename(
        self, branch: Branch, cmd: dict[str, Any], client: ClientIdentity
    ) -> dict[str, Any]:
        """``renameCollection`` on a branch: the target created with the source's
        options and indexes, the source's documents put into it (one transaction
        and WAL entry each, as ``$out`` does), then the source dropped."""
        if branch.read_only:
            raise _read_only(branch, "renameCollection")
        if self.catalog.children(branch.name):
            raise unsupported("renameCollection", branch.name, "it has child branches")
        (src_db, src), (dst_db, dst) = (_namespace(cmd.get(k)) for k in ("renameCollection", "to"))
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
            await self._drop(dst_db, branch, {"drop": dst})
            if target.get("info", {}).get("uuid") is not None:
                described["dropTarget"] = target["info"]["uuid"]
        specs = await indexes.list_specs(self.catalog, branch, src_db, src)
        # The steps are the rename's, not changes of their own: its streams see it alone.
        await self._create(dst_db, branch, {"create": dst, **options}, quiet=True)
        made = [{k: v for k, v in s.items() if k not in ("v", "ns")} for s in specs]
        made = [s for s in made if s.get("name") != "_id_"]
        if made:
            create = {"createIndexes": dst, "indexes": made}
            await indexes.create_indexes(self, branch, dst_db, create, quiet=True)
        ctx = WriteContext(branch, dst_db, dst, client, extra={MOVED: f"{src_db}.{src}"})
        await self.writer.put_many(ctx, [(d["_id"], d) for d in docs])
        await self._drop(src_db, branch, {"drop": src}, moved=True)
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
        for b in self.catalog.chain(branch):
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

    async def _drop(
        self, db: str, branch: Branch, cmd: dict[str, Any], *, moved: bool = False
    ) -> dict[str, Any]:
        """Drop ``db.coll`` on ``branch`` (``moved``: by a rename, whose own event the
        branch's change streams report instead of a drop)."""
        if branch.read_only:
            raise _read_only(branch, "drop")
        coll = cmd["drop"]
        if self.catalog.children(branch.name):
            raise unsupported("drop", branch.name, "it has child branches")
        listed = await self.reader.list_collections(branch, db, {"filter": {"name": coll}})
        if not listed["cursor"]["firstBatch"]:
            raise ArgonError(26, "ns not found")
        ov = await self.catalog.ensure_overlay(branch, db, coll)
        # The overlay collection goes whole, its indexes and options (a validator) with
        # it: a collection created again under the name starts without them, as on
        # mongod. Whatever it held was the branch's alone, now dropped.
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
        await indexes.store(self, ov, None)
        return {"ns": f"{db}.{coll}", "nIndexesWas": 1, "ok": 1.0}

    async def _drop_database(self, db: str, branch: Branch) -> dict[str, Any]:
        """Drop every collection the branch shows in ``db``, each as ``drop`` does.

        Like mongod, dropping a database that has no collections succeeds
        without ``dropped``; main and the branch's parents keep theirs."""
        if branch.read_only:
            raise _read_only(branch, "dropDatabase")
        if self.catalog.children(branch.name):
            raise unsupported("dropDatabase", branch.name, "it has child branches")
        listed = await self.reader.list_collections(branch, db, {"nameOnly": True})
        names = [c["name"] for c in listed["cursor"]["firstBatch"]]
        for coll in names:
            if not coll.startswith("system."):
                await self._drop(db, branch, {"drop": coll})
        if names:
            await mark(self.db, branch, "dropDatabase", db)
        return {"dropped": db, "ok": 1.0} if names else {"ok": 1.0}

    # -- writes ------------------------------------------------------------------

    async def _bulk_write(self, branch: Branch, req: Request) -> dict[str, Any]:
        """Client-level bulkWrite, one write-path statement per op (see bulk_write.py)."""
        cmd = req.command
        if branch.read_only:
            raise _read_only(branch, "bulkWrite")
        bulk_write.validate(cmd, branch)
        for entry in cmd["nsInfo"]:
            projects.check(self, branch, str(entry["ns"]).partition(".")[0])
        ctx = WriteContext(
            branch, "", "", ClientIdentity(req.app_name, None, req.connection_id), req.joined
        )
        if req.joined is None and "txnNumber" in cmd and "lsid" in cmd:
            ctx.retry = {"lsid": cmd["lsid"].get("id"), "txn": cmd["txnNumber"]}
        if req.joined is None and isinstance(cmd.get("writeConcern"), dict):
            ctx.write_concern = cmd["writeConcern"]
        return await bulk_write.run(self.writer, ctx, cmd)

    async def _write(self, name: str, db: str, branch: Branch, req: Request) -> dict[str, Any]:
        cmd = req.command
        if branch.read_only:
            raise _read_only(branch, name)
        coll = cmd[name]
        if not isinstance(coll, str) or is_internal(coll):
            raise ArgonError(73, f"Invalid namespace specified '{db}.{coll}'")
        if await self.reader.is_view(branch, db, coll):
            raise not_on_a_view(db, coll, name)
        ctx = WriteContext(
            branch, db, coll, ClientIdentity(req.app_name, None, req.connection_id), req.joined
        )
        if req.joined is None and "txnNumber" in cmd and "lsid" in cmd:
            ctx.retry = {"lsid": cmd["lsid"].get("id"), "txn": cmd["txnNumber"]}
        if req.joined is None and isinstance(cmd.get("writeConcern"), dict):
            ctx.write_concern = cmd["writeConcern"]
        if name != "findAndModify":  # findAndModify's fields are its one statement's
            ctx.options = write_options(name, cmd)
        try:
            return await self._write_statements(name, ctx, req)
        except CommandError as exc:
            if is_transient(exc):
                raise (_transient(exc) if req.joined else _still_conflicting(name, ctx)) from None
            raise

    async def _write_statements(self, name: str, ctx: WriteContext, req: Request) -> dict[str, Any]:
        cmd = req.command
        if name == "findAndModify":
            outcome = await self.writer.find_and_modify(ctx, cmd)
            return _with_concern_error(
                {**outcome.reply_value, "ok": 1.0}, outcome.write_concern_error
            )
        key = {"insert": "documents", "update": "updates", "delete": "deletes"}[name]
        statements = list(cmd.get(key) or [])
        ordered = cmd.get("ordered", True)
        reply: dict[str, Any] = {"n": 0}
        if name == "update":
            reply["nModified"] = 0
        upserted, errors = [], []
        if name == "insert":
            statements = [d if "_id" in d else {"_id": ObjectId(), **d} for d in statements]
        concern_error = None
        start = 0
        for part in self._parts(name, statements, req):
            skip = 0
            if len(part) > 1:
                # The retry record of a part is keyed by where it starts in the command.
                ctx.statement = "all" if start == 0 else f"all-{start}"
                try:
                    out = await self.writer.insert_batch(ctx, part)
                except NeedsStatements as exc:
                    # Some document fails: the rest statement by statement, as mongod
                    # reports it, after those already applied.
                    reply["n"] += exc.done
                    skip = exc.done
                else:
                    reply["n"] += out.matched
                    concern_error = out.write_concern_error or concern_error
                    start += len(part)
                    continue
            for index, stmt in enumerate(part[skip:], start + skip):
                ctx.statement = index
                try:
                    if name == "insert":
                        out = await self.writer.insert(ctx, stmt)
                    elif name == "update":
                        out = await self.writer.update(ctx, stmt)
                    else:
                        out = await self.writer.delete(ctx, stmt)
                except (StatementError, CommandError) as exc:
                    if (
                        isinstance(exc, CommandError)
                        and is_transient(exc)
                        and (ctx.retry is not None or ctx.joined is not None)
                    ):
                        # The driver may retry the whole command (or, in a client's
                        # transaction, the transaction): say so at the top.
                        if ctx.joined is not None:
                            raise _transient(exc) from None
                        raise
                    errors.append(exc.write_error(index))
                    if ordered:
                        break
                    continue
                concern_error = out.write_concern_error or concern_error
                reply["n"] += out.matched
                if name == "update":
                    reply["nModified"] += out.modified
                    if out.did_upsert:
                        reply["n"] += 1
                        upserted.append({"index": index, "_id": out.upserted})
            if errors and ordered:
                break
            start += len(part)
        if upserted:
            reply["upserted"] = upserted
        if errors:
            reply["writeErrors"] = errors
        reply["ok"] = 1.0
        return _with_concern_error(reply, concern_error)

    @staticmethod
    def _parts(name: str, statements: list[Any], req: Request) -> list[list[Any]]:
        """The statements cut into the parts that run as one transaction each.

        Inserts outside a client transaction run in bounded parts (``chunks``:
        one insert command's worth), so no transaction grows with the batch;
        a part that cannot run whole falls back to its statements one by one.
        Everything else runs statement by statement.
        """
        if name != "insert" or req.joined is not None or len(statements) < 2:
            return [[s] for s in statements]
        return chunks(statements)


def _with_concern_error(reply: dict[str, Any], error: dict[str, Any] | None) -> dict[str, Any]:
    """``reply`` with the commit's ``writeConcernError``, where mongod puts it."""
    if error:
        reply["writeConcernError"] = error
    return reply


def _transient(exc: CommandError) -> ArgonError:
    """A conflict inside a client's transaction, as mongod fails such a statement:
    the whole command, labelled so that the transaction is started again."""
    return ArgonError(exc.code, exc.errmsg, labels=("TransientTransactionError",))


def _still_conflicting(name: str, ctx: WriteContext) -> ArgonError:
    """A write that kept conflicting past Argon's retries, labelled for drivers.

    Outside a client transaction mongod never returns a write conflict (it
    retries), so ``TransientTransactionError`` would be wrong here; a
    retryable write gets the label that makes a driver retry it.
    """
    labels = ("RetryableWriteError",) if ctx.retry is not None else ()
    return ArgonError(
        WRITE_CONFLICT,
        f"{name} on {ctx.ns} (branch {ctx.branch.name!r}) kept conflicting with other "
        "writers; the statement that conflicted was not applied: retry it.",
        labels=labels,
    )


def _refuse_bypass(name: str, branch: str, cmd: Mapping[str, Any]) -> None:
    """Refuse a command that would write documents without WAL entries."""
    if name == "mapReduce" and _inline(cmd.get("out")):
        return  # writes nothing: the results come back in the reply
    raise ArgonError(
        COMMAND_NOT_SUPPORTED,
        f"{name} is not supported on branch {branch!r}: it would change documents "
        "without recording them in Argon's write-ahead log. Use insert, update and "
        "delete (per collection), or aggregate with $out or $merge instead.",
    )


def _addressed_rename(cmd: dict[str, Any]) -> dict[str, Any]:
    """A ``renameCollection`` whose names address a branch (``shop@exp.a``, as a
    driver's ``rename`` of a collection of ``shop@exp`` sends them), as the same
    command with plain names and the branch in ``$db``; anything else as it is."""
    names = [cmd.get("renameCollection"), cmd.get("to")]
    if not all(isinstance(n, str) and "." in n for n in names):
        return cmd
    addresses = [parse_db(str(n).split(".", 1)[0]) for n in names]
    branches = {a.branch for a in addresses} | {a.at for a in addresses if a.at}
    if branches == {None}:
        return cmd
    db_field = cmd.get("$db")
    target = parse_db(db_field) if isinstance(db_field, str) else None
    if len(branches) != 1 or None in branches or target is None or target.at:
        raise ArgonError(
            INVALID_NAMESPACE,
            f"renameCollection from {names[0]!r} to {names[1]!r}: both names must address "
            "the same branch (or neither), and a branch, not a point in time",
        )
    (branch,) = branches
    if target.branch not in (None, branch):
        raise ArgonError(
            INVALID_NAMESPACE,
            f"renameCollection names branch {branch!r} but runs on {db_field!r}",
        )
    plain = [f"{a.db}.{str(n).split('.', 1)[1]}" for a, n in zip(addresses, names, strict=True)]
    return {**cmd, "renameCollection": plain[0], "to": plain[1], "$db": f"{target.db}@{branch}"}


def _namespace(value: Any) -> tuple[str, str]:
    """``db`` and ``coll`` of a full collection name."""
    if not isinstance(value, str) or "." not in value:
        raise ArgonError(INVALID_NAMESPACE, f"Invalid namespace specified '{value}'")
    db, coll = value.split(".", 1)
    return db, coll


def _inline(out: Any) -> bool:
    return isinstance(out, Mapping) and set(out) == {"inline"}


def _read_only(branch: Branch, what: str) -> BranchError:
    return BranchError(
        READ_ONLY_BRANCH,
        f"{what} refused: branch {branch.name!r} is a read-only snapshot"
        f"{' of ' + branch.point if branch.point else ''}. "
        "Create a branch from it to make changes.",
    )


def decode_command(body: bytes, sequences: Iterable[tuple[str, list[bytes]]]) -> dict[str, Any]:
    """The command as a dict, with OP_MSG document sequences folded back into it.

    A sequence that repeats a body field or another sequence is refused, as
    mongod does: which one wins would otherwise be the parser's choice.
    """
    cmd: dict[str, Any] = bson.decode(body)
    name = next(iter(cmd), "")
    body_keys = set(cmd)
    for ident, docs in sequences:
        if ident in cmd:
            where = "the command" if ident in body_keys else "another document sequence"
            raise ArgonError(
                DUPLICATE_FIELD,
                f"BSON field '{name}.{ident}' is a duplicate field: a document sequence "
                f"repeats {where}",
            )
        cmd[ident] = [bson.decode(d) for d in docs]
    return cmd
