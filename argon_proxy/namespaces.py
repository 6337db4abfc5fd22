"""Every namespace a command names, and the ones no client may name.

Theory of operation: a command names collections in many places besides its
first value: ``renameCollection``'s ``to``, client-level ``bulkWrite``'s
``nsInfo``, aggregation stages that read or write other collections
(``$lookup``, ``$graphLookup``, ``$unionWith``, ``$out``, ``$merge``, nested in
``$lookup``/``$unionWith`` pipelines and ``$facet``), ``mapReduce``'s ``out``,
a view's ``viewOn``, ``explain``'s inner command, ``getMore``'s ``collection``.
``namespaces`` lists them all as ``(db, collection)`` pairs so that one check
(``check``) keeps Argon's own data out of reach on every branch, main
included: the ``__argon`` database, the overlay collections
``<db>.__argon.<branch-id>.<collection>`` that hold other branches' private
documents, ``system.argon*``, and the upstream's oplog, which records them
all. A command Argon does not know is searched for internal names in all its
string values: refusing an unusual command that merely mentions one is better
than letting an unknown one through.

The pass-through fast path (``Engine.needs_engine``) forwards only commands in
``FIRST_VALUE_ONLY``, which name at most the collection in their first value,
and only after a cheap look at that value; everything else is decoded and
checked here first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from .errors import INVALID_NAMESPACE, UNAUTHORIZED, ArgonError
from .naming import INTERNAL_DB, INTERNAL_PREFIX, is_internal

# Commands about the server or a session, never a collection: the same on every branch.
SERVER_COMMANDS = frozenset(
    {
        "ping",
        "buildInfo",
        "buildinfo",
        "serverStatus",
        "hostInfo",
        "getParameter",
        "setParameter",
        "whatsmyuri",
        "connectionStatus",
        "endSessions",
        "killSessions",
        "refreshSessions",
        "startSession",
        "getCmdLineOpts",
        "getLog",
        "listCommands",
        "logout",
        "saslStart",
        "saslContinue",
        "getFreeMonitoringStatus",
        "features",
        "commitTransaction",
        "abortTransaction",
        "lockInfo",
        "currentOp",
        "killOp",
        "getMore",
        # The server's durability and defaults: the same whatever branch asks.
        "fsync",
        "fsyncUnlock",
        "getDefaultRWConcern",
        "setDefaultRWConcern",
        # Users and roles belong to the server, not to a branch's data.
        "usersInfo",
        "rolesInfo",
        "createUser",
        "updateUser",
        "dropUser",
        "dropAllUsersFromDatabase",
        "grantRolesToUser",
        "revokeRolesFromUser",
        "createRole",
        "updateRole",
        "dropRole",
        "dropAllRolesFromDatabase",
        "grantPrivilegesToRole",
        "revokePrivilegesFromRole",
        "grantRolesToRole",
        "revokeRolesFromRole",
    }
)
# Commands whose first value, even a string, is not a collection.
NO_COLLECTION = SERVER_COMMANDS | {
    "dbStats",
    "dropDatabase",
    "hello",
    "isMaster",
    "ismaster",
    "listCollections",
    "listDatabases",
}
# Commands that name at most one collection, in ``$db``: their first value
# (``getMore``: its ``collection``). ``dropDatabase`` is left to the engine.
FIRST_VALUE_ONLY = (NO_COLLECTION - {"dropDatabase"}) | {
    "find",
    "count",
    "distinct",
    "insert",
    "update",
    "delete",
    "findAndModify",
    "killCursors",
    "listIndexes",
    "collStats",
    "validate",
    "createIndexes",
    "dropIndexes",
    "drop",
    "compact",
    "reIndex",
    "planCacheClear",
    "planCacheListFilters",
    "planCacheClearFilters",
    "planCacheSetFilter",
}
# Commands whose first value is a whole namespace, ``db.collection``.
_FULL_NAME_FIRST = frozenset({"renameCollection", "dataSize"})
_PIPELINE_OWNERS = frozenset({"aggregate", "create", "collMod"})


def namespaces(cmd: Mapping[str, Any], db: str) -> Iterator[tuple[str, str]]:
    """Every ``(database, collection)`` ``cmd`` names; ``db`` is its resolved ``$db``.

    Raises InvalidNamespace for a namespace argument that is not a string of
    the right shape, where the command's own parser would refuse it anyway.
    """
    name = next(iter(cmd), "")
    first = cmd.get(name)
    if name in _FULL_NAME_FIRST:
        yield _split(first, name)
        if name == "renameCollection":
            yield _split(cmd.get("to"), name)
        return
    if isinstance(first, str) and name not in NO_COLLECTION:
        yield db, first
    if name == "getMore" and isinstance(cmd.get("collection"), str):
        yield db, cmd["collection"]
    elif name == "explain" and isinstance(first, Mapping) and first:
        yield from namespaces(first, db)
    elif name in _PIPELINE_OWNERS:
        if isinstance(cmd.get("viewOn"), str):
            yield db, cmd["viewOn"]
        yield from pipeline_namespaces(cmd.get("pipeline"), db)
    elif name == "mapReduce":
        yield from _map_reduce_out(cmd.get("out"), db)
    elif name == "cloneCollectionAsCapped" and isinstance(cmd.get("toCollection"), str):
        yield db, cmd["toCollection"]
    elif name == "bulkWrite":
        for entry in _list(cmd.get("nsInfo")):
            yield _split(entry.get("ns") if isinstance(entry, Mapping) else None, name)
    elif name == "applyOps":
        for op in _list(first):
            if isinstance(op, Mapping) and "ns" in op:
                yield _split(op["ns"], name)
    elif name == "dbHash":
        for coll in _list(cmd.get("collections")):
            if isinstance(coll, str):
                yield db, coll


def pipeline_namespaces(pipeline: Any, db: str) -> Iterator[tuple[str, str]]:
    """The namespaces an aggregation pipeline's stages read or write, nested ones included."""
    for stage in _list(pipeline):
        if not isinstance(stage, Mapping):
            continue
        for op, spec in stage.items():
            yield from _stage_namespaces(op, spec, db)


