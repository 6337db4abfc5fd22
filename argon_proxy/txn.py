"""Running a unit of Argon's work inside one upstream transaction.

Theory of operation: a write on any branch touches several collections (the
data or an overlay, the children's overlays it freezes, the WAL), and either
all of it happens or none. ``Transaction`` holds one upstream connection and
adds ``lsid``/``txnNumber``/``autocommit`` to every command; the first carries
``startTransaction``. ``run_in_transaction`` commits at the end, aborts on
error, and retries the whole unit when mongod labels the failure
``TransientTransactionError`` (a write conflict with a concurrent writer), for
a bounded time with growing pauses, as mongod retries its own write conflicts.
It runs on the connection the request holds (``dbclient.hold``), so a request
never needs a second pooled connection.

The commit carries the client's ``writeConcern``, so an acknowledged write
means what it means on mongod. Not every upstream makes a transaction's
commit journaled when asked (``j: true``); a small journaled write after it
forces the journal, which holds the commit, to disk on all of them.

Argon's own transactions use sessions whose ids derive from the proxy's
incarnation (``SessionPool``), so that a later incarnation can end the
transactions a killed one left open (see ``incarnation.py``); a session is
reused with a new ``txnNumber``, as drivers do.

When the client itself is inside a transaction, Argon's commands join it
instead (``JoinedTransaction``): they carry the client's session fields and
run on the client's pinned connection, and the client's commit or abort
decides, with the client's own write concern.
"""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import bson
import trio

from .dbclient import (
    CommandError,
    connection,
    exchange,
    failed_unless_ok,
    first_write_error,
    run_checked,
    run_on,
)
from .errors import UpstreamIOError
from .upstream import UpstreamConnection, UpstreamPool

T = TypeVar("T")
# How long a unit is retried on transient conflicts before the error is returned.
RETRY_FOR = 30.0
_FIRST_PAUSE = 0.002
_MAX_PAUSE = 0.25
_ABORT_WITHIN = 10.0  # seconds an abort may take, even when its caller is cancelled
JOURNAL_DOC = "journal"  # the __argon.counters document the journal barrier writes


class Runner(Protocol):
    """Something that runs commands inside a transaction."""

    async def run(self, db: str, command: Mapping[str, Any]) -> dict[str, Any]: ...


@dataclass
class Session:
    """One of Argon's own logical sessions and its next transaction number."""

    lsid: dict[str, Any]
    txn_number: int = 0


@dataclass
class SessionPool:
    """Argon's own sessions, with ids derived from ``incarnation``.

    ``on_new`` is awaited with the count of sessions before a new one is
    first used, so the count can be recorded where a later incarnation
    finds it.
    """

    incarnation: uuid.UUID = field(default_factory=uuid.uuid4)
    on_new: Callable[[int], Awaitable[None]] | None = None
    count: int = 0
    _free: list[Session] = field(default_factory=list)

    @staticmethod
    def lsid(incarnation: uuid.UUID, index: int) -> dict[str, Any]:
        """The id of session ``index`` of ``incarnation``."""
        return {"id": bson.Binary(uuid.uuid5(incarnation, f"argon-{index}").bytes, 4)}

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Session]:
        """A session no other transaction of this proxy uses until the block ends."""
        if self._free:
            found = self._free.pop()
        else:
            index = self.count
            self.count += 1
            if self.on_new is not None:
                await self.on_new(self.count)
            found = Session(self.lsid(self.incarnation, index))
        try:
            yield found
        finally:
            self._free.append(found)


@dataclass
class Rider:
    """A command that travels with another one of a transaction: outside it,
    behind the next command (``Transaction.ride``), or in it, in front of it
    (``Transaction.defer``); ``answered`` gets its reply, ``ok`` or not."""

    db: str
    command: Mapping[str, Any]
    answered: Callable[[dict[str, Any]], Awaitable[None]]


async def checked(reply: dict[str, Any]) -> None:
    """A deferred command's ``answered`` that raises what ``run`` would have."""
    if not reply.get("ok"):
        raise CommandError(reply)
    first_write_error(reply)


async def run_or_defer(
    runner: Runner,
    db: str,
    command: Mapping[str, Any],
    answered: Callable[[dict[str, Any]], Awaitable[None]] = checked,
) -> None:
    """Defer ``command`` where the runner is one of Argon's own transactions
    (``Transaction.defer``), else run it now; ``answered`` judges its reply."""
    if isinstance(runner, Transaction):
        runner.defer(Rider(db, command, answered))
        return
    try:
        reply = await runner.run(db, command)
    except CommandError as exc:
        reply = exc.reply
    await answered(reply)


async def run_together(
    runner: Runner, commands: Sequence[tuple[str, Mapping[str, Any]]]
) -> list[dict[str, Any]]:
    """Run ``commands`` in order and return their replies; in one of Argon's own
    transactions in one round trip (``Transaction.run_many``)."""
    if isinstance(runner, Transaction):
        return await runner.run_many(commands)
    return [await runner.run(db, command) for db, command in commands]


