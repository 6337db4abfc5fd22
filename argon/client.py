"""``argon.Client``: every admin action of the proxy as a typed method.

Theory of operation: the proxy does the work; the client sends one
``{"argon": "<action>", ...}`` command per call through pymongo, turns a
failure into the ``ArgonError`` subclass for its code, and the reply into a
model. Branch data is reached with ordinary pymongo objects: ``connect``
returns a database on a ``MongoClient`` whose appName is ``argon:<branch>``,
so every operation on it goes to that branch. One such MongoClient per branch
is kept (they pool connections) until ``close``.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Collection, Mapping
from types import TracebackType
from typing import Any, Literal, Self

from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, OperationFailure

from . import addressing
from .access import Access
from .branches import Branches
from .errors import (
    ArgonError,
    BadValue,
    BranchNotFound,
    CommandNotFound,
    from_operation_failure,
    proxy_unreachable,
)
from .merges import Merges
from .models import (
    Blame,
    Diff,
    GcResult,
    LogEntry,
    MergeGranularity,
    ResetResult,
    Status,
    TimeTravelRange,
    UndoResult,
)
from .projects import Projects
from .tags import Snapshots, Tags
from .users import Users

Document = dict[str, Any]
DEFAULT_TIMEOUT_MS = 10_000
DEFAULT_DB = "test"  # what mongosh and drivers use when the URI names no database


class Client:
    """A connection to an Argon proxy.

    ``uri`` is the proxy's connection string (default: ``$ARGON_MONGODB_URI``,
    else ``mongodb://127.0.0.1:27018``). ``timeout_ms`` bounds how long a call
    waits for the proxy to answer at all (server selection). Datetimes in
    replies are naive UTC unless ``tz_aware``. Use as a context manager, or
    call ``close``.
    """

    def __init__(
        self,
        uri: str | None = None,
        *,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        tz_aware: bool = False,
    ) -> None:
        self.uri = addressing.resolve_uri(uri)
        self._options: dict[str, Any] = {
            "serverSelectionTimeoutMS": timeout_ms,
            "tz_aware": tz_aware,
            "connect": False,  # no background connection until the first call
        }
        self._admin: MongoClient[Document] = MongoClient(self.uri, **self._options)
        self._branch_clients: dict[str, MongoClient[Document]] = {}
        self._lock = threading.Lock()
        self.branches = Branches(self)
        self.tags = Tags(self)
        self.snapshots = Snapshots(self)
        self.merges = Merges(self)
        self.projects = Projects(self)
        self.users = Users(self)
        self.access = Access(self)

    # -- plumbing ---------------------------------------------------------

    def command(
        self,
        action: str,
        args: Mapping[str, Any] | None = None,
        *,
        keep_none: Collection[str] = (),
    ) -> Document:
        """Send the admin action ``action`` with ``args``.

        ``None`` values mean "not given" and are left out, except for the keys
        in ``keep_none``, which are sent as null. This is what every method
        uses; call it for an action the SDK does not wrap. Raises the
        ``ArgonError`` subclass for the failure's code, or ``ProxyUnreachable``
        if no proxy answers.
        """
        cmd: Document = {"argon": action}
        cmd.update({k: v for k, v in (args or {}).items() if v is not None or k in keep_none})
        try:
            return self._admin.admin.command(cmd)
        except OperationFailure as exc:
            raise from_operation_failure(exc) from None
        except ConnectionFailure as exc:
            raise proxy_unreachable(addressing.redact(self.uri), exc) from None

    def result(
        self,
        action: str,
        key: str,
        args: Mapping[str, Any] | None = None,
        *,
        keep_none: Collection[str] = (),
    ) -> Any:
        """The ``key`` field of the reply to ``action`` (see ``command``).

        A reply without it means the proxy and the SDK follow different
        versions of the contract: that is an ``ArgonError`` saying so, not a
        ``KeyError``.
        """
        reply = self.command(action, args, keep_none=keep_none)
        if key not in reply:
            raise ArgonError(
                0,
                "UnexpectedReply",
                f"the proxy's reply to {action} has no {key!r} field (it has: "
                f"{', '.join(k for k in reply if k != 'ok')}); proxy and SDK disagree on the "
                "admin-command contract",
                reply,
            )
        return reply[key]

    @property
    def default_database(self) -> str:
        """The database ``connect`` uses without ``db``: the URI's, else ``test``."""
        return self._admin.get_default_database(DEFAULT_DB).name

    def mongo_client(self, branch: str) -> MongoClient[Document]:
        """The (cached) MongoClient whose every operation goes to ``branch``."""
        with self._lock:
            found = self._branch_clients.get(branch)
            if found is None:
                uri = addressing.with_options(self.uri, app=addressing.app_name(branch))
                found = MongoClient(uri, **self._options)
                self._branch_clients[branch] = found
            return found

    def connect(self, branch: str, db: str | None = None) -> Database[Document]:
        """Database ``db`` (default: ``default_database``) on ``branch``.

        Reads and writes through it go to the branch; other branches, main
        included, do not see its writes. Nothing is sent until it is used: an
        unknown branch fails at the first operation with code 2001.
        """
        return self.mongo_client(branch)[db or self.default_database]

    def uri_for(self, ref: str, db: str | None = None) -> str:
        """A connection string that reads ``ref``: a branch, a tag or ``branch@point``.

        A branch is selected with ``appName=argon:<branch>`` (and ``db``, if
        given, becomes the URI's default database). Tags and points in time
        (``main@lsn-12``, ``main@2026-11-23T06:00:00Z``) are read-only and are
        only addressable per database, ``db@ref``, so they need ``db``.
        """
        name, point = addressing.split_ref(ref)
        if point is None and self._is_branch(name):
            return addressing.with_options(self.uri, database=db, app=addressing.app_name(name))
        if point is None:
            self._require_tag(name)
        if not db:
            what = "a point in time" if point else "a tag"
            raise BadValue(
                2,
                "BadValue",
                f"{ref!r} is {what}: it is read through the database name db@ref, "
                "so give the database (db=..., or --db on the command line)",
            )
        return addressing.with_options(self.uri, database=addressing.db_name(db, ref))

    def _is_branch(self, name: str) -> bool:
        try:
            self.branches.get(name)
        except BranchNotFound:
            return False
        return True

    def _require_tag(self, name: str) -> None:
        """Raise ``BranchNotFound`` unless ``name`` is a tag."""
        try:
            tags = self.tags.list()
        except CommandNotFound:
            tags = []  # a proxy without tags: the name is simply unknown
        if not any(t.name == name for t in tags):
            raise BranchNotFound(
                2001,
                "BranchNotFound",
                f"no branch or tag named {name!r}; list them with `argon branch list` "
                "and `argon tag list`",
            )

    def close(self) -> None:
        """Close the admin connection and every branch connection ``connect`` opened."""
        with self._lock:
            clients, self._branch_clients = list(self._branch_clients.values()), {}
        for c in clients:
            c.close()
        self._admin.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- actions ----------------------------------------------------------

    def status(self) -> Status:
        """The proxy's version, default branch, number of branches, LSN and upstream."""
        return Status.from_doc(self.command("status"))

    def time_travel_info(
        self, branch: str | None = None, project: str | None = None
    ) -> list[TimeTravelRange]:
        """How far back each branch (or just ``branch``; or ``project``'s) can be read."""
        reply = self.command("timeTravelInfo", {"name": branch, "project": project})
        return [TimeTravelRange.from_doc(d) for d in reply.get("branches", [])]

    def diff(
        self,
        from_ref: str,
        to_ref: str,
        db: str | None = None,
        collection: str | None = None,
        limit: int = 100,
    ) -> Diff:
        """How the data at ``to_ref`` differs from ``from_ref`` (documents listed up to
        ``limit`` per collection); restrict it to ``db`` and ``collection``."""
        args = {"from": from_ref, "to": to_ref, "db": db, "collection": collection}
        return Diff.from_doc(self.result("diff", "diff", {**args, "limit": limit}))

    def set_merge_granularity(
        self, db: str, collection: str, granularity: Literal["field", "document"]
    ) -> MergeGranularity:
        """Compare ``db.collection`` field by field (default) or as whole documents."""
        args = {"db": db, "collection": collection, "granularity": granularity}
        return MergeGranularity.from_doc(self.command("setMergeGranularity", args))

    def reset(
        self,
        branch: str,
        *,
        lsn: int | None = None,
        time: dt.datetime | None = None,
        tag: str | None = None,
        dry_run: bool = False,
    ) -> ResetResult:
        """Move ``branch`` back to one of ``lsn``, ``time`` or ``tag``.

        With ``dry_run`` nothing changes and the result says what would be
        discarded. The reset itself is logged, so it can be undone.
        """
        if sum(x is not None for x in (lsn, time, tag)) != 1:
            raise BadValue(2, "BadValue", "reset needs exactly one of lsn, time or tag")
        args = {"name": branch, "lsn": lsn, "time": time, "tag": tag, "dryRun": dry_run}
        return ResetResult.from_doc(self.result("resetBranch", "reset", args))

    def log(
        self,
        branch: str | None = None,
        *,
        db: str | None = None,
        collection: str | None = None,
        doc_id: Any = None,
        since_lsn: int | None = None,
        until_lsn: int | None = None,
        user: str | None = None,
        limit: int = 100,
    ) -> list[LogEntry]:
        """The changes on ``branch`` (default: the proxy's default branch), newest first.

        Narrow them to ``db``, ``db`` and ``collection``, or one document
        (``doc_id``, which needs ``db`` and ``collection``), to an LSN range, and
        to the changes of one authenticated ``user``.
        """
        args = {
            "branch": branch,
            "db": db,
            "collection": collection,
            "docId": doc_id,
            "sinceLsn": since_lsn,
            "untilLsn": until_lsn,
            "user": user,
            "limit": limit,
        }
        return [LogEntry.from_doc(d) for d in self.command("log", args).get("entries", [])]

    def blame(self, branch: str, db: str, collection: str, doc_id: Any) -> Blame:
        """Which change last set each field of one document on ``branch``."""
        args = {"branch": branch, "db": db, "collection": collection, "docId": doc_id}
        return Blame.from_doc(self.command("blame", args))

    def undo(
        self,
        branch: str,
        from_lsn: int,
        to_lsn: int,
        *,
        app_name: str | None = None,
        user: str | None = None,
        dry_run: bool = False,
    ) -> UndoResult:
        """Revert the changes ``from_lsn``..``to_lsn`` on ``branch`` (only those written
        by ``app_name``, or by ``user``, if given). Documents changed since are
        refused, not overwritten."""
        args = {
            "branch": branch,
            "fromLsn": from_lsn,
            "toLsn": to_lsn,
            "client": app_name,
            "user": user,
            "dryRun": dry_run,
        }
        return UndoResult.from_doc(self.result("undo", "undo", args))

    def gc(self, dry_run: bool = False) -> GcResult:
        """Remove WAL entries past retention, unused snapshots and expired branches."""
        return GcResult.from_doc(self.result("gc", "gc", {"dryRun": dry_run}))


__all__ = ["ArgonError", "Client"]