def _stage_namespaces(op: str, spec: Any, db: str) -> Iterator[tuple[str, str]]:
    if op in ("$lookup", "$graphLookup", "$unionWith"):
        if op == "$unionWith" and isinstance(spec, str):
            yield db, spec
            return
        if not isinstance(spec, Mapping):
            return
        target = spec.get("coll") if op == "$unionWith" else spec.get("from")
        if target is not None:
            yield _target(target, db, op)
        yield from pipeline_namespaces(spec.get("pipeline"), db)
    elif op == "$out":
        yield _target(spec, db, op)
    elif op == "$merge":
        yield _target(spec.get("into") if isinstance(spec, Mapping) else spec, db, op)
    elif op == "$facet" and isinstance(spec, Mapping):
        for sub in spec.values():
            yield from pipeline_namespaces(sub, db)


def _target(spec: Any, db: str, what: str) -> tuple[str, str]:
    """A stage's collection: a name in ``db``, or ``{db, coll}``."""
    if isinstance(spec, str):
        return db, spec
    if isinstance(spec, Mapping) and isinstance(spec.get("coll"), str):
        other = spec.get("db", db)
        if isinstance(other, str):
            return other, spec["coll"]
    raise ArgonError(INVALID_NAMESPACE, f"{what} names no valid collection: {spec!r}")


def _map_reduce_out(out: Any, db: str) -> Iterator[tuple[str, str]]:
    if isinstance(out, str):
        yield db, out
    elif isinstance(out, Mapping):
        target_db = out.get("db", db)
        for mode in ("replace", "merge", "reduce"):
            if isinstance(out.get(mode), str):
                yield (target_db if isinstance(target_db, str) else db), out[mode]


def _split(ns: Any, what: str) -> tuple[str, str]:
    if not isinstance(ns, str) or "." not in ns:
        raise ArgonError(INVALID_NAMESPACE, f"{what}: invalid namespace {ns!r}")
    db, _, coll = ns.partition(".")
    return db, coll


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def mentions_internal(value: str) -> bool:
    """Whether a string could name Argon's data: cheap, and errs towards True."""
    lowered = value.lower()
    return any(part in lowered for part in _SUSPECT) or "\x00" in value


_SUSPECT = (INTERNAL_DB, "system.argon", "oplog.")