class Transaction:
    """Argon's own transaction on a held connection."""

    def __init__(self, conn: UpstreamConnection, session: Session | None = None) -> None:
        self.conn = conn
        if session is None:
            session = Session({"id": bson.Binary(uuid.uuid4().bytes, 4)})
        session.txn_number += 1
        self.lsid = session.lsid
        self.txn_number = bson.Int64(session.txn_number)
        self.started = False
        self._at_end: list[Callable[[], Awaitable[None]]] = []
        self._riders: list[Rider] = []
        self._ahead: list[Rider] = []

    def at_end(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` once the transaction has ended (committed, or aborted
        for sure), e.g. to release the LSNs it leased."""
        self._at_end.append(callback)

    async def ended(self) -> None:
        """Run the ``at_end`` callbacks, even when cancelled."""
        callbacks, self._at_end = self._at_end, []
        with trio.move_on_after(_ABORT_WITHIN, shield=True):
            for callback in callbacks:
                with contextlib.suppress(CommandError, UpstreamIOError):
                    await callback()

    def ride(self, *riders: Rider) -> None:
        """Send ``riders``' commands, in order and outside the transaction, right
        behind the transaction's next command on the same connection: the
        upstream runs them after that one, and they cost no round trip of their
        own. They replace any riders not sent yet."""
        self._riders = list(riders)

    def defer(self, deferred: Rider) -> None:
        """Run ``deferred``'s command in the transaction, sent with the next one
        (in front of it) or before the commit, whichever comes first: for a
        command nothing before the next one depends on. Its ``answered`` gets the
        reply, ``ok`` or not, and raises what the command should have raised;
        the earliest failure of an exchange is the one raised, as if the
        commands had run one by one (the upstream aborts a transaction at its
        first failed command, so what followed it did nothing lasting)."""
        self._ahead.append(deferred)

    async def run(self, db: str, command: Mapping[str, Any]) -> dict[str, Any]:
        (reply,) = await self._exchange([(db, command)])
        return first_write_error(failed_unless_ok(self.conn, reply))

    async def run_many(
        self, commands: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[dict[str, Any]]:
        """Run ``commands`` in one round trip; their replies, the first failure
        raised as if they had run one by one."""
        replies = await self._exchange(commands)
        return [first_write_error(failed_unless_ok(self.conn, reply)) for reply in replies]

    async def flush(self) -> None:
        """Run the deferred commands now."""
        if self._ahead:
            await self._exchange([])

    async def _exchange(
        self, commands: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[dict[str, Any]]:
        """The deferred commands, ``commands`` and the riders in one round trip;
        returns the replies of ``commands`` after the others were answered."""
        ahead, self._ahead = self._ahead, []
        riders, self._riders = self._riders, []
        batch: list[tuple[str, Mapping[str, Any]]]
        batch = [(d.db, self._in_transaction(d.command)) for d in ahead]
        batch += [(db, self._in_transaction(command)) for db, command in commands]
        batch += [(rider.db, rider.command) for rider in riders]
        replies = await exchange(self.conn, batch)
        if riders:  # first: they may have taken something to give back
            ridden, replies = replies[-len(riders) :], replies[: -len(riders)]
            for rider, reply in zip(riders, ridden, strict=True):
                await rider.answered(reply)
        for deferred, reply in zip(ahead, replies, strict=False):
            await deferred.answered(reply)
        return replies[len(ahead) :]

    def _in_transaction(self, command: Mapping[str, Any]) -> dict[str, Any]:
        full = {**command, "lsid": self.lsid, "txnNumber": self.txn_number, "autocommit": False}
        if not self.started:
            full["startTransaction"] = True
            full.setdefault("readConcern", {"level": "snapshot"})
            self.started = True
        return full

    async def commit(self, write_concern: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Commit with the client's ``write_concern``; returns mongod's reply."""
        await self.flush()
        if not self.started:
            return {"ok": 1.0}
        command: dict[str, Any] = {
            "commitTransaction": 1,
            "lsid": self.lsid,
            "txnNumber": self.txn_number,
            "autocommit": False,
        }
        if write_concern:
            command["writeConcern"] = dict(write_concern)
        return await run_on(self.conn, "admin", command)

    async def abort(self, pool: UpstreamPool | None = None) -> bool:
        """Abort it upstream, even when cancelled; returns whether it has surely
        ended (aborted, or committed before). On a broken connection (a reply
        that never came) it goes over a fresh one from ``pool``: the transaction
        belongs to the session, not the connection, and left open it would hold
        its locks (stalling other writers and DDL) until the upstream reaps it."""
        if not self.started:
            return True
        command = {
            "abortTransaction": 1,
            "lsid": self.lsid,
            "txnNumber": self.txn_number,
            "autocommit": False,
        }
        with trio.move_on_after(_ABORT_WITHIN, shield=True):
            try:
                if not self.conn.broken:
                    await run_on(self.conn, "admin", command)
                elif pool is None:
                    return False
                else:
                    async with pool.checkout() as fresh:
                        await run_on(fresh, "admin", command)
                return True
            except CommandError:
                return True  # no such transaction: it ended already
            except UpstreamIOError:
                return False
        return False


class JoinedTransaction:
    """Commands that join the client's own transaction."""

    def __init__(self, conn: UpstreamConnection, session: Mapping[str, Any]) -> None:
        self.conn = conn
        self.session = dict(session)  # lsid, txnNumber, autocommit, maybe startTransaction

    async def run(self, db: str, command: Mapping[str, Any]) -> dict[str, Any]:
        full = {**command, **self.session}
        self.session.pop("startTransaction", None)
        self.session.pop("readConcern", None)
        return await run_checked(self.conn, db, full)

    async def abort(self) -> None:
        """Abort the client's transaction upstream, as mongod does when a statement
        of it fails: its later statements and its commit then fail with
        NoSuchTransaction. Already aborted (or never started) is fine."""
        ids: dict[str, Any] = {
            k: self.session[k] for k in ("lsid", "txnNumber", "autocommit") if k in self.session
        }
        with contextlib.suppress(CommandError):
            await run_checked(self.conn, "admin", {"abortTransaction": 1, **ids})


def is_transient(exc: CommandError) -> bool:
    labels = exc.reply.get("errorLabels", ())
    return "TransientTransactionError" in labels or exc.code in (112, 244, 251)


def commit_concern(write_concern: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The part of a client's ``writeConcern`` a commit carries.

    ``w: 0`` asks for no acknowledgement, which a commit cannot skip: Argon
    commits with the default and the client hears nothing anyway.
    """
    if not write_concern:
        return None
    concern = {k: v for k, v in write_concern.items() if k in ("w", "j", "wtimeout", "fsync")}
    if concern.get("w") == 0:
        concern.pop("w")
    return concern or None


def wants_journal(write_concern: Mapping[str, Any] | None) -> bool:
    """Whether the client asked for its write to be on disk when acknowledged."""
    return bool(write_concern and (write_concern.get("j") or write_concern.get("fsync")))


@dataclass
class Receipt:
    """What the commit of a unit said beyond success (a ``writeConcernError``)."""

    write_concern_error: dict[str, Any] | None = None


class Pausable(Protocol):
    """A lock a retrying unit lets go of while it waits (``write_transactions.WriterLock``)."""

    def paused(self) -> contextlib.AbstractAsyncContextManager[None]: ...


async def run_in_transaction(
    pool: UpstreamPool,
    unit: Callable[[Transaction], Awaitable[T]],
    *,
    write_concern: Mapping[str, Any] | None = None,
    sessions: SessionPool | None = None,
    receipt: Receipt | None = None,
    lock: Pausable | None = None,
    retry_for: float = RETRY_FOR,
) -> T:
    """Run ``unit`` in a fresh transaction, retrying it on transient conflicts for
    ``retry_for`` seconds.

    ``lock`` (held by the caller) is let go of between attempts, so the
    writer that holds what conflicted can finish.
    """
    deadline = trio.current_time() + retry_for
    pause = _FIRST_PAUSE
    while True:
        try:
            return await _attempt(pool, unit, write_concern, sessions, receipt)
        except CommandError as exc:
            if not is_transient(exc) or trio.current_time() + pause > deadline:
                raise
        wait = pause * random.uniform(0.5, 1.5)  # spread out writers that collided
        if lock is None:
            await trio.sleep(wait)
        else:
            async with lock.paused():
                await trio.sleep(wait)
        pause = min(pause * 2, _MAX_PAUSE)


async def _attempt(
    pool: UpstreamPool,
    unit: Callable[[Transaction], Awaitable[T]],
    write_concern: Mapping[str, Any] | None,
    sessions: SessionPool | None,
    receipt: Receipt | None,
) -> T:
    async with connection(pool) as conn, _session(sessions) as session:
        txn = Transaction(conn, session)
        try:
            result = await unit(txn)
            reply = await txn.commit(commit_concern(write_concern))
        except BaseException as exc:
            # A commit whose reply never came may yet commit: only an abort that
            # went through says the transaction is over.
            if await txn.abort(pool) or isinstance(exc, CommandError):
                await txn.ended()
            raise
        await txn.ended()
        if receipt is not None:
            receipt.write_concern_error = reply.get("writeConcernError")
        if txn.started and wants_journal(write_concern):
            await journal_barrier(conn)
        return result


@contextlib.asynccontextmanager
async def _session(sessions: SessionPool | None) -> AsyncIterator[Session | None]:
    if sessions is None:
        yield None
        return
    async with sessions.session() as session:
        yield session


async def journal_barrier(conn: UpstreamConnection) -> None:
    """A journaled write after a commit: the journal is sequential, so once this
    is on disk the commit before it is too, whatever the upstream did with the
    commit's own ``j``."""
    await run_on(
        conn,
        "__argon",
        {
            "update": "counters",
            "updates": [{"q": {"_id": JOURNAL_DOC}, "u": {"$inc": {"value": 1}}, "upsert": True}],
            "writeConcern": {"j": True},
        },
    )
