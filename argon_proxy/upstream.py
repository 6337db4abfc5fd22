"""Connections to the upstream mongod and the bounded pool that shares them.

Theory of operation: a client request checks one upstream connection out of
the pool, writes the request, reads the reply (several, for exhaust cursors),
and checks it back in. mongod's cursors and sessions are server-wide, so any
connection serves any request; only transactions are pinned by the caller.

A connection that saw an I/O error, a timeout or a cancellation mid-exchange
may have unread replies queued: it is closed, never returned. Nothing is
opened ahead of need, so when the upstream comes back after an outage the next
checkout simply connects again; the outage itself is reported promptly as
``UpstreamUnavailable`` instead of waiting on the driver's timeouts.

Every exchange is bounded: a reply must start and finish within
``reply_timeout`` plus the time the command itself may legitimately wait
(its ``maxTimeMS``: a getMore on an awaitData cursor or a change stream waits
that long by design). A failure mid-exchange (closed, reset, timed out) is
raised as ``UpstreamIOError``, which says whether any of the request left:
one that never did may be retried on another connection.

The upstream closes connections that stay idle (mongod and SecantusDB after a
few minutes), and a restarted upstream leaves every pooled socket dead. An
idle connection is therefore checked before reuse: one the peer has closed is
discarded without sending anything, and one idle longer than
``HEALTH_CHECK_IDLE`` must answer a ``ping`` first.
"""

from __future__ import annotations

import itertools
import logging
import math
import select
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import bson
import trio

from wire import Frame, Framer, OpMsg, decode_op_msg, encode_op_msg

from . import __version__, metrics
from .errors import UpstreamIOError, UpstreamUnavailable
from .hello import UpstreamFacts
from .upstream_target import Address, UpstreamTarget

log = logging.getLogger("argon.upstream")

_READ_SIZE = 256 * 1024
# An idle connection older than this answers a ping before it is reused (seconds).
HEALTH_CHECK_IDLE = 60.0


def _io_error(exc: BaseException, what: str, *, unsent: bool) -> UpstreamIOError:
    if isinstance(exc, trio.TooSlowError):
        return UpstreamIOError(
            f"{what} took longer than upstream_timeout", timed_out=True, unsent=unsent
        )
    return UpstreamIOError(f"{what} failed: {exc or type(exc).__name__}", unsent=unsent)


_IO_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError, trio.TooSlowError)


class UpstreamConnection:
    """One socket to the upstream with its own framer."""

    _ids = itertools.count(1)

    def __init__(
        self,
        stream: trio.abc.Stream,
        address: Address,
        reply_timeout: float = 0.0,
        *,
        transport: trio.SocketStream | None = None,
    ) -> None:
        self.id = next(self._ids)
        self.stream = stream
        # The TCP stream under any TLS, whose socket tells whether the peer closed it.
        self.transport = transport if transport is not None else stream
        self.address = address
        self.framer = Framer()
        self.reply_timeout = reply_timeout  # 0: unbounded
        self.broken = False
        # A reply said its host is no longer the writable primary (dbclient.run_on).
        self.not_primary = False
        self.idle_since = 0.0
        self._closed = False
        metrics.POOL_OPEN.inc()

    def _timeout(self, wait: float) -> float:
        return self.reply_timeout + wait if self.reply_timeout > 0 else math.inf

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Write one request; a frozen upstream cannot hold the writer past the timeout."""
        try:
            with trio.fail_after(self._timeout(0.0)):
                await self.stream.send_all(data)
        except _IO_ERRORS as exc:
            self.broken = True
            raise _io_error(exc, "sending the request", unsent=True) from exc
        except BaseException:
            self.broken = True
            raise

    async def receive_frame(self, *, wait: float = 0.0) -> Frame:
        """The next whole message from the upstream.

        ``wait`` is how long the command may legitimately take on the upstream
        (its ``maxTimeMS``), on top of the connection's ``reply_timeout``.
        """
        try:
            with trio.fail_after(self._timeout(wait)):
                while True:
                    frame = self.framer.next_frame()
                    if frame is not None:
                        return frame
                    data = await self.stream.receive_some(_READ_SIZE)
                    if not data:
                        raise trio.BrokenResourceError("upstream closed the connection")
                    self.framer.feed(data)
        except _IO_ERRORS as exc:
            self.broken = True
            raise _io_error(exc, "waiting for the reply", unsent=False) from exc
        except BaseException:
            self.broken = True
            raise

    def peer_closed(self) -> bool:
        """True if the idle socket is readable: the peer closed it (or sent junk)."""
        try:
            poller = select.poll()
            assert isinstance(self.transport, trio.SocketStream)
            poller.register(self.transport.socket.fileno(), select.POLLIN | select.POLLERR)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True

    async def command(self, db: str, command: Mapping[str, Any]) -> dict[str, Any]:
        """Run one of Argon's own commands on this connection; the reply, ``ok`` or not."""
        body = bson.encode({**command, "$db": db})
        await self.send(encode_op_msg(OpMsg(flags=0, body=body), 1))
        reply = await self.receive_frame()
        decoded: dict[str, Any] = bson.decode(
            decode_op_msg(reply.payload, full_message=reply.data).body
        )
        return decoded

    async def ping(self, timeout: float) -> bool:
        """Whether the upstream still answers on this connection within ``timeout``."""
        with trio.move_on_after(timeout):
            try:
                return bool((await self.command("admin", {"ping": 1})).get("ok"))
            except (UpstreamIOError, *_IO_ERRORS):
                return False
        self.broken = True
        return False

    async def hello(self, sasl_user: str | None = None) -> dict[str, Any]:
        """The handshake every driver makes on a new connection, naming Argon as the
        client; ``sasl_user`` (``source.user``) asks which mechanisms it may use."""
        command: dict[str, Any] = {
            "hello": 1,
            "client": {
                "application": {"name": "argon-proxy"},
                "driver": {"name": "argon", "version": __version__},
                "os": {"type": "unknown"},
            },
        }
        if sasl_user is not None:
            command["saslSupportedMechs"] = sasl_user
        return await self.command("admin", command)

    async def aclose(self) -> None:
        self.broken = True
        if not self._closed:
            self._closed = True
            metrics.POOL_OPEN.dec()
            with trio.CancelScope(shield=True):
                # The TCP stream itself: a TLS goodbye could wait on a frozen peer.
                await self.transport.aclose()


