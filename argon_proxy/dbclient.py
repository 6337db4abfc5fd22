"""Argon's own commands to the upstream, over the same pool as client traffic.

Theory of operation: the branch engine and the admin commands need to run
commands of their own (metadata, WAL, overlays). They go through
``UpstreamPool`` as OP_MSG with documents encoded and decoded by pymongo's
``bson``, one connection per command, or on a caller-held connection when
several commands must share one (a transaction). A reply with ``ok: 0`` is
raised as ``CommandError`` carrying mongod's code, so callers can forward it
to the client unchanged. A write command's reply can be ``ok: 1`` and still
carry ``writeErrors`` (a duplicate key, a validation failure): ``command``
raises the first of them too, so no caller can take a failed write for done.
A lost connection raises ``UpstreamIOError`` (see ``upstream.py``); a command
that never left is sent once more on another connection.

No request may need two pooled connections at once: with every slot held by
a request waiting for a second one, nothing moves again. So a request takes
its connection first (``hold``), before any lock, and every command Argon
runs for it, its transactions included, reuses that connection
(``connection``). A connection serves one exchange at a time, and a task
runs one command at a time, so sharing it within the task is safe; another
task (even one started from this one) never sees it. A held connection that
fails is not replaced (that would need a second slot): the request fails.

A request may also put a check in front of its next exchange (``Front``): a
small read that travels with the first command the request sends, so that
confirming what a cache holds costs no round trip of its own. The check is
judged before any reply of that exchange is used; ``settle`` runs it alone if
the request sent nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import bson
import trio
from bson.codec_options import CodecOptions

import wire

from . import metrics
from .clustertime import CLOCK
from .errors import ArgonError, UpstreamIOError
from .upstream import UpstreamConnection, UpstreamPool

CODEC: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True)
_request_ids = itertools.count(1 << 30)
# The connection the running task holds for its whole request, with that task.
_HELD: ContextVar[tuple[trio.lowlevel.Task, UpstreamConnection] | None] = ContextVar(
    "argon_held_connection", default=None
)


@dataclass(eq=False, slots=True)
class Front:
    """A read sent in front of the request's next exchange; ``judge`` sees its
    reply (``ok`` already checked) first and raises if what the request relies on
    moved. ``sent`` once it has left."""

    db: str
    command: Mapping[str, Any]
    judge: Callable[[dict[str, Any]], None]
    sent: bool = False


# The check waiting for the running task's next exchange on its held connection.
_FRONT: ContextVar[tuple[trio.lowlevel.Task, Front] | None] = ContextVar(
    "argon_front", default=None
)


@contextmanager
def in_front(front: Front) -> Iterator[Front]:
    """Send ``front`` with the first exchange the task makes on its held
    connection within the block (see ``settle`` for a block that made none)."""
    token = _FRONT.set((trio.lowlevel.current_task(), front))
    try:
        yield front
    finally:
        _FRONT.reset(token)


def _front_for(conn: UpstreamConnection) -> Front | None:
    """The task's unsent check, if ``conn`` is the connection the task holds."""
    front = _FRONT.get()
    if front is None or front[0] is not trio.lowlevel.current_task() or front[1].sent:
        return None
    return front[1] if _held() is conn else None


def _held() -> UpstreamConnection | None:
    held = _HELD.get()
    if held is None or held[0] is not trio.lowlevel.current_task():
        return None  # a task started by the holder inherits the variable, not the connection
    return held[1]


@asynccontextmanager
async def hold(
    pool: UpstreamPool, pinned: UpstreamConnection | None = None
) -> AsyncIterator[UpstreamConnection]:
    """Give the current task one connection for everything it runs in the block.

    ``pinned`` is a connection the task already owns (a client transaction's);
    otherwise one is checked out. Nested holds reuse the outer one.
    """
    held = _held()
    if held is not None:
        yield held
        return
    if pinned is not None:
        token = _HELD.set((trio.lowlevel.current_task(), pinned))
        try:
            yield pinned
        finally:
            _HELD.reset(token)
        return
    async with pool.checkout() as conn:
        token = _HELD.set((trio.lowlevel.current_task(), conn))
        try:
            yield conn
        finally:
            _HELD.reset(token)


