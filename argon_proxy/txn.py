"""Running a unit of Argon's work inside one upstream transaction.

Theory of operation: a write on any branch touches several collections (the
data or an overlay, the children's overlays it freezes, the WAL), and either
all of it happens or none. ``Transaction`` holds one upstream connection and
adds ``lsid``/``txnNumber``/``autocommit`` to every command; the first carries
``startTransaction``. ``run_in_transaction`` commits at the end, aborts on
error, and retries the whole unit when mongod labels the failure
``TransientTransactionError`` (a write conflict with a concurrent writer).

When the client itself is inside a transaction, Argon's commands join it
instead (``JoinedTransaction``): they carry the client's session fields and
run on the client's pinned connection, and the client's commit or abort
decides.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

import bson
import trio

from .dbclient import CommandError, run_checked, run_on
from .errors import UpstreamIOError
from .upstream import UpstreamConnection, UpstreamPool

T = TypeVar("T")
_MAX_ATTEMPTS = 20


class Runner(Protocol):
    """Something that runs commands inside a transaction."""

    async def run(self, db: str, command: Mapping[str, Any]) -> dict[str, Any]: ...


class Transaction:
    """Argon's own transaction on a held connection."""

    def __init__(self, conn: UpstreamConnection) -> None:
        self.conn = conn
        self.lsid = {"id": bson.Binary(uuid.uuid4().bytes, 4)}
        self.txn_number = bson.Int64(1)
        self.started = False

    async def run(self, db: str, command: Mapping[str, Any]) -> dict[str, Any]:
        full = {**command, "lsid": self.lsid, "txnNumber": self.txn_number, "autocommit": False}
        if not self.started:
            full["startTransaction"] = True
            full.setdefault("readConcern", {"level": "snapshot"})
            self.started = True
        return await run_checked(self.conn, db, full)

    async def commit(self) -> None:
        if self.started:
            await run_on(
                self.conn,
                "admin",
                {
                    "commitTransaction": 1,
                    "lsid": self.lsid,
                    "txnNumber": self.txn_number,
                    "autocommit": False,
                },
            )

    async def abort(self) -> None:
        if not self.started or self.conn.broken:
            return
        with (
            trio.CancelScope(shield=True),
            contextlib.suppress(CommandError, UpstreamIOError),
        ):
            # The server aborts it anyway; a broken connection is closed by the pool.
            await run_on(
                self.conn,
                "admin",
                {
                    "abortTransaction": 1,
                    "lsid": self.lsid,
                    "txnNumber": self.txn_number,
                    "autocommit": False,
                },
            )


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


def is_transient(exc: CommandError) -> bool:
    labels = exc.reply.get("errorLabels", ())
    return "TransientTransactionError" in labels or exc.code in (112, 244, 251)


async def run_in_transaction(pool: UpstreamPool, unit: Callable[[Transaction], Awaitable[T]]) -> T:
    """Run ``unit`` in a fresh transaction, retrying it on transient conflicts."""
    for attempt in range(_MAX_ATTEMPTS):
        async with pool.checkout() as conn:
            txn = Transaction(conn)
            try:
                result = await unit(txn)
                await txn.commit()
                return result
            except CommandError as exc:
                await txn.abort()
                if is_transient(exc) and attempt + 1 < _MAX_ATTEMPTS:
                    await trio.sleep(0.001 * (attempt + 1))
                    continue
                raise
            except BaseException:
                await txn.abort()
                raise
    raise AssertionError("unreachable")
