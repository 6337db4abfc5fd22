"""What every write statement works with: where it goes, what it did, how it fails.

Theory of operation: a write command is cut into statements, and each runs
with a ``WriteContext`` (the branch, namespace and client, the client's
transaction or retry identity, and the command's own options, which ride on
every command that finds or changes the user's documents and never on Argon's
bookkeeping). What a statement does inside its transaction is a ``Body``; it
fills in an ``Outcome``: the counts for the reply, one ``Change`` per document
it changed (for the WAL and the children's freezes), and what the overlays'
id caches must learn once it commits.

A statement fails either as mongod reports a write error (``StatementError``,
reported at its index in ``writeErrors``) or as a whole command; a batch that
cannot run as one statement says so (``NeedsStatements``) and its caller runs
it statement by statement. Commands Argon sends are cut into ``chunks`` that
stay well within what one command may hold.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import bson
from bson import ObjectId, json_util

from . import wal
from .catalog import Branch, Overlay, protected, read_only
from .dbclient import ERROR_DETAILS
from .errors import ArgonError
from .txn import Runner
from .view import View

DUPLICATE_KEY = 11000
STALE_ATTEMPTS = 10  # starts of one statement when other proxies keep changing its overlays
_CHUNK_BYTES = 8 * 1024 * 1024  # well under the 16 MB a command document may hold
_CHUNK_COUNT = 1000


# Fields of a write command that Argon acts on itself (sessions, transactions,
# concerns, routing) or that hold its statements. Every other field is an option
# of the user's statements (let, comment, bypassDocumentValidation, maxTimeMS,
# and whatever later servers add) and is forwarded with them: ``WriteContext.options``.
ENVELOPE = frozenset(
    {
        "$db",
        "lsid",
        "$clusterTime",
        "txnNumber",
        "autocommit",
        "startTransaction",
        "readConcern",
        "writeConcern",
        "$readPreference",
        "apiVersion",
        "apiStrict",
        "apiDeprecationErrors",
        "$audit",
        "ordered",
        "documents",
        "updates",
        "deletes",
    }
)


def write_options(name: str, cmd: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of write command ``cmd`` that Argon forwards with its statements."""
    return {k: v for k, v in cmd.items() if k != name and k not in ENVELOPE}


def chunks(items: list[Any], size_of: Any = None) -> list[list[Any]]:
    """``items`` cut into commands of at most 1,000 and about 8 MB each."""
    out: list[list[Any]] = [[]]
    used = 0
    for item in items:
        size = len(bson.encode(size_of(item) if size_of else item))
        if out[-1] and (len(out[-1]) >= _CHUNK_COUNT or used + size > _CHUNK_BYTES):
            out.append([])
            used = 0
        out[-1].append(item)
        used += size
    return [c for c in out if c]


@dataclass
class Applied:
    """Whether any statement of a command changed something: it wrote WAL entries
    (whose LSNs came with the catalog's epoch, so it saw the branch as stored) or
    answered an earlier attempt's record. Shared by the contexts of one command."""

    any: bool = False
    # The caches the statements rest on are known to be current: a sync before
    # the command, or one of its transactions, confirmed them. Until then a
    # transaction that finds them stale starts the whole command again
    # (``CacheMoved``): checks made before its statements rested on them too.
    current: bool = True


@dataclass
class WriteContext:
    """Everything a write needs to know about where it goes and who makes it."""

    branch: Branch
    db: str
    coll: str
    client: wal.ClientIdentity
    joined: Runner | None = None  # the client's transaction, which Argon's commands join
    retry: dict[str, Any] | None = None  # lsid and txnNumber of a retryable write
    statement: int | str = 0  # the statement being run, for retryable writes ("all": batch)
    extra: dict[str, Any] | None = None  # fields added to every WAL entry (a merge's id)
    write_concern: dict[str, Any] | None = None  # the client's, for the commit
    # The command's own fields that shape its statements (let, comment,
    # bypassDocumentValidation, maxTimeMS, ...): they ride on every command that
    # finds or changes the user's documents, never on Argon's bookkeeping.
    options: dict[str, Any] = field(default_factory=dict)
    applied: Applied = field(default_factory=Applied)

    def data_command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """``cmd`` (a write of the user's documents) with the command's options."""
        return {**cmd, **self.options}

    @property
    def let(self) -> Any:
        """The command's ``let`` variables, which its filters may use."""
        return self.options.get("let")

    @property
    def ns(self) -> str:
        return f"{self.db}.{self.coll}"


