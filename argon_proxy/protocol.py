"""One client connection's protocol: requests in, replies out, no sockets.

Theory of operation: the server feeds whole frames to ``ClientProtocol.handle``
one at a time, in arrival order (MongoDB connections are strictly
request/reply, apart from ``moreToCome`` requests, which get no reply, and
exhaust replies, which keep coming until one lacks ``moreToCome``). Replies
leave through the injected ``send`` coroutine, so the protocol is testable
over memory streams.

A request that needs nothing from Argon is forwarded upstream as the very
bytes the client sent, and the upstream's reply bytes go back unchanged;
what routing needs (name, collection, ``$db``, ``maxTimeMS``, transaction
fields, flags) is read in one walk over the top-level keys (``wire.peek``),
and a request naming any field twice is refused (the upstream might read
another ``$db`` than the proxy checked). No byte offset is read here. Which requests qualify is
``Engine.needs_engine``'s decision (see ``namespaces.py``). Argon answers
``hello`` itself (see ``hello.py``). Compressed requests are decompressed for
the upstream and the replies compressed again with the client's compressor.
A transaction keeps one upstream connection from ``startTransaction`` to its
commit or abort.

When the upstream connection fails mid-request (closed, reset, frozen past
``upstream_timeout``) the client gets what mongos would answer: a network
error (HostUnreachable / NetworkTimeout) labelled so drivers retry, never an
internal error. A request that never left is sent once more on another
connection first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import bson
import trio

import wire
from wire import Frame, OpCode
from wire.compression import compress_message, must_not_compress
from wire.peek import CommandPeek, Incoming, open_frame, peek_command, reply_more_to_come

from . import metrics
from .auth import AUTH_COMMANDS, ConnectionAuth
from .calls import Forward, Request
from .clustertime import CLOCK
from .config import Settings
from .engine import Engine, decode_command
from .errors import (
    DUPLICATE_FIELD,
    UNSUPPORTED_OP_QUERY_COMMAND,
    ArgonError,
    UpstreamIOError,
    relabel_unavailable,
    upstream_lost,
)
from .hello import HELLO_COMMANDS, hello_reply, negotiate_compressors
from .naming import MAIN
from .txn import JoinedTransaction
from .upstream import UpstreamConnection, UpstreamPool

log = logging.getLogger("argon.client")

Send = Callable[[bytes], Awaitable[None]]

_COMPRESSOR_NAMES = {1: "snappy", 2: "zlib", 3: "zstd"}
_TXN_END = frozenset({"commitTransaction", "abortTransaction"})


@dataclass
class ClientInfo:
    """What the client told us about itself in its handshake."""

    app_name: str | None = None
    driver: str | None = None
    compressors: list[str] = field(default_factory=list)


class ClientProtocol:
    """Handles the requests of one client connection."""

    def __init__(
        self,
        send: Send,
        *,
        pool: UpstreamPool,
        engine: Engine,
        settings: Settings,
        connection_id: int,
        auth: ConnectionAuth,
    ) -> None:
        self._send = send
        self._auth = auth
        self._pool = pool
        self._engine = engine
        self._settings = settings
        self._member = settings.member_address()  # checked at start-up: never raises here
        self.connection_id = connection_id
        self.client = ClientInfo()
        self._pinned: UpstreamConnection | None = None
        self._last_branch = MAIN  # the branch of the request being answered, for metrics
        self._reply_ids = iter(range(1, 1 << 31))

    async def handle(self, frame: Frame) -> None:
        """Answer one request frame."""
        started = time.perf_counter()
        incoming = open_frame(frame)
        if incoming.compressor_id:
            name = _COMPRESSOR_NAMES.get(incoming.compressor_id, "noop")
            metrics.COMPRESSED.labels(name).inc()
        metrics.BYTES_IN.inc(len(frame.data))
        if incoming.op_code == OpCode.QUERY:
            command = await self._handle_op_query(incoming)
        elif incoming.op_code == OpCode.MSG:
            command = await self._handle_op_msg(incoming)
        else:
            raise wire.UnknownOpCode(f"opcode {incoming.op_code} is not accepted from clients")
        label = metrics.command_label(command)
        metrics.REQUESTS.labels(label, metrics.branch_label(self._last_branch)).inc()
        self._last_branch = MAIN
        metrics.LATENCY.labels(label).observe(time.perf_counter() - started)

    # -- OP_MSG ---------------------------------------------------------------

    async def _handle_op_msg(self, incoming: Incoming) -> str:
        peek = peek_command(incoming.data)
        name = peek.name
        if name in HELLO_COMMANDS:
            hello = bson.decode(incoming.op_msg().body)
            await self._answer_hello(hello, incoming.request_id, legacy=False)
            return name
        refusal: ArgonError | None = None
        if peek.duplicate is not None:  # the proxy and the upstream might read different ones
            refusal = ArgonError(
                DUPLICATE_FIELD, f"BSON field '{name}.{peek.duplicate}' is a duplicate field"
            )
        elif name in AUTH_COMMANDS:  # never upstream: see auth.py
            await self._answer_auth(incoming, peek)
            return name
        elif self._auth.refuses(name):
            refusal = await self._unless_bootstrapping(incoming, name)
        if refusal is not None:
            metrics.ERRORS.labels(refusal.code_name).inc()
            if not peek.more_to_come:
                await self._reply_msg(
                    refusal.to_document(), incoming.request_id, incoming.compressor_id
                )
            return name
        # Sequences are checked against the body by the engine's decoding.
        if (
            peek.sequences
            or self._auth.restricted  # access control decides, in the engine
            or self._engine.needs_engine(name, peek.db or "", self.client.app_name, peek.collection)
        ):
            await self._handle_in_engine(incoming, peek)
            return name
        try:
            await self._forward(incoming.data, peek, incoming.compressor_id)
        except ArgonError as exc:
            metrics.ERRORS.labels(exc.code_name).inc()
            relabel_unavailable(exc, name, in_transaction=peek.in_transaction)
            if not peek.more_to_come:
                await self._reply_msg(
                    exc.to_document(), incoming.request_id, incoming.compressor_id
                )
        return name

    async def _answer_auth(self, incoming: Incoming, peek: CommandPeek) -> None:
        try:
            reply = await self._auth.answer(peek.name, bson.decode(incoming.op_msg().body))
        except ArgonError as exc:
            metrics.ERRORS.labels(exc.code_name).inc()
            reply = exc.to_document()
        except UpstreamIOError as exc:  # the users live upstream
            reply = upstream_lost(exc, peek.name, in_transaction=False).to_document()
        if not peek.more_to_come:
            await self._reply_msg(reply, incoming.request_id, incoming.compressor_id)

    async def _unless_bootstrapping(self, incoming: Incoming, name: str) -> ArgonError | None:
        """13 for an unauthenticated client, unless this is the localhost exception's
        creation of the first user (see auth.py); an upstream that is away answers as
        such, since whether a user exists is not known then."""
        try:
            action = bson.decode(incoming.op_msg().body).get("argon") if name == "argon" else None
            if action == "createUser" and await self._auth.may_bootstrap():
                return None
        except ArgonError as exc:
            return exc
        except UpstreamIOError as exc:
            return upstream_lost(exc, name, in_transaction=False)
        return self._auth.unauthorized(name)

    async def _handle_in_engine(self, incoming: Incoming, peek: CommandPeek) -> None:
        msg = incoming.op_msg()
        name = peek.name
        cmd: dict[str, Any] = {}  # what the handlers below know of it if decoding fails
        try:
            cmd = decode_command(
                msg.body, [(s.identifier, list(s.documents)) for s in msg.sequences]
            )
            joined = await self._client_transaction(cmd)
            result = await self._engine.route(
                request := Request(
                    cmd,
                    self.client.app_name,
                    self.connection_id,
                    joined,
                    user=self._auth.user,
                    checked=self._auth.checked,
                )
            )
            self._last_branch = request.branch
            if isinstance(result, Forward):
                forwarded = wire.encode_op_msg(
                    wire.OpMsg(peek.flags, bson.encode(result.command)), incoming.request_id
                )
                await self._forward(forwarded, peek_command(forwarded), incoming.compressor_id)
                if result.after is not None:
                    await self._after_forward(name, result.after)
                return
            reply = result
        except ArgonError as exc:
            metrics.ERRORS.labels(exc.code_name).inc()
            relabel_unavailable(exc, name, in_transaction=cmd.get("autocommit") is False)
            reply = exc.to_document()
        except UpstreamIOError as exc:
            metrics.UPSTREAM_ERRORS.labels("exchange").inc()
            lost = upstream_lost(exc, name, in_transaction=cmd.get("autocommit") is False)
            metrics.ERRORS.labels(lost.code_name).inc()
            reply = lost.to_document()
            await self._drop_broken_pin()
        except Exception as exc:  # a bug must not take the connection down with it
            log.exception("internal error in %s", name, extra={"conn": self.connection_id})
            metrics.ERRORS.labels("internal").inc()
            reply = ArgonError(1, f"Argon internal error in {name!r}: {exc!r}").to_document()
        if not peek.more_to_come:
            await self._reply_msg(reply, incoming.request_id, incoming.compressor_id)

    async def _after_forward(self, name: str, after: Callable[[], Awaitable[None]]) -> None:
        """What must follow a forwarded command's reply; its failure is logged (the
        client has its answer already), and it runs even when cancelled."""
        with trio.CancelScope(shield=True):
            try:
                await after()
            except Exception:
                log.exception("after %s", name, extra={"conn": self.connection_id})

    async def _drop_broken_pin(self) -> None:
        """Give back a client transaction's connection once it is broken."""
        if self._pinned is not None and self._pinned.broken:
            conn, self._pinned = self._pinned, None
            await self._pool.release_pinned(self, conn)

    async def _client_transaction(self, cmd: dict[str, Any]) -> JoinedTransaction | None:
        """The client's transaction, pinned to one upstream connection, if it is in one."""
        if cmd.get("autocommit") is not False or "txnNumber" not in cmd:
            return None
        if self._pinned is None:
            self._pinned = await self._pool.acquire_pinned(self)
        session: dict[str, Any] = {
            k: cmd[k]
            for k in ("lsid", "txnNumber", "autocommit", "startTransaction", "readConcern")
            if k in cmd
        }
        return JoinedTransaction(self._pinned, session)

    async def _forward(self, data: bytes, peek: CommandPeek, compressor_id: int) -> None:
        """Send ``data`` upstream as it is and relay the reply (or replies) back."""
        name = peek.name
        conn = self._pinned
        if conn is None and peek.start_transaction is True:
            conn = self._pinned = await self._pool.acquire_pinned(self)
        if conn is not None:
            try:
                await self._exchange(conn, data, peek, compressor_id)
            except UpstreamIOError as exc:
                raise upstream_lost(exc, name, in_transaction=True) from None
            finally:
                if conn.broken or name in _TXN_END:
                    self._pinned = None
                    await self._pool.release_pinned(self, conn)
            return
        for attempt in range(2):
            try:
                async with self._pool.checkout() as conn:
                    await self._exchange(conn, data, peek, compressor_id)
                return
            except UpstreamIOError as exc:
                # A request that never wholly left cannot have run: send it again once.
                if exc.unsent and attempt == 0:
                    continue
                metrics.UPSTREAM_ERRORS.labels("exchange").inc()
                raise upstream_lost(exc, name, in_transaction=peek.in_transaction) from None

    async def _exchange(
        self, conn: UpstreamConnection, data: bytes, peek: CommandPeek, compressor_id: int
    ) -> None:
        await conn.send(data)
        if peek.more_to_come:
            return
        # An awaitData getMore (tailable cursors, change streams) waits its
        # maxTimeMS by design, so the upstream timeout counts only from then on.
        millis = peek.max_time_ms
        wait = millis / 1000.0 if millis is not None and millis > 0 else 0.0
        compressor = _COMPRESSOR_NAMES[compressor_id] if compressor_id else None
        if compressor is not None and must_not_compress(peek.name):
            compressor = None
        while True:
            reply = await conn.receive_frame(wait=wait)
            out = reply.data
            if compressor is not None:
                out = compress_message(out, compressor)
            await self._send_counted(out)
            if not peek.exhaust_allowed or not reply_more_to_come(reply.data):
                return

    # -- OP_QUERY (legacy handshakes only) -----------------------------------

    async def _handle_op_query(self, incoming: Incoming) -> str:
        request_id = incoming.request_id
        query = wire.decode_op_query(incoming.payload)
        command = bson.decode(query.query)
        if "$query" in command and isinstance(command["$query"], dict):
            command = command["$query"]
        name = next(iter(command), "")
        if query.collection == "$cmd" and name in HELLO_COMMANDS:
            await self._answer_hello(command, request_id, legacy=True)
            return name
        error = ArgonError(
            UNSUPPORTED_OP_QUERY_COMMAND,
            f"Unsupported OP_QUERY command: {name}. The client driver may require an upgrade: "
            "Argon, like MongoDB 6.0+, accepts OP_QUERY only for the hello handshake.",
        )
        await self._reply_legacy(error.to_document(), request_id, query_failure=True)
        return "other"

    # -- answers Argon writes itself ------------------------------------------

    async def _answer_hello(self, command: dict[str, Any], request_id: int, legacy: bool) -> None:
        compressors = self.client.compressors
        if "client" in command or "compression" in command:  # the handshake, not a heartbeat
            meta = command.get("client") or {}
            app = meta.get("application") or {}
            driver = meta.get("driver") or {}
            self.client.app_name = app.get("name")
            self.client.driver = f"{driver.get('name', '?')} {driver.get('version', '?')}"
            compressors = negotiate_compressors(
                command.get("compression"), self._settings.compressors
            )
            self.client.compressors = compressors
            log.info(
                "handshake app=%s driver=%s compressors=%s",
                self.client.app_name,
                self.client.driver,
                ",".join(compressors) or "-",
                extra={"conn": self.connection_id},
            )
        reply = hello_reply(
            command,
            facts=self._pool.facts,
            connection_id=self.connection_id,
            compressors=compressors,
            member=self._member,
        )
        asked = command.get("saslSupportedMechs")  # "source.user": which mechanisms it may use
        if isinstance(asked, str):
            try:
                mechanisms = await self._auth.users.mechanisms(asked.partition(".")[2])
            except (ArgonError, UpstreamIOError) as exc:  # the driver then tries SCRAM-SHA-1
                log.warning("cannot look up %r's mechanisms: %s", asked, exc)
                mechanisms = []
            if mechanisms:
                reply["saslSupportedMechs"] = mechanisms
        if legacy:
            await self._reply_legacy(reply, request_id)
        else:
            await self._reply_msg(reply, request_id, 0)

    async def _reply_msg(self, doc: dict[str, Any], request_id: int, compressor_id: int) -> None:
        msg = wire.OpMsg(flags=0, body=bson.encode(CLOCK.stamp(doc)))
        out = wire.encode_op_msg(msg, next(self._reply_ids), request_id)
        if compressor_id:
            out = compress_message(out, _COMPRESSOR_NAMES[compressor_id])
        await self._send_counted(out)

    async def _reply_legacy(
        self, doc: dict[str, Any], request_id: int, *, query_failure: bool = False
    ) -> None:
        reply = wire.OpReply(
            flags=2 if query_failure else 0,
            cursor_id=0,
            starting_from=0,
            documents=(bson.encode(doc),),
        )
        await self._send_counted(wire.encode_op_reply(reply, next(self._reply_ids), request_id))

    async def _send_counted(self, data: bytes) -> None:
        metrics.BYTES_OUT.inc(len(data))
        await self._send(data)

    async def aclose(self) -> None:
        """Give back a transaction's pinned connection when the client goes away."""
        if self._pinned is not None:
            conn, self._pinned = self._pinned, None
            # The transaction cannot finish without its client; mongod aborts it on timeout.
            await conn.aclose()
            await self._pool.release_pinned(self, conn)