def check(cmd: Mapping[str, Any], db: str, branch: str) -> None:
    """Refuse ``cmd`` if it names Argon's own data or a malformed namespace."""
    name = next(iter(cmd), "")
    _check_db(name, branch, db)
    for ns_db, coll in namespaces(cmd, db):
        _check_one(name, branch, ns_db, coll)
    if name not in FIRST_VALUE_ONLY and name not in _KNOWN and _deep_mentions_internal(cmd):
        raise ArgonError(
            UNAUTHORIZED,
            f"{name} on branch {branch!r} mentions Argon's internal data ({INTERNAL_DB} or "
            "an overlay collection), which is not accessible to clients",
        )


def _check_db(name: str, branch: str, db: str) -> None:
    """The command's own database: never Argon's (in any case: mongod keeps one
    database per case-insensitive name), never one a C string would cut short."""
    if db.lower() == INTERNAL_DB:
        raise ArgonError(
            UNAUTHORIZED,
            f"{name} on branch {branch!r}: the {INTERNAL_DB} database is Argon's own; "
            "use the argon commands",
        )
    if "\x00" in db:
        raise ArgonError(INVALID_NAMESPACE, f"{name}: invalid database name {db!r}")


def _check_one(name: str, branch: str, db: str, coll: str) -> None:
    where = f"{name} on branch {branch!r}"
    if db.lower() == INTERNAL_DB:
        raise ArgonError(
            UNAUTHORIZED,
            f"{where} names '{db}.{coll}': the {INTERNAL_DB} database is Argon's own; "
            "use the argon commands",
        )
    if "\x00" in db or "\x00" in coll:
        raise ArgonError(INVALID_NAMESPACE, f"{where}: invalid namespace {db!r}.{coll!r}")
    if db == "local" and coll.startswith("oplog."):
        raise ArgonError(
            UNAUTHORIZED,
            f"{where} names 'local.{coll}': the oplog records Argon's internal writes and "
            "every branch's private documents. Watch a collection, or use Argon's log.",
        )
    if is_internal(coll):
        raise ArgonError(
            INVALID_NAMESPACE,
            f"{where} names '{db}.{coll}': collections named {INTERNAL_PREFIX}* or "
            "system.argon* are Argon's internal data and invisible to clients",
        )
    if not db or "@" in db:
        raise ArgonError(
            INVALID_NAMESPACE,
            f"{where} names '{db}.{coll}': a branch address (db@branch) or an empty "
            "database name is only accepted in the command's $db",
        )


# Change events of Argon's own data: its database, and the overlay and system.argon
# collections it keeps in users' databases.
_INTERNAL_EVENTS: dict[str, Any] = {
    "$nor": [
        {"ns.db": {"$regex": f"^{INTERNAL_DB}$", "$options": "i"}},
        {"ns.coll": {"$regex": f"^({re.escape(INTERNAL_PREFIX)}|system\\.argon)"}},
        {"to.coll": {"$regex": f"^({re.escape(INTERNAL_PREFIX)}|system\\.argon)"}},
    ]
}


def without_internal_changes(cmd: dict[str, Any]) -> dict[str, Any]:
    """A database- or cluster-wide change stream on main (``aggregate: 1`` starting
    with ``$changeStream``) that leaves out the changes of Argon's own data, which
    it would otherwise report; the filter comes first, before the client's stages
    can reshape the events. Any other command as it is."""
    pipeline = cmd.get("pipeline")
    if isinstance(cmd.get("aggregate"), str) or not isinstance(pipeline, list) or not pipeline:
        return cmd
    first = pipeline[0]
    if not isinstance(first, Mapping) or "$changeStream" not in first:
        return cmd
    return {**cmd, "pipeline": [first, {"$match": _INTERNAL_EVENTS}, *pipeline[1:]]}


# Commands whose namespaces ``namespaces`` lists exactly.
_KNOWN = (
    _FULL_NAME_FIRST
    | _PIPELINE_OWNERS
    | {
        "getMore",
        "explain",
        "mapReduce",
        "cloneCollectionAsCapped",
        "bulkWrite",
        "applyOps",
        "dbHash",
        "argon",
    }
)


def _deep_mentions_internal(value: Any) -> bool:
    if isinstance(value, str):
        return value == INTERNAL_DB or value.startswith(INTERNAL_PREFIX) or ".__argon." in value
    if isinstance(value, Mapping):
        return any(_deep_mentions_internal(v) for v in value.values())
    if isinstance(value, list):
        return any(_deep_mentions_internal(v) for v in value)
    return False
