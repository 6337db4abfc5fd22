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
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping
from typing import Any

import bson
from bson.codec_options import CodecOptions

import wire

from .errors import ArgonError, UpstreamIOError
from .upstream import UpstreamConnection, UpstreamPool

CODEC: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True)
_request_ids = itertools.count(1 << 30)


class CommandError(ArgonError):
    """An upstream command failed; ``reply`` is mongod's whole answer."""

    def __init__(self, reply: Mapping[str, Any]) -> None:
        super().__init__(int(reply.get("code", 8)), str(reply.get("errmsg", "command failed")))
        self.reply = dict(reply)
        self._code_name = str(reply.get("codeName", "UnknownError"))

    @property
    def code_name(self) -> str:
        return self._code_name

    def to_document(self) -> dict[str, Any]:
        return self.reply


async def run_on(conn: UpstreamConnection, db: str, command: Mapping[str, Any]) -> dict[str, Any]:
    """Run one command on a held connection; raise ``CommandError`` on ``ok: 0``."""
    body = bson.encode({**command, "$db": db}, codec_options=CODEC)
    await conn.send(wire.encode_op_msg(wire.OpMsg(flags=0, body=body), next(_request_ids)))
    wait = command.get("maxTimeMS")
    seconds = wait / 1000.0 if isinstance(wait, int | float) and wait > 0 else 0.0
    frame = await conn.receive_frame(wait=seconds)
    reply: dict[str, Any] = bson.decode(
        wire.decode_op_msg(frame.payload, full_message=frame.data).body, codec_options=CODEC
    )
    if not reply.get("ok"):
        raise CommandError(reply)
    return reply


async def run_checked(
    conn: UpstreamConnection, db: str, command: Mapping[str, Any]
) -> dict[str, Any]:
    """``run_on`` that also raises the first write error of a write command."""
    reply = await run_on(conn, db, command)
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
            }
        )
    return reply


class DbClient:
    """Commands and cursors against the upstream."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool

    async def command(self, db: str, command: Mapping[str, Any]) -> dict[str, Any]:
        """Run ``command``; raise ``CommandError`` on ``ok: 0`` or on a write error."""
        try:
            async with self.pool.checkout() as conn:
                return await run_checked(conn, db, command)
        except UpstreamIOError as exc:
            if not exc.unsent:
                raise
        async with self.pool.checkout() as conn:
            return await run_checked(conn, db, command)

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
