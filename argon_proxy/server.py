"""The Trio server: listeners, one task per client, graceful drain.

Theory of operation: this module only moves bytes between sockets and
``ClientProtocol``. Each client task reads until its framer yields a frame and
hands the frame to the protocol; it never reads the next request before the
previous one is answered. A malformed frame ends only that client's
connection.

Bounds, so that slow or idle clients cannot hold the proxy: a frame must
complete within ``frame_timeout`` of its first byte (the deadline does not
restart with each byte that trickles in); the bytes of incomplete frames held
for all clients together stay under ``max_partial_bytes`` (a client that
would go over is disconnected); and a connection idle between requests is
closed after ``idle_timeout`` when that is set (drivers keep pooled
connections idle, so it is off by default).

Shutdown: stop accepting, wake every client that is idle between requests so
it closes, let requests in flight finish for up to ``drain_timeout``, then
cancel what is left.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import math
import ssl
from dataclasses import dataclass, field
from typing import Any

import bson
import trio

import wire
from wire import Framer

from . import metrics
from .auth import ConnectionAuth
from .config import Settings
from .engine import Engine
from .errors import CONNECTION_LIMIT, ArgonError
from .protocol import ClientProtocol
from .upstream import UpstreamPool

log = logging.getLogger("argon.server")

_READ_SIZE = 256 * 1024
_REFUSED_MAX_MESSAGE = 64 * 1024  # the largest request read from a client that is refused


@dataclass
class _Client:
    """A live client task's handle, for the drain and the buffer budget."""

    idle_scope: trio.CancelScope | None = None
    held: int = 0  # bytes of its incomplete frame charged to the shared budget


