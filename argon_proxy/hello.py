"""The ``hello`` handshake, which Argon answers itself.

Theory of operation: drivers discover topology from ``hello``. If Argon
relayed the upstream's answer, a replica-set upstream would hand its member
list to the driver, which would then connect to the members directly and
bypass the proxy. So Argon presents itself as a router does (``msg:
"isdbgrid"``, as mongos): one address, no members to discover, and yet a
server type with which drivers use sessions, retryable writes, transactions
and change streams, all of which Argon supports. It takes from the upstream
only the limits a client must respect (document and message sizes, batch
size, session timeout, wire versions, capped by what Argon itself
understands). It sends no ``topologyVersion``: drivers would then expect
awaitable ``hello`` (held until the topology changes), and a router whose
topology never changes has nothing to stream.

Some applications (and drivers' tests) insist on a replica set: with
``advertise`` set, Argon answers as the primary of a one-member replica set
(``REPLICA_SET_NAME``) whose only member is the address clients reach it at.
Drivers discover that member and connect to it, so the address must be Argon's
as clients see it, never the upstream's; nothing else changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wire.compression import available_compressors

from . import __version__

# MongoDB 8.0. Argon relays newer servers' commands but speaks no newer wire features.
ARGON_MAX_WIRE_VERSION = 25
HELLO_COMMANDS = frozenset({"hello", "isMaster", "ismaster"})
REPLICA_SET_NAME = "argon"  # the set Argon presents with ``advertise`` (one member: itself)


@dataclass(frozen=True, slots=True)
class UpstreamFacts:
    """What the upstream's own ``hello`` said that clients must see too."""

    max_bson_object_size: int = 16 * 1024 * 1024
    max_message_size_bytes: int = 48_000_000
    max_write_batch_size: int = 100_000
    logical_session_timeout_minutes: int | None = 30
    min_wire_version: int = 0
    max_wire_version: int = 21

    @classmethod
    def from_hello(cls, reply: Mapping[str, Any]) -> UpstreamFacts:
        default = cls()
        return cls(
            max_bson_object_size=int(reply.get("maxBsonObjectSize", default.max_bson_object_size)),
            max_message_size_bytes=int(
                reply.get("maxMessageSizeBytes", default.max_message_size_bytes)
            ),
            max_write_batch_size=int(reply.get("maxWriteBatchSize", default.max_write_batch_size)),
            logical_session_timeout_minutes=reply.get("logicalSessionTimeoutMinutes"),
            min_wire_version=int(reply.get("minWireVersion", 0)),
            max_wire_version=int(reply.get("maxWireVersion", default.max_wire_version)),
        )


def negotiate_compressors(requested: Any, enabled: tuple[str, ...]) -> list[str]:
    """The client's requested compressors that Argon has, in the client's order."""
    if not isinstance(requested, list):
        return []
    usable = set(enabled) & set(available_compressors())
    return [name for name in requested if isinstance(name, str) and name in usable]


def hello_reply(
    command: Mapping[str, Any],
    *,
    facts: UpstreamFacts,
    connection_id: int,
    compressors: list[str],
    member: str = "",
) -> dict[str, Any]:
    """Argon's answer to ``hello`` / ``isMaster`` / ``ismaster``: a router's, or with
    ``member`` (its advertised ``host:port``) a one-member replica set's primary's."""
    legacy = next(iter(command), "hello") != "hello"
    reply: dict[str, Any] = {"isWritablePrimary": True}
    if legacy:
        reply = {"ismaster": True}
    if command.get("helloOk"):
        reply["helloOk"] = True
    if member:
        reply.update(
            setName=REPLICA_SET_NAME,
            setVersion=1,
            hosts=[member],
            primary=member,
            me=member,
            secondary=False,
        )
    else:
        reply["msg"] = "isdbgrid"  # a router: see the module's docstring
    reply.update(
        maxBsonObjectSize=facts.max_bson_object_size,
        maxMessageSizeBytes=facts.max_message_size_bytes,
        maxWriteBatchSize=facts.max_write_batch_size,
        localTime=dt.datetime.now(dt.UTC),
        connectionId=connection_id,
        minWireVersion=facts.min_wire_version,
        maxWireVersion=min(facts.max_wire_version, ARGON_MAX_WIRE_VERSION),
        readOnly=False,
    )
    if facts.logical_session_timeout_minutes is not None:
        reply["logicalSessionTimeoutMinutes"] = facts.logical_session_timeout_minutes
    if compressors:
        reply["compression"] = compressors
    reply["argon"] = {"version": __version__}
    reply["ok"] = 1.0
    return reply