@asynccontextmanager
async def connection(pool: UpstreamPool) -> AsyncIterator[UpstreamConnection]:
    """The task's held connection, else one checked out for this use alone."""
    held = _held()
    if held is None:
        async with pool.checkout() as conn:
            yield conn
        return
    if held.broken:
        # Checking out another would need a second slot; the request fails instead.
        raise UpstreamIOError("the upstream connection of this request was lost", unsent=False)
    yield held


# The failures that say the host is no longer the writable primary (the drivers'
# "not writable primary" and "node is recovering" errors).
NOT_PRIMARY_CODES = frozenset({10107, 13435, 13436, 11600, 11602, 189, 91})

# What mongod may put beside a failure's code and errmsg, kept wherever Argon
# passes an upstream failure on (``ArgonError.details``).
ERROR_DETAILS = ("keyPattern", "keyValue")


class CommandError(ArgonError):
    """An upstream command failed; ``reply`` is mongod's whole answer."""

    def __init__(self, reply: Mapping[str, Any]) -> None:
        super().__init__(
            int(reply.get("code", 8)),
            str(reply.get("errmsg", "command failed")),
            info=reply.get("errInfo"),
            details={k: reply[k] for k in ERROR_DETAILS if k in reply},
        )
        self.reply = dict(reply)
        self._code_name = str(reply.get("codeName", "UnknownError"))

    @property
    def code_name(self) -> str:
        return self._code_name

    def to_document(self) -> dict[str, Any]:
        return self.reply


async def run_on(conn: UpstreamConnection, db: str, command: Mapping[str, Any]) -> dict[str, Any]:
    """Run one command on a held connection; raise ``CommandError`` on ``ok: 0``."""
    (reply,) = await exchange(conn, [(db, command)])
    return failed_unless_ok(conn, reply)


async def exchange(
    conn: UpstreamConnection, commands: Sequence[tuple[str, Mapping[str, Any]]]
) -> list[dict[str, Any]]:
    """Send ``commands`` back to back on ``conn`` and read their replies, ``ok`` or
    not, in order: one round trip for them all. The upstream runs a connection's
    requests one after another (mongod does), so each runs after the one before
    it has finished. The task's ``Front``, if one waits, goes first and is
    judged before the replies are returned."""
    front = _front_for(conn)
    if front is not None:
        front.sent = True
        commands = [(front.db, front.command), *commands]
    data = bytearray()
    for db, command in commands:
        body = bson.encode({**command, "$db": db}, codec_options=CODEC)
        data += wire.encode_op_msg(wire.OpMsg(flags=0, body=body), next(_request_ids))
    await conn.send(data)
    metrics.UPSTREAM_ROUND_TRIPS.labels("request" if _held() is conn else "background").inc()
    replies = []
    for _db, command in commands:
        frame = await conn.receive_frame(wait=_may_wait(command))
        reply: dict[str, Any] = bson.decode(
            wire.decode_op_msg(frame.payload, full_message=frame.data).body, codec_options=CODEC
        )
        CLOCK.note(reply)
        replies.append(reply)
    if front is not None:
        front.judge(failed_unless_ok(conn, replies.pop(0)))
    return replies


def _may_wait(command: Mapping[str, Any]) -> float:
    """How long ``command`` may take on the upstream by design (its ``maxTimeMS``)."""
    wait = command.get("maxTimeMS")
    return wait / 1000.0 if isinstance(wait, int | float) and wait > 0 else 0.0


def failed_unless_ok(conn: UpstreamConnection, reply: dict[str, Any]) -> dict[str, Any]:
    """``reply``, or ``CommandError`` if it says ``ok: 0``."""
    if not reply.get("ok"):
        if reply.get("code") in NOT_PRIMARY_CODES:
            conn.not_primary = conn.broken = True  # the pool looks for the primary again
        raise CommandError(reply)
    return reply