@dataclass
class ProxyServer:
    """Accepts clients and serves them through one upstream pool."""

    settings: Settings
    pool: UpstreamPool
    engine: Engine
    port: int = 0
    _clients: dict[int, _Client] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _draining: bool = False
    _partial_bytes: int = 0  # incomplete frames buffered, all clients together
    _all_done: trio.Event = field(default_factory=trio.Event)
    _stop_requested: trio.Event = field(default_factory=trio.Event)
    tls: ssl.SSLContext | None = None  # clients must speak TLS (listener_tls.py)

    def request_stop(self) -> None:
        """Begin the graceful shutdown: stop accepting, drain, return from ``serve``."""
        self._stop_requested.set()

    async def serve(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until ``request_stop``, then drain. Reports the bound listeners when started."""
        listeners = await trio.open_tcp_listeners(self.settings.port, host=self.settings.host)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._accept_all, listeners, nursery)
                self.port = int(listeners[0].socket.getsockname()[1])
                task_status.started(listeners)
                await self._stop_requested.wait()
                for listener in listeners:
                    await listener.aclose()
                await self._drain()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self.pool.aclose()

    async def _accept_all(
        self, listeners: list[trio.SocketListener], nursery: trio.Nursery
    ) -> None:
        async with trio.open_nursery() as accept_nursery:
            for listener in listeners:
                accept_nursery.start_soon(self._accept_loop, listener, nursery)

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
            except OSError as exc:  # EMFILE and friends: back off instead of spinning
                log.warning("accept failed: %s", exc)
                await trio.sleep(0.1)
                continue
            nursery.start_soon(self._run_client, stream)

    async def _drain(self) -> None:
        self._draining = True
        for client in self._clients.values():
            if client.idle_scope is not None:
                client.idle_scope.cancel()
        if self._clients:
            log.info("draining %d client connection(s)", len(self._clients))
            with trio.move_on_after(self.settings.drain_timeout):
                await self._all_done.wait()

    async def _run_client(self, stream: trio.SocketStream) -> None:
        conn_id = next(self._ids)
        metrics.CONNECTIONS_TOTAL.inc()
        if len(self._clients) >= self.settings.max_connections:
            await self._refuse(stream, conn_id)
            return
        client = _Client()
        self._clients[conn_id] = client
        metrics.CONNECTIONS.inc()
        peer = _peer(stream)
        log.info("client connected from %s", peer, extra={"conn": conn_id})
        served: trio.abc.Stream = stream
        if self.tls is not None:
            secured = await self._handshake(stream, conn_id)
            if secured is None:
                del self._clients[conn_id]
                metrics.CONNECTIONS.dec()
                if self._draining and not self._clients:
                    self._all_done.set()
                return
            served = secured
        auth = ConnectionAuth(self.engine.users, self.settings.auth, _loopback(stream))
        protocol = ClientProtocol(
            served.send_all,
            pool=self.pool,
            engine=self.engine,
            settings=self.settings,
            connection_id=conn_id,
            auth=auth,
        )
        try:
            await self._serve_client(served, protocol, client, conn_id)
        except wire.WireError as exc:
            metrics.ERRORS.labels("malformed_frame").inc()
            log.warning(
                "closing connection: %s: %s", type(exc).__name__, exc, extra={"conn": conn_id}
            )
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError) as exc:
            log.debug("connection ended: %r", exc, extra={"conn": conn_id})
        except Exception:  # a bug must end this connection only, never the server
            metrics.ERRORS.labels("internal").inc()
            log.exception("closing connection after an internal error", extra={"conn": conn_id})
        finally:
            del self._clients[conn_id]
            self._hold(client, 0)
            metrics.CONNECTIONS.dec()
            with trio.CancelScope(shield=True):
                await protocol.aclose()
                await stream.aclose()  # the TCP stream: no TLS goodbye to wait on
            log.info("client disconnected", extra={"conn": conn_id})
            if self._draining and not self._clients:
                self._all_done.set()

    async def _handshake(
        self, stream: trio.SocketStream, conn_id: int
    ) -> trio.SSLStream[trio.SocketStream] | None:
        """The client's TLS stream once its handshake completed (within
        ``frame_timeout``); None, the connection closed, when it did not."""
        assert self.tls is not None
        secured = trio.SSLStream(stream, self.tls, server_side=True)
        reason = "not completed within frame_timeout"
        with trio.move_on_after(self.settings.frame_timeout):
            try:
                await secured.do_handshake()
                return secured
            except trio.BrokenResourceError as exc:
                reason = str(exc.__cause__ or exc)
        metrics.ERRORS.labels("tls_handshake").inc()
        log.info("closing connection: TLS handshake failed: %s", reason, extra={"conn": conn_id})
        with trio.CancelScope(shield=True):
            await stream.aclose()
        return None

    def _hold(self, client: _Client, buffered: int) -> bool:
        """Charge ``buffered`` bytes of ``client``'s incomplete frame; False if over budget."""
        self._partial_bytes += buffered - client.held
        client.held = buffered
        return self._partial_bytes <= self.settings.max_partial_bytes

    async def _serve_client(
        self,
        stream: trio.abc.ReceiveStream,
        protocol: ClientProtocol,
        client: _Client,
        conn_id: int,
    ) -> None:
        framer = Framer()
        frame_deadline = math.inf  # set by the first byte of a frame, never pushed back
        while not self._draining:
            frame = framer.next_frame()
            if frame is not None:
                frame_deadline = math.inf
                self._hold(client, 0)  # what is left is the next frame's, charged below
                await protocol.handle(frame)
                continue
            partial = framer.buffered > 0
            if not self._hold(client, framer.buffered):
                self._over_budget(framer, conn_id)
                return
            if partial and frame_deadline == math.inf:
                frame_deadline = trio.current_time() + self.settings.frame_timeout
            deadline = frame_deadline if partial else self._idle_deadline()
            with trio.CancelScope(deadline=deadline) as scope:
                if not partial:
                    client.idle_scope = scope
                data = await stream.receive_some(_READ_SIZE)
            client.idle_scope = None
            if scope.cancelled_caught:
                self._timed_out(framer, partial, conn_id)
                return
            if not data:
                framer.eof()
                return
            framer.feed(data)

    def _idle_deadline(self) -> float:
        idle = self.settings.idle_timeout
        return trio.current_time() + idle if idle > 0 else math.inf

    def _timed_out(self, framer: Framer, partial: bool, conn_id: int) -> None:
        if partial:
            metrics.ERRORS.labels("frame_timeout").inc()
            log.warning(
                "closing connection: partial frame (%d bytes) not completed within %ss "
                "of its first byte (frame_timeout)",
                framer.buffered,
                self.settings.frame_timeout,
                extra={"conn": conn_id},
            )
        elif not self._draining:
            metrics.ERRORS.labels("idle_timeout").inc()
            log.info(
                "closing connection: idle for %ss (idle_timeout)",
                self.settings.idle_timeout,
                extra={"conn": conn_id},
            )

    def _over_budget(self, framer: Framer, conn_id: int) -> None:
        metrics.ERRORS.labels("partial_bytes").inc()
        log.warning(
            "closing connection: its partial frame (%d bytes) would take the incomplete "
            "messages buffered for all clients past max_partial_bytes (%d)",
            framer.buffered,
            self.settings.max_partial_bytes,
            extra={"conn": conn_id},
        )

    async def _refuse(self, stream: trio.SocketStream, conn_id: int) -> None:
        """Tell a client over the connection limit why, then close."""
        metrics.ERRORS.labels("connection_limit").inc()
        limit = self.settings.max_connections
        log.warning("refusing connection: limit of %d reached", limit, extra={"conn": conn_id})
        error = ArgonError(
            CONNECTION_LIMIT,
            f"Argon refused the connection: its limit of {limit} client connections is "
            "reached. Close idle clients, set idle_timeout (ARGON_IDLE_TIMEOUT) so idle ones "
            "are closed, or raise the limit: --max-connections, ARGON_MAX_CONNECTIONS or "
            "max_connections in config/argon.toml.",
        )
        # Only the handshake is read (drivers send hello first): a refused client
        # must not make Argon buffer a large message outside the shared budget.
        framer = Framer(max_message_size=_REFUSED_MAX_MESSAGE)
        with trio.move_on_after(min(self.settings.frame_timeout, 5.0)):
            try:
                while (frame := framer.next_frame()) is None:
                    data = await stream.receive_some(_READ_SIZE)
                    if not data:
                        break
                    framer.feed(data)
                if frame is not None:
                    await stream.send_all(_error_reply(frame, error))
            except (wire.WireError, trio.BrokenResourceError, OSError):
                pass
        with trio.CancelScope(shield=True):
            await stream.aclose()


def _error_reply(frame: wire.Frame, error: ArgonError) -> bytes:
    """The error as a reply of the request's own kind (OP_REPLY for OP_QUERY)."""
    doc = bson.encode(error.to_document())
    if frame.header.op_code == wire.OpCode.QUERY:
        reply = wire.OpReply(flags=2, cursor_id=0, starting_from=0, documents=(doc,))
        return wire.encode_op_reply(reply, 1, frame.header.request_id)
    return wire.encode_op_msg(wire.OpMsg(flags=0, body=doc), 1, frame.header.request_id)


def _loopback(stream: trio.SocketStream) -> bool:
    """Whether the client connected from a loopback address."""
    try:
        host = stream.socket.getpeername()[0]
        return ipaddress.ip_address(str(host).partition("%")[0]).is_loopback
    except (OSError, ValueError, IndexError):
        return False


def _peer(stream: trio.SocketStream) -> str:
    try:
        host, port, *_ = stream.socket.getpeername()
    except (OSError, ValueError):
        return "?"
    return f"{host}:{port}"
