"""Who may do what on which branch: roles granted per branch name pattern.

Theory of operation: with ``auth`` on, every request carries the user its
connection authenticated as. An administrator (``admin: true`` on the user;
the first user, created through the localhost exception, is one) may do
everything. Anyone else may do what their grants allow: a grant gives a user
a role on the branches whose names match a pattern (``fnmatch`` globs:
``customer-churn/*``, ``exp-?``, ``*``, or one name), or on the branches of a
project (not main, which every project shares: it is granted by name). Roles:

* ``read``: read the branch's data, its history, diffs and tags;
* ``write``: ``read``, and change documents and collections on it;
* ``merge``: ``read``, and merge other branches into it (the only way to
  change a protected branch);
* ``admin``: all of the above, and the branch's lifecycle: create branches
  with matching names, delete, archive, reset, undo, tag, set expiry.

A protected branch (``protectBranch``) takes no direct write from anyone, an
administrator included: only merges by users allowed to merge into it, as
protected branches on Git hosts. Protection holds with ``auth`` off too.

Every decision is made once per request in the engine (``Engine._resolved``
for commands, ``Admin`` for admin actions) from grants cached for a second
(``load``): a change made through this proxy applies at once, one made through
another proxy within a second. A refusal is 13 Unauthorized naming the user,
the action and the branch.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from .dbclient import DbClient
from .errors import BAD_VALUE, UNAUTHORIZED, USER_NOT_FOUND, ArgonError
from .naming import INTERNAL_DB

READ, WRITE, MERGE, ADMIN = "read", "write", "merge", "admin"
ROLES = (READ, WRITE, MERGE, ADMIN)
_ALLOWS = {
    READ: frozenset({READ}),
    WRITE: frozenset({READ, WRITE}),
    MERGE: frozenset({READ, MERGE}),
    ADMIN: frozenset({READ, WRITE, MERGE, ADMIN}),
}
GRANTS = "grants"
_CACHE_SECONDS = 1.0

# Commands that change the branch they address (documents or collections).
WRITES = frozenset(
    {"insert", "update", "delete", "findAndModify", "bulkWrite"}
    | {"create", "createIndexes", "drop", "dropDatabase", "dropIndexes", "collMod"}
    | {"renameCollection", "applyOps", "convertToCapped", "cloneCollectionAsCapped"}
    | {"emptycapped", "mapReduce", "compact", "reIndex"}
)
# Commands that only read the branch they address.
READS = frozenset(
    {"find", "aggregate", "count", "distinct", "getMore", "killCursors", "explain"}
    | {"listCollections", "listIndexes", "collStats", "dbStats", "dataSize"}
    | {"listSearchIndexes"}
)
# Commands that touch no data: anyone authenticated may run them. Everything that
# is none of these three kinds (server administration, unknown commands) is for
# administrators.
HARMLESS = frozenset(
    {"ping", "buildInfo", "buildinfo", "hello", "isMaster", "ismaster", "whatsmyuri"}
    | {"connectionStatus", "endSessions", "startSession", "refreshSessions", "listCommands"}
    | {"commitTransaction", "abortTransaction", "listDatabases", "logout"}
)


# Databases of the server itself: reading them (admin.system.users, $currentOp) or
# writing them would use Argon's upstream rights, so they are for administrators.
SERVER_DATABASES = frozenset({"admin", "config", "local"})


def right_for(name: str, cmd: dict[str, Any]) -> str | None:
    """The right a command needs on the branch it addresses: ``read``, ``write``,
    ``admin`` (administrators' commands), or None (harmless)."""
    if name in WRITES or (name == "aggregate" and _writes_out(cmd)):
        return WRITE
    if name in READS:
        return READ
    return None if name in HARMLESS else ADMIN


def _writes_out(cmd: dict[str, Any]) -> bool:
    return _out_stage(cmd) is not None


def _out_stage(cmd: dict[str, Any]) -> Any:
    """The ``$out`` or ``$merge`` stage ending an aggregate's pipeline, or None."""
    pipeline = cmd.get("pipeline")
    if not isinstance(pipeline, list) or not pipeline or not isinstance(pipeline[-1], dict):
        return None
    last = pipeline[-1]
    return last.get("$out", last.get("$merge"))


def out_database(cmd: dict[str, Any], db: str) -> str:
    """The database an aggregate's ``$out``/``$merge`` writes into (``db`` unless the
    stage names another)."""
    stage = _out_stage(cmd)
    into = stage.get("into", stage) if isinstance(stage, dict) else None
    target = into.get("db") if isinstance(into, dict) else None
    return target if isinstance(target, str) else db


@dataclass(frozen=True, slots=True)
class Grant:
    """``role`` for ``user`` on the branches whose names match ``branches``, or on
    the branches of ``project`` (one of the two is set)."""

    user: str
    role: str
    branches: str | None = None
    project: str | None = None

    def covers(self, branch: str, project: str | None) -> bool:
        if self.branches is not None:
            return fnmatch.fnmatchcase(branch, self.branches)
        return project is not None and project == self.project

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"user": self.user, "role": self.role}
        if self.branches is not None:
            doc["branches"] = self.branches
        if self.project is not None:
            doc["project"] = self.project
        return doc