def first_write_error(reply: dict[str, Any]) -> dict[str, Any]:
    """``reply`` of a write command, or its first write error raised as ``CommandError``."""
    errors = reply.get("writeErrors")
    if errors:
        first = errors[0]
        raise CommandError(
            {
                "ok": 0,
                "code": first.get("code", 2),
                "errmsg": first.get("errmsg", "write failed"),
                "codeName": first.get("codeName", "WriteError"),
                "errorLabels": reply.get("errorLabels", []),
                **{k: first[k] for k in (*ERROR_DETAILS, "errInfo") if k in first},
            }
        )
    return reply


async def run_checked(
    conn: UpstreamConnection, db: str, command: Mapping[str, Any]
) -> dict[str, Any]:
    """``run_on`` that also raises the first write error of a write command."""
    return first_write_error(await run_on(conn, db, command))


class DbClient:
    """Commands and cursors against the upstream."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool

    async def command(self, db: str, command: Mapping[str, Any]) -> dict[str, Any]:
        """Run ``command``; raise ``CommandError`` on ``ok: 0`` or on a write error."""
        try:
            async with connection(self.pool) as conn:
                return await run_checked(conn, db, command)
        except UpstreamIOError as exc:
            if not exc.unsent or _held() is not None:
                raise
        async with self.pool.checkout() as conn:
            return await run_checked(conn, db, command)

    async def settle(self, front: Front) -> None:
        """Run ``front`` on its own if no exchange has carried it yet."""
        if not front.sent:
            front.sent = True
            front.judge(await self.command(front.db, front.command))

    async def reply(self, db: str, command: Mapping[str, Any]) -> dict[str, Any]:
        """mongod's whole reply to write command ``command``, write errors included
        (``CommandError`` only on ``ok: 0``); never sent twice."""
        async with connection(self.pool) as conn:
            return await run_on(conn, db, command)

    async def run(self, db: str, command: Mapping[str, Any]) -> dict[str, Any]:
        """``command`` outside any transaction (so a ``DbClient`` is a ``txn.Runner``)."""
        return await self.command(db, command)

    async def insert_new(
        self, db: str, coll: str, doc: Mapping[str, Any], exists: Exception
    ) -> None:
        """Insert ``doc``; raise ``exists`` if its ``_id`` is taken (mongod decides)."""
        try:
            await self.command(db, {"insert": coll, "documents": [doc]})
        except CommandError as exc:
            if exc.code == 11000:
                raise exists from None
            raise

    async def cursor(
        self, db: str, command: Mapping[str, Any], *, batch_size: int = 1000
    ) -> AsyncIterator[dict[str, Any]]:
        """Every document of a ``find`` / ``aggregate`` / ``list*`` command's cursor."""
        reply = await self.command(db, command)
        cursor = reply["cursor"]
        for doc in cursor.get("firstBatch", ()):
            yield doc
        cursor_id = cursor.get("id", 0)
        coll = cursor["ns"].split(".", 1)[1]
        try:
            while cursor_id:
                reply = await self.command(
                    db, {"getMore": cursor_id, "collection": coll, "batchSize": batch_size}
                )
                cursor = reply["cursor"]
                for doc in cursor.get("nextBatch", ()):
                    yield doc
                cursor_id = cursor.get("id", 0)
        finally:
            if cursor_id:
                await self.command(db, {"killCursors": coll, "cursors": [cursor_id]})

    async def find_cursor(self, db: str, command: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [doc async for doc in self.cursor(db, command)]

    async def find(
        self, db: str, coll: str, filter: Mapping[str, Any] | None = None, **options: Any
    ) -> list[dict[str, Any]]:
        command = {"find": coll, "filter": dict(filter or {}), **options}
        return [doc async for doc in self.cursor(db, command)]
