"""The command router: which branch an operation is on, and who answers it.

Theory of operation: ``Engine.route`` looks at a command that cannot take the
pass-through fast path (see ``protocol.py``), resolves its branch (``db@branch``
in ``$db``, else ``argon:<branch>`` in the connection's appName, else the
proxy's default branch) and returns either a reply document Argon made, or a
command to forward upstream in place of the client's (``Forward``), whose
reply then travels back as raw bytes. Writes on every branch, main included,
go through ``Writer`` and the WAL. ``Engine.routes`` is the table of every
command Argon answers other than by forwarding it: its handler on main and on
any other branch (``calls.Route``), each given one resolved ``Call``. The
handlers live with the services they use: write commands in
``write_commands.py``, collections of branches in ``branch_collections.py``,
indexes in ``indexes.py``, reads in ``reads.py``, aggregates ending in
``$out`` or ``$merge`` in ``aggregate_out.py``, the ``argon`` admin actions in
``admin.py``. A command Argon cannot yet
answer exactly on a branch is refused with a MongoDB-style error naming it
and the branch.
Before anything runs, every namespace the command names is checked
(``namespaces.check``): Argon's own data is invisible from every branch, and
commands that would write documents without WAL entries are refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

import bson

from . import (
    access,
    aggregate_out,
    archives,
    graph_lookup,
    metrics,
    namespaces,
    projects,
    refs,
    timetravel,
)
from .access import AccessControl
from .admin import Admin
from .aggregate_out import AggregateOut
from .branch_collections import BranchCollections
from .branch_streams import BranchStreams, is_change_stream
from .branch_views import not_on_a_view
from .calls import UPSTREAM, Call, Forward, Reply, Request, Route
from .catalog import Branch, CacheMoved, Catalog, StaleCatalog, protected, read_only
from .cursors import HeldCursors
from .dbclient import CommandError, DbClient, hold, in_front
from .errors import (
    COMMAND_NOT_SUPPORTED,
    DUPLICATE_FIELD,
    INVALID_NAMESPACE,
    NOT_IN_TRANSACTION,
    WRITE_CONFLICT,
    ArgonError,
    UpstreamIOError,
)
from .incarnation import Incarnation
from .indexes import Indexes
from .merge_find import find_merged
from .naming import (
    INTERNAL_DB,
    MAIN,
    branch_from_app_name,
    namespace,
    parse_db,
    selects_branch,
)
from .pending import Pending
from .reads import Reader, snapshot_concern, unsupported
from .txn import JoinedTransaction
from .txn_ends import TransactionEnds
from .upstream import UpstreamPool
from .users import UserStore
from .write_commands import WriteCommands
from .writes import Writer

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

# Commands the engine must see even on main (everything else on main is forwarded).
ON_MAIN = (
    WRITE_COMMANDS
    | MAIN_GUARDED
    | BYPASSES_WAL
    | {"bulkWrite"}
    | {"createIndexes", "dropIndexes", "create"}  # children must not see these appear
    | {"argon", "listCollections", "listDatabases", "aggregate"}
    | {"collMod"}  # of a view: children must keep the definition they have
    | {"commitTransaction", "abortTransaction"}  # a client transaction's WAL entries
)


class Engine:
    """Routes commands to the branch engine."""

    def __init__(
        self,
        pool: UpstreamPool,
        snapshot_limits: timetravel.SnapshotLimits | None = None,
        *,
        bundle_at: int | None = None,
    ) -> None:
        self.pool = pool
        self.db = DbClient(pool)
        self.catalog = Catalog(self.db)
        if bundle_at is not None:
            self.catalog.bundle_at = bundle_at
        self.pending = Pending()  # what open client transactions wrote on branches
        self.reader = Reader(self.db, self.catalog, self.pending)
        self.cursors = HeldCursors()  # the rest of merged branch reads, for getMore
        self.streams = BranchStreams(self.db, self.reader)  # change streams on branches
        self.incarnation = Incarnation(self.db)
        self.catalog.owner = str(self.incarnation.id)
        self.catalog.sessions = self.incarnation.sessions
        self.writer = Writer(pool, self.catalog, self.incarnation.sessions, self.pending)
        self.snapshots = timetravel.Snapshots(
            self.db, self.catalog, self.writer, snapshot_limits or timetravel.SnapshotLimits()
        )
        self.indexes = Indexes(self.db, self.catalog, self.reader, self.writer)
        self.collections = BranchCollections(
            self.db, self.catalog, self.reader, self.writer, self.indexes
        )
        self.writes = WriteCommands(self.catalog, self.reader, self.writer)
        self.txn_ends = TransactionEnds(self.catalog, self.writer, self.pending)
        self.aggregate_out = AggregateOut(
            self.db, self.catalog, self.reader, self.writer, self.collections
        )
        self.users = UserStore(self.db)
        self.access = AccessControl(self.db, self._project_of)
        self.admin = Admin(
            self.db,
            self.catalog,
            self.writer,
            self.indexes,
            self.snapshots,
            self.users,
            self.access,
        )
        self.routes = self._routes()

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
            ref = f"{name}@{address.at}" if address.at else name
            branch = await refs.resolve(self.db, self.catalog, self.snapshots, ref)
        return address.db, branch

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

    async def _route(self, req: Request) -> Reply:
        cmd = req.command
        name = next(iter(cmd))
        if name in ("getMore", "killCursors") and (self.cursors or self.streams):
            held = await self._own_cursor_reply(name, cmd)
            if held is not None:
                return held
        if name == "argon":
            await self.catalog.refresh()
            return await self.admin.handle(cmd, req)
        if _checked_in_front(name, req):
            call = await self._resolved(name, req, sync=False)
            if call.branch.name == MAIN:  # main has no caches to check: resolved as is
                return await self._answer(call)
            try:
                return await self._checked_answer(call)
            except CacheMoved:
                pass  # another proxy changed what the caches held: answer afresh
        elif _checked_in_transaction(name, req):
            call = await self._resolved(name, req, sync=False)
            if call.branch.name == MAIN:
                return await self._answer(call)
            req.synced = False
            try:
                return await self._answer(call)
            except CacheMoved:  # nothing of it ran: the whole command again, after a sync
                req.synced = True
        call = await self._resolved(name, req)
        return await self._answer(call)

    async def _answer(self, call: Call) -> Reply:
        """What the command's handler answers, the upstream's answer, or a refusal."""
        route = self.routes.get(call.name, UPSTREAM)
        handler = route.main if call.branch.name == MAIN else route.branch
        if handler is not None:
            return await handler(call)
        if call.branch.name == MAIN or call.name in NAMESPACE_FREE:
            return call.forward()
        raise unsupported(call.name, call.branch.name)

    async def _checked_answer(self, call: Call) -> Reply:
        """``_answer`` of a read on a branch, from the caches as they are, with the
        check that they are current sent beside the first upstream command (one
        round trip fewer than a ``sync`` first). A refusal made from them is
        checked too; ``CacheMoved`` when they were out of date."""
        with in_front(self.catalog.check(call.branch, call.db)) as front:
            try:
                result = await self._answer(call)
            except (ArgonError, CommandError):
                await self.db.settle(front)
                raise
            await self.db.settle(front)  # a forwarded read has not carried it
        return result

    async def _resolved(self, name: str, req: Request, *, sync: bool = True) -> Call:
        """The command's branch and database, after the checks every command passes.
        ``sync``: bring the branch's caches up to date first (else the caller checks
        them with the command's upstream work)."""
        cmd = _addressed_rename(req.command) if name == "renameCollection" else req.command
        db_field = cmd.get("$db")
        if not isinstance(db_field, str):  # e.g. a document sequence named $db
            raise ArgonError(73, f"{name} needs a database name (a string) in $db")
        db, branch = await self.resolve(db_field, req.app_name)
        if branch.name != MAIN and sync:  # another proxy may have changed the caches
            branch = await self.catalog.sync(branch, db)
        req.branch = branch.name
        await self._authorize(name, cmd, db, branch, req)
        namespaces.check(cmd, db, branch.name)  # __argon, overlays, the oplog: never
        if name in BYPASSES_WAL:
            _refuse_bypass(name, branch.name, cmd)
        if req.joined is not None and name in CATALOG_CHANGES:
            self._refuse_in_transaction(name, branch)
        if name not in NAMESPACE_FREE:
            projects.check(self.catalog, branch, db)
        return Call(name, db, branch, cmd, req)

    def _project_of(self, name: str) -> str | None:
        """The project of branch ``name`` (None: the default project, or no such branch)."""
        branch = self.catalog.branches.get(name)
        return branch.project if branch is not None else None

    async def _authorize(
        self, name: str, cmd: dict[str, Any], db: str, branch: Branch, req: Request
    ) -> None:
        """Refuse what the branch's protection or the user's rights do not allow."""
        right = access.right_for(name, cmd)
        if right == access.WRITE and branch.protected:
            # Confirmed on the stored catalog before refusing: another proxy may
            # have lifted the protection since this proxy's caches were filled.
            await self.catalog.refresh()
            stored = self.catalog.branches.get(branch.name)
            if stored is None or stored.protected:
                raise protected(branch, name)
        if req.checked and right is not None:
            # The server's own databases (its users, sessions, operations) are read
            # upstream with Argon's rights: administrators only.
            written = access.out_database(cmd, db) if name == "aggregate" else db
            server_db = db in access.SERVER_DATABASES or written in access.SERVER_DATABASES
            target = "*" if right == access.ADMIN or server_db else branch.name
            await self.access.check(req.user, right, target, name)

    def _routes(self) -> dict[str, Route]:
        """Every command Argon answers other than by forwarding it as sent: what
        answers it on main, and on any other branch."""
        cols, ix = self.collections, self.indexes
        write = Route(self.writes.write, self.writes.write)
        read = Route(None, self._read)
        stats = Route(None, self._stats)
        indexed = Route(self._indexes_on_main, self._indexes)
        return {
            **dict.fromkeys(WRITE_COMMANDS, write),
            "bulkWrite": Route(self.writes.bulk_write, self.writes.bulk_write),
            "commitTransaction": Route(self.txn_ends.commit, self.txn_ends.commit),
            "abortTransaction": Route(self.txn_ends.abort, self.txn_ends.abort),
            "listDatabases": Route(self._list_databases, self._list_databases),
            "listCollections": Route(self._list_collections, self._list_collections),
            "aggregate": Route(self._aggregate_on_main, self._aggregate),
            **dict.fromkeys(("find", "count", "distinct"), read),
            "explain": Route(None, self._explain),
            **dict.fromkeys(("collStats", "dbStats", "validate"), stats),
            "createIndexes": indexed,
            "dropIndexes": indexed,
            "listIndexes": Route(None, lambda c: ix.list_indexes(c.branch, c.db, c.cmd)),
            "create": Route(self._create_on_main, lambda c: cols.create(c.db, c.branch, c.cmd)),
            "collMod": Route(self._coll_mod_on_main, self._coll_mod),
            "drop": Route(self._moved_on_main, lambda c: cols.drop(c.db, c.branch, c.cmd)),
            "dropDatabase": Route(
                self._moved_on_main, lambda c: cols.drop_database(c.db, c.branch)
            ),
            "renameCollection": Route(
                self._moved_on_main, lambda c: cols.rename(c.branch, c.cmd, c.client)
            ),
        }

    # -- handlers on main --------------------------------------------------------

    async def _moved_on_main(self, call: Call) -> Reply:
        moved = await self._move_on_main(call.name, call.db, call.cmd)
        if moved is not None:
            return moved
        # mongod's own drop or rename, run here under the writers' lock rather than
        # forwarded: none of this proxy's write transactions may be open on what it
        # removes. The test upstream's drop waits for such a transaction while
        # holding its storage lock, which the transaction needs to end: both wait
        # until the transaction's lifetime runs out. Run, not sent and forgotten,
        # even for a client that wants no reply, for the same reason.
        async with self.writer.lock(f"{call.db}.*"):
            return await self.db.reply(call.db, call.forward().command)

    async def _coll_mod_on_main(self, call: Call) -> Reply:
        """Refuse changing a view of main while branches exist: they read main's
        definition of it, which must stay as it was when they forked."""
        name = call.cmd.get("collMod")
        if isinstance(name, str) and self.catalog.children(MAIN):
            listed = await self.db.find_cursor(
                call.db, {"listCollections": 1, "filter": {"name": name}}
            )
            if listed and listed[0].get("type") == "view":
                self._guard_main(f"collMod of view {call.db}.{name}")
        return call.forward()

    async def _aggregate_on_main(self, call: Call) -> Reply:
        if aggregate_out.ends_in_write(call.cmd):
            return await self._aggregate_out(call)
        await self.reader.aggregate(call.branch, call.db, call.cmd)  # checks its stages
        return Forward({**namespaces.without_internal_changes(call.cmd), "$db": call.db})

    async def _indexes_on_main(self, call: Call) -> Reply:
        # In a client transaction main has no children here (else refused before):
        # the upstream alone judges the index change.
        if isinstance(call.cmd.get(call.name), str) and call.joined is None:
            return await self.indexes.change_on_main(call.db, call.cmd)
        return call.forward()

    async def _create_on_main(self, call: Call) -> Reply:
        name = call.cmd.get("create")
        if isinstance(name, str):  # keep it off the children
            await self.catalog.child_overlays(call.branch, call.db, name)
        return call.forward()

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
                        else await archives.drop(self.catalog, self.writer, db, target)
                    )
                if name == "dropDatabase":
                    return await archives.drop_database(self.catalog, self.writer, db)
                return await archives.rename(
                    self.catalog,
                    self.writer,
                    namespace(target),
                    namespace(cmd.get("to")),
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

    def _guard_main(self, name: str) -> None:
        others = sorted(b for b in self.catalog.branches if b != MAIN)
        if others:
            raise ArgonError(
                COMMAND_NOT_SUPPORTED,
                f"{name} on branch 'main' is refused while other branches exist "
                f"({', '.join(others[:5])}{', ...' if len(others) > 5 else ''}): they could "
                "not be kept isolated from it. Delete or merge them first.",
            )

    # -- handlers on other branches ----------------------------------------------

    async def _aggregate(self, call: Call) -> Reply:
        if is_change_stream(call.cmd):
            return await self.streams.open(call.branch, call.db, call.cmd, call.joined is not None)
        if aggregate_out.ends_in_write(call.cmd):
            return await self._aggregate_out(call)
        pipeline = call.cmd.get("pipeline")
        sources = await graph_lookup.changed_sources(
            self.reader, call.branch, call.db, pipeline, call.joined
        )
        if sources and call.joined is None:
            return await graph_lookup.run(
                self.db, self.reader, self.cursors, call.branch, call.db, call.cmd, sources
            )
        return await self._read(call)

    async def _aggregate_out(self, call: Call) -> Reply:
        """An aggregate ending in ``$out`` or ``$merge``: its writes go through the
        write path (``aggregate_out.py``), on every branch."""
        if call.joined is not None:
            raise unsupported("aggregate with $out or $merge in a transaction", call.branch.name)
        return await self.aggregate_out.run(call.branch, call.db, call.cmd, call.client)

    async def _read(self, call: Call) -> Reply:
        """find, aggregate, count or distinct on a branch: merged here, rewritten
        to run upstream over the branch's layers, or forwarded as it is."""
        name, db, branch, cmd = call.name, call.db, call.branch, call.cmd
        # A held cursor reads outside transactions and snapshots, and without the plan
        # a hint names: the upstream's own cursor does all three.
        if (
            name == "find"
            and call.joined is None
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
        readers = {
            "find": self.reader.find,
            "aggregate": self.reader.aggregate,
            "count": self.reader.count,
            "distinct": self.reader.distinct,
        }
        result = await readers[name](branch, db, cmd, call.joined)
        metrics.BRANCH_READS.labels("passthrough" if result is None else "pushdown").inc()
        if result is None:
            return call.forward()
        return Forward({**result, "$db": db}) if name in ("find", "aggregate") else result

    async def _list_collections(self, call: Call) -> Reply:
        return await self.reader.list_collections(call.branch, call.db, call.cmd)

    async def _indexes(self, call: Call) -> Reply:
        name, db, branch, cmd = call.name, call.db, call.branch, call.cmd
        if branch.read_only:
            raise read_only(branch, name)
        if await self.reader.is_view(branch, db, cmd.get(name)):
            raise not_on_a_view(db, str(cmd[name]), name)
        if name == "createIndexes":
            return await self.indexes.create_indexes(branch, db, cmd)
        return await self.indexes.drop_indexes(branch, db, cmd)

    async def _coll_mod(self, call: Call) -> Reply:
        if not isinstance(call.cmd.get("collMod"), str):
            raise unsupported("collMod", call.branch.name)
        return await self.collections.coll_mod(call.db, call.branch, call.cmd)

    async def _stats(self, call: Call) -> Reply:
        """collStats, dbStats and validate: the upstream's own where the branch has
        not changed the collection; validate checks every layer otherwise."""
        coll = call.cmd.get(call.name)
        if (
            isinstance(coll, str)
            and (await self.reader.view(call.branch, call.db, coll)).passthrough
        ):
            return call.forward()
        if isinstance(coll, str) and call.name == "validate":
            return await self.collections.validate(call.db, call.branch, coll, call.cmd)
        raise unsupported(call.name, call.branch.name)

    async def _explain(self, call: Call) -> Reply:
        """Explain what Argon really runs for a branch's find or aggregate: the
        command itself where the branch has not changed the collection, else the
        aggregate over the branch's layers. Others run as several commands, which
        no one plan describes."""
        db, branch, cmd = call.db, call.branch, call.cmd
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
        rewritten = await read(branch, db, {**inner, "$db": db}, call.joined)
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

    async def _list_databases(self, call: Call) -> Reply:
        branch, cmd = call.branch, call.cmd
        reply = await self.db.command("admin", {k: v for k, v in cmd.items() if k != "$db"})
        reply["databases"] = [
            d
            for d in reply.get("databases", [])
            if d["name"] != INTERNAL_DB and projects.covers(self.catalog, branch, d["name"])
        ]
        reply.pop("$clusterTime", None)
        reply.pop("operationTime", None)
        return reply


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


def _checked_in_front(name: str, req: Request) -> bool:
    """Whether a branch's caches are checked alongside the command's own upstream
    work rather than before it: plain reads outside client transactions, which
    change nothing and may simply be answered again when the check fails."""
    if req.joined is not None or name not in ("find", "count", "distinct", "aggregate"):
        return False
    cmd = req.command
    return name != "aggregate" or not (is_change_stream(cmd) or aggregate_out.ends_in_write(cmd))


# Writes whose every transaction checks the caches it rests on (``Catalog.verify``).
_WRITES_CHECKED_IN_TRANSACTION = frozenset({"insert", "update", "delete", "findAndModify"})


def _checked_in_transaction(name: str, req: Request) -> bool:
    """Whether a branch's caches are checked in the command's first transaction
    rather than by a ``sync`` before it: writes outside client transactions,
    whose transactions check them anyway; one that finds them stale before
    anything of the command ran starts the whole command again."""
    return req.joined is None and name in _WRITES_CHECKED_IN_TRANSACTION


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


def _inline(out: Any) -> bool:
    return isinstance(out, Mapping) and set(out) == {"inline"}


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