def refused(user: str | None, action: str, branch: str) -> ArgonError:
    """The refusal of ``action`` on ``branch`` to ``user``."""
    who = f"user {user!r}" if user else "an unauthenticated client"
    return ArgonError(
        UNAUTHORIZED,
        f"not authorized: {who} may not {action} on branch {branch!r} "
        "(an administrator grants roles with `argon access grant`)",
    )


class AccessControl:
    """Grants and administrators, cached from ``__argon``; decisions for users."""

    def __init__(self, db: DbClient, project_of: Callable[[str], str | None]) -> None:
        self.db = db
        self._project_of = project_of  # a branch's project (None: the default one)
        self._grants: list[Grant] = []
        self._admins: frozenset[str] = frozenset()
        self._loaded_at = -float("inf")

    async def load(self, *, force: bool = False) -> None:
        """Read grants and administrators again if the cache is older than a second."""
        if not force and trio.current_time() - self._loaded_at < _CACHE_SECONDS:
            return
        grants = await self.db.find(INTERNAL_DB, GRANTS, {})
        admins = await self.db.find(INTERNAL_DB, "users", {"admin": True}, projection={"_id": 1})
        self._grants = [
            Grant(g["user"], g["role"], g.get("branches"), g.get("project")) for g in grants
        ]
        self._admins = frozenset(str(a["_id"]) for a in admins)
        self._loaded_at = trio.current_time()

    async def is_admin(self, user: str | None) -> bool:
        await self.load()
        return user in self._admins

    async def allows(self, user: str | None, right: str, branch: str) -> bool:
        """Whether ``user`` has ``right`` (read, write, merge, admin) on ``branch``."""
        await self.load()
        if user in self._admins:
            return True
        project = self._project_of(branch)
        return any(
            g.user == user and right in _ALLOWS[g.role] and g.covers(branch, project)
            for g in self._grants
        )

    async def check(self, user: str | None, right: str, branch: str, action: str) -> None:
        """Raise 13 unless ``user`` has ``right`` on ``branch`` (``action`` names it).
        A time-travel address (``exp@lsn-5``) is judged as its branch."""
        base = branch.partition("@")[0]
        if right == ADMIN and base == "*":
            if not await self.is_admin(user):
                raise refused(user, action, "*")
            return
        if not await self.allows(user, right, base):
            raise refused(user, action, base)

    def grants_of(self, user: str | None = None) -> list[Grant]:
        return [g for g in self._grants if user is None or g.user == user]

    # -- admin actions (administrators only: see Admin) -----------------------------

    async def grant_action(self, cmd: dict[str, Any]) -> dict[str, Any]:
        grant = _grant(cmd)
        if not await self.db.find(INTERNAL_DB, "users", {"_id": grant.user}, limit=1):
            raise ArgonError(USER_NOT_FOUND, f"User {grant.user!r} not found")
        doc = grant.to_doc()
        update = {"q": doc, "u": doc, "upsert": True}
        await self.db.command(INTERNAL_DB, {"update": GRANTS, "updates": [update]})
        await self.load(force=True)
        return {"grant": doc}

    async def revoke_action(self, cmd: dict[str, Any]) -> dict[str, Any]:
        doc = _grant(cmd).to_doc()
        reply = await self.db.command(
            INTERNAL_DB, {"delete": GRANTS, "deletes": [{"q": doc, "limit": 0}]}
        )
        await self.load(force=True)
        return {"revoked": int(reply.get("n", 0))}

    async def list_action(self, cmd: dict[str, Any]) -> dict[str, Any]:
        await self.load(force=True)
        user = cmd.get("user")
        grants = sorted(
            self.grants_of(user), key=lambda g: (g.user, g.branches or "", g.project or "", g.role)
        )
        return {"grants": [g.to_doc() for g in grants], "admins": sorted(self._admins)}


def _grant(cmd: dict[str, Any]) -> Grant:
    user, role = cmd.get("user"), cmd.get("role")
    branches, project = cmd.get("branches"), cmd.get("project")
    if not isinstance(user, str) or not user:
        raise ArgonError(BAD_VALUE, "access grants need 'user' (a user name)")
    if role not in ROLES:
        raise ArgonError(BAD_VALUE, f"role must be one of {', '.join(ROLES)} (got {role!r})")
    named = [v for v in (branches, project) if v is not None]
    if len(named) != 1 or not isinstance(named[0], str) or not named[0]:
        raise ArgonError(
            BAD_VALUE,
            "access grants name either 'branches' (a branch name or pattern) or 'project' "
            "(its branches; main is every project's and is granted by name)",
        )
    return Grant(user, str(role), branches, project)