@dataclass
class Change:
    """One document changed by a statement."""

    doc_id: Any
    op: str
    pre: dict[str, Any] | None
    post: dict[str, Any] | None
    replace: bool = False  # an update that wrote a whole new document
    hints: Any = None  # what a change event needs to know of the update (update_description)


@dataclass
class Outcome:
    """What a statement did, for the reply and for the caches."""

    matched: int = 0
    modified: int = 0
    upserted: Any = None
    did_upsert: bool = False  # ``upserted`` alone cannot say: an upsert may insert _id null
    changes: list[Change] = field(default_factory=list)
    reply_value: Any = None  # findAndModify's value
    cache: list[tuple[Overlay, list[Any], bool]] = field(default_factory=list)
    bumped: list[Overlay] = field(default_factory=list)  # overlays whose version it raised
    lsns: list[int] = field(default_factory=list)  # the WAL entries written
    write_concern_error: dict[str, Any] | None = None  # what the commit said of it
    # Changes whose post-image a group of statements reads once, at its end
    # (``statement_groups.settle_posts``); until then their ``post`` is None.
    deferred: list[Change] = field(default_factory=list)


# What one statement does inside its transaction: given the runner, the branch's
# view, its overlay (None on main) and the outcome to fill in.
Body = Callable[[Runner, View, Overlay | None, Outcome], Awaitable[None]]


class StatementError(ArgonError):
    """A write statement failed the way mongod reports as a write error."""


class StaleTransaction(ArgonError):
    """A statement of an enclosing transaction found the catalog changed under it."""


class NeedsStatements(Exception):
    """A batch cannot run as one statement; run it statement by statement, from
    ``done`` on (the statements before it were applied)."""

    def __init__(self, done: int = 0) -> None:
        super().__init__(f"{done} applied")
        self.done = done


class GroupFallback(Exception):
    """A group of statements cannot commit together: run them one by one."""


def duplicate_key(
    ns: str,
    doc_id: Any,
    index: str = "_id_",
    key: dict[str, Any] | None = None,
    pattern: dict[str, Any] | None = None,
) -> StatementError:
    """mongod's E11000 for ``key`` (by default the ``_id``) in ``index``, whose key
    pattern is ``pattern``; with mongod's ``keyPattern`` and ``keyValue``."""
    fields = key if key is not None else {"_id": doc_id}
    shown = ", ".join(f"{path}: {_show(value)}" for path, value in fields.items())
    return StatementError(
        DUPLICATE_KEY,
        f"E11000 duplicate key error collection: {ns} index: {index} dup key: {{ {shown} }}",
        details={
            "keyPattern": pattern if pattern is not None else {path: 1 for path in fields},
            "keyValue": fields,
        },
    )


def _show(value: Any) -> str:
    """A value as mongod prints it in duplicate key messages."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, ObjectId):
        return f"ObjectId('{value}')"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json_util.dumps(value)


def raise_write_errors(reply: Mapping[str, Any]) -> None:
    """Raise the first write error of an upstream reply as the statement's own."""
    errors = reply.get("writeErrors")
    if errors:
        first = errors[0]
        raise StatementError(
            int(first.get("code", 2)),
            str(first.get("errmsg", "")),
            info=first.get("errInfo"),
            details={k: first[k] for k in ERROR_DETAILS if k in first},
        )


def same_doc(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    if a is None or b is None:
        return a is b
    return bson.encode(a) == bson.encode(b)


def is_replacement(update: Any) -> bool:
    """Whether an update's ``u`` (or findAndModify's ``update``) is a whole new
    document rather than update operators or a pipeline."""
    return isinstance(update, Mapping) and not any(str(k).startswith("$") for k in update)


def still_writable(ctx: WriteContext, what: str = "") -> None:
    """Refuse the write if the branch, as now stored, takes no direct writes: the
    request was let in on this proxy's caches, and another proxy may have
    protected or archived the branch since (a merge may still write into a
    protected branch: that is how it changes)."""
    if ctx.extra is not None and "merge" in ctx.extra:
        return
    takes_writes(ctx.branch, what or f"write on {ctx.ns}")


def takes_writes(branch: Branch, what: str) -> None:
    """Refuse ``what`` unless ``branch`` takes direct writes (not read-only, not
    protected)."""
    if branch.read_only:
        raise read_only(branch, what)
    if branch.protected:
        raise protected(branch, what)