@dataclass
class UpstreamPool:
    """At most ``size`` open connections; idle ones are kept up to ``idle``.

    ``target`` is the deployment (an ``Address`` for one plain host); ``address``
    the host connections go to: the one seed, or the primary last found.
    """

    target: UpstreamTarget | Address
    size: int = 100
    idle: int = 32
    connect_timeout: float = 3.0
    reply_timeout: float = 0.0  # 0: replies may take forever
    facts: UpstreamFacts = field(default_factory=UpstreamFacts)
    _idle: list[UpstreamConnection] = field(default_factory=list)
    _limiter: trio.CapacityLimiter = field(init=False)
    _closed: bool = False
    deployment: UpstreamTarget = field(init=False)
    address: Address = field(init=False)

    def __post_init__(self) -> None:
        self._limiter = trio.CapacityLimiter(self.size)
        target = self.target
        self.deployment = UpstreamTarget.single(target) if isinstance(target, Address) else target
        self.address = self.deployment.seeds[0]

    @property
    def in_use(self) -> int:
        return int(self._limiter.borrowed_tokens)

    async def connect(self) -> UpstreamConnection:
        """A new connection, or ``UpstreamUnavailable`` within ``connect_timeout``
        (``UpstreamRefused`` when the upstream refuses Argon's credentials or TLS)."""
        # Imported here: opening a connection builds one of this module's connections.
        from .upstream_connect import NoPrimary, find_primary, open_to

        target = self.deployment
        try:
            with trio.fail_after(self.connect_timeout):
                if target.discovers:
                    conn, hello = await find_primary(target, self.address, self.reply_timeout)
                else:
                    conn, hello = await open_to(self.address, target, self.reply_timeout)
        except (
            OSError,
            trio.TooSlowError,
            trio.BrokenResourceError,
            UpstreamIOError,
            NoPrimary,
        ) as exc:
            timed_out = isinstance(exc, trio.TooSlowError) or getattr(exc, "timed_out", False)
            reason = "timed out" if timed_out else str(exc)
            metrics.UPSTREAM_ERRORS.labels("connect").inc()
            raise UpstreamUnavailable(
                f"Argon cannot reach the upstream MongoDB at {target}: {reason}. "
                "Check that it is running; Argon reconnects by itself when it is back."
            ) from None
        if conn.address != self.address:
            log.info("upstream primary is now %s", conn.address)
            self.address = conn.address
        self.facts = UpstreamFacts.from_hello(hello)
        return conn

    @asynccontextmanager
    async def checkout(self) -> AsyncIterator[UpstreamConnection]:
        """Borrow a connection for one exchange; broken ones are closed, not reused."""
        # A token per checkout (a request holds one; see dbclient.hold).
        token = object()
        await self._limiter.acquire_on_behalf_of(token)
        try:
            conn = await self._take()
            metrics.POOL_IN_USE.inc()
            try:
                yield conn
            finally:
                metrics.POOL_IN_USE.dec()
                await self.release(conn)
        finally:
            self._limiter.release_on_behalf_of(token)

    async def acquire_pinned(self, owner: object) -> UpstreamConnection:
        """A connection kept by ``owner`` across exchanges until ``release_pinned``.

        Used for a transaction, which keeps one connection from its first
        statement to its commit or abort. It counts against the pool size.
        """
        await self._limiter.acquire_on_behalf_of(owner)
        try:
            conn = await self._take()
        except BaseException:
            self._limiter.release_on_behalf_of(owner)
            raise
        metrics.POOL_IN_USE.inc()
        return conn

    async def release_pinned(self, owner: object, conn: UpstreamConnection) -> None:
        metrics.POOL_IN_USE.dec()
        self._limiter.release_on_behalf_of(owner)
        await self.release(conn)

    async def _take(self) -> UpstreamConnection:
        """A live idle connection (newest first), or a new one.

        Idle sockets the upstream closed are discarded before anything is
        sent on them, so a request never goes to a connection known dead.
        """
        while self._idle:
            conn = self._idle.pop()
            try:
                alive = not conn.peer_closed() and (
                    trio.current_time() - conn.idle_since <= HEALTH_CHECK_IDLE
                    or await conn.ping(self.connect_timeout)
                )
            except BaseException:  # cancelled mid-ping: the connection is out of step
                await conn.aclose()
                raise
            if alive:
                return conn
            metrics.UPSTREAM_ERRORS.labels("stale").inc()
            await conn.aclose()
        return await self.connect()

    async def release(self, conn: UpstreamConnection) -> None:
        if conn.not_primary:  # its host stepped down, and so did every idle connection's
            idle, self._idle = self._idle, []
            for other in idle:
                await other.aclose()
        if conn.broken or self._closed or len(self._idle) >= self.idle or conn.framer.buffered:
            await conn.aclose()
        else:
            conn.idle_since = trio.current_time()
            self._idle.append(conn)

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.aclose()
