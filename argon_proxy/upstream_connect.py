"""Opening a connection to the upstream: TCP, TLS, handshake, authentication, primary.

Theory of operation: a new pooled connection is opened to one address
(``open_to``): TCP, then TLS when the connection string asks for it (the
standard ``ssl`` module under Trio's ``SSLStream``, the server's name checked
against its certificate), then ``hello``, then authentication with the
connection string's credentials. Authentication is pymongo's own code
(``pymongo.asynchronous.auth``: SCRAM-SHA-256 and SHA-1 with mechanism
negotiation, PLAIN, X.509), run over Argon's connection through the small
interface it needs (``_AuthConnection``); its awaits are plain coroutines,
so they run under Trio. Every connection authenticates as Argon itself:
clients never lend it their identity.

For a replica set (several seeds, or ``replicaSet``), ``find_primary`` opens
connections in turn, starting with the last primary, until one says it is
the writable primary, following each ``hello``'s ``primary`` hint and host
list. Argon writes every change in a transaction on the primary, so it never
settles for a secondary.

A refusal that trying again cannot cure (a wrong password, a certificate that
does not verify) raises ``UpstreamRefused``; the rest (refused connection,
reset, timeout) are for the caller to report as unavailability.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

import trio
from pymongo.asynchronous.auth import authenticate
from pymongo.errors import OperationFailure, PyMongoError
from pymongo.uri_parser_shared import parse_host

from . import upstream
from .errors import AUTHENTICATION_FAILED, ArgonError, UpstreamIOError
from .upstream_target import DEFAULT_PORT, Address, UpstreamTarget

if TYPE_CHECKING:
    from .upstream import UpstreamConnection

# Errors of one address that another attempt, or another address, may not have.
TRANSIENT = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, UpstreamIOError)


class UpstreamRefused(ArgonError):
    """The upstream refused Argon's credentials or certificate: retrying cannot help."""

    def __init__(self, errmsg: str) -> None:
        super().__init__(AUTHENTICATION_FAILED, errmsg)


class NoPrimary(Exception):
    """No seed or peer of the replica set is its writable primary right now."""


async def open_to(
    address: Address, target: UpstreamTarget, reply_timeout: float
) -> tuple[UpstreamConnection, dict[str, Any]]:
    """A connection to ``address``, through TLS and authenticated as the target asks,
    and the upstream's ``hello`` reply."""
    transport = await trio.open_tcp_stream(address.host, address.port)
    stream: trio.abc.Stream = transport
    conn: UpstreamConnection | None = None
    try:
        if target.tls is not None:
            stream = await _tls(transport, target.tls, address)
        conn = upstream.UpstreamConnection(stream, address, reply_timeout, transport=transport)
        credential = target.credential
        sasl_user = None
        if credential is not None and credential.mechanism == "DEFAULT":
            sasl_user = f"{credential.source}.{credential.username}"
        hello = await conn.hello(sasl_user)
        if credential is not None:
            await _authenticate(conn, hello, address, target)
    except BaseException:
        with trio.CancelScope(shield=True):
            if conn is not None:
                await conn.aclose()
            else:
                await transport.aclose()
        raise
    return conn, hello


async def _tls(
    transport: trio.SocketStream, context: ssl.SSLContext, address: Address
) -> trio.SSLStream[trio.SocketStream]:
    stream = trio.SSLStream(transport, context, server_hostname=address.host)
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        if isinstance(exc.__cause__, ssl.SSLCertVerificationError):
            raise UpstreamRefused(
                f"the upstream at {address} presented a TLS certificate Argon does not "
                f"trust: {exc.__cause__.verify_message} (set tlsCAFile in the upstream URI)"
            ) from None
        if isinstance(exc.__cause__, ssl.SSLError):
            raise UpstreamRefused(
                f"TLS with the upstream at {address} failed: {exc.__cause__}"
            ) from None
        raise
    return stream


async def _authenticate(
    conn: UpstreamConnection, hello: dict[str, Any], address: Address, target: UpstreamTarget
) -> None:
    credential = target.credential
    assert credential is not None
    try:
        await authenticate(credential, _AuthConnection(conn, hello, address))  # type: ignore[arg-type]
    except OperationFailure as exc:
        raise UpstreamRefused(
            f"the upstream at {address} refused Argon's credentials (user "
            f"{credential.username!r}, authSource {credential.source!r}, mechanism "
            f"{credential.mechanism}): {exc.details.get('errmsg') if exc.details else exc}"
        ) from None
    except PyMongoError as exc:
        message = f"authentication with the upstream at {address} failed: {exc}"
        raise UpstreamRefused(message) from None


class _AuthConnection:
    """What pymongo's authentication code uses of a connection, over Argon's."""

    auth_ctx = None  # no speculative authentication in Argon's hello

    def __init__(self, conn: UpstreamConnection, hello: dict[str, Any], address: Address):
        self._conn = conn
        self.negotiated_mechs = hello.get("saslSupportedMechs")
        self.max_wire_version = int(hello.get("maxWireVersion", 0))
        self.address = (address.host, address.port)

    def hello_cmd(self) -> dict[str, Any]:
        return {"hello": 1}

    async def command(self, dbname: str, spec: dict[str, Any], **_: Any) -> dict[str, Any]:
        reply = await self._conn.command(dbname, spec)
        if not reply.get("ok"):
            raise OperationFailure(
                str(reply.get("errmsg", "authentication failed")),
                reply.get("code"),
                reply,
                self.max_wire_version,
            )
        return reply


async def find_primary(
    target: UpstreamTarget, first: Address, reply_timeout: float
) -> tuple[UpstreamConnection, dict[str, Any]]:
    """A connection to the replica set's writable primary (see the module docstring);
    ``NoPrimary`` says what each address answered."""
    queue = [first, *target.seeds]
    tried: set[Address] = set()
    failures: list[str] = []
    while queue:
        address = queue.pop(0)
        if address in tried:
            continue
        tried.add(address)
        try:
            conn, hello = await open_to(address, target, reply_timeout)
        except TRANSIENT as exc:
            failures.append(f"{address}: {exc or type(exc).__name__}")
            continue
        wrong_set = target.replica_set is not None and hello.get("setName") != target.replica_set
        if not wrong_set and _writable_primary(hello):
            return conn, hello
        await conn.aclose()
        if wrong_set:
            failures.append(f"{address}: not a member of replica set {target.replica_set!r}")
            continue
        failures.append(f"{address}: not the primary")
        hint = hello.get("primary")
        if isinstance(hint, str):
            queue.insert(0, _address(hint))
        queue.extend(_address(h) for h in hello.get("hosts", []) if isinstance(h, str))
    raise NoPrimary("; ".join(failures) or "no address to try")


def _writable_primary(hello: dict[str, Any]) -> bool:
    return bool(hello.get("isWritablePrimary") or hello.get("ismaster"))


def _address(host: str) -> Address:
    name, port = parse_host(host, DEFAULT_PORT)
    return Address(name, port or DEFAULT_PORT)
