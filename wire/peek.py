"""What a proxy needs to route a request, read in one pass over its bytes.

Theory of operation: a proxy that forwards most requests unchanged must not
decode them to decide where they go. ``open_frame`` undoes any
OP_COMPRESSED wrapper (the proxy forwards the uncompressed message and
compresses the reply again with the client's compressor), and
``peek_command`` walks the top level of an OP_MSG body once, values unread
but for the few a proxy acts on:

* the command name (the body's first key) and, when the first value is a
  string, that value (the collection of ``find``, ``insert``...); for
  ``getMore`` the collection is its ``collection`` field;
* ``$db``, and the first key the body holds twice: parsers disagree on which
  occurrence of a repeated key wins, so a proxy that reads one ``$db`` while
  the server reads another would check one thing and run another;
* ``maxTimeMS`` (how long the server may legitimately take), ``autocommit``
  and ``startTransaction`` (whether the command belongs to a transaction);
* whether document sequences follow the body, and the flag bits.

A body that is not the first section is rare (no driver sends it): that
message is decoded properly instead. Every byte offset of the header and the
OP_MSG layout stays in this package; the structures are bounds-checked as
``bson_raw`` and ``opmsg`` check them, and raise ``WireError`` subclasses.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .bson_raw import BOOLEAN, DOUBLE, INT32, INT64, STRING, iter_elements
from .compression import decompress_payload
from .errors import InvalidBSON, MalformedMessage
from .framer import Frame
from .header import HEADER_LEN, OpCode, pack_header
from .opmsg import EXHAUST_ALLOWED, MORE_TO_COME, OpMsg, decode_op_msg, sections_follow_body

_UINT32 = struct.Struct("<I")
_INT32 = struct.Struct("<i")
_INT64 = struct.Struct("<q")
_DOUBLE = struct.Struct("<d")
_FLAGS_AT = HEADER_LEN  # OP_MSG flag bits follow the header
_KIND_AT = HEADER_LEN + 4  # then the kind byte of the first section
_BODY_AT = HEADER_LEN + 5  # then, for kind 0, the body


@dataclass(frozen=True, slots=True)
class Incoming:
    """A request as the proxy handles it: uncompressed, with what it came in."""

    request_id: int
    op_code: int  # of the message itself, inside any OP_COMPRESSED
    compressor_id: int  # 0 when the client sent it uncompressed
    data: bytes  # the whole uncompressed message, header included

    @property
    def payload(self) -> memoryview:
        """The message after its header."""
        return memoryview(self.data)[HEADER_LEN:]

    def op_msg(self) -> OpMsg:
        """The message decoded as an OP_MSG (checksum verified)."""
        return decode_op_msg(self.payload, full_message=self.data)


def open_frame(frame: Frame) -> Incoming:
    """The message ``frame`` carries, decompressed if it came compressed."""
    header = frame.header
    if header.op_code != OpCode.COMPRESSED:
        return Incoming(header.request_id, header.op_code, 0, frame.data)
    inner_op, payload = decompress_payload(frame.payload)  # validates the prefix
    compressor_id = frame.payload[8]  # after the original opcode and size (two int32)
    data = pack_header(HEADER_LEN + len(payload), header.request_id, 0, inner_op) + payload
    return Incoming(header.request_id, inner_op, compressor_id, data)


@dataclass(frozen=True, slots=True)
class CommandPeek:
    """The routing facts of one OP_MSG command (see the module docstring)."""

    flags: int
    body: memoryview  # the body document, a view into the message
    name: str
    db: str | None  # None if absent or not a string
    duplicate: str | None  # the first top-level key the body holds twice
    collection: str | None  # the first value if a string; getMore's ``collection``
    max_time_ms: float | None
    autocommit: bool | None
    start_transaction: bool | None
    sequences: bool  # document sequences travel beside the body

    @property
    def more_to_come(self) -> bool:
        """The client wants no reply."""
        return bool(self.flags & MORE_TO_COME)

    @property
    def exhaust_allowed(self) -> bool:
        """The client accepts several replies to this one request."""
        return bool(self.flags & EXHAUST_ALLOWED)

    @property
    def in_transaction(self) -> bool:
        """A statement of a client transaction (``autocommit: false``)."""
        return self.autocommit is False


def peek_command(message: bytes | memoryview) -> CommandPeek:
    """The routing facts of the OP_MSG ``message`` (header included)."""
    view = memoryview(message)
    if len(view) < _BODY_AT:
        raise MalformedMessage("OP_MSG shorter than its flags and one section")
    flags: int = _UINT32.unpack_from(view, _FLAGS_AT)[0]
    if view[_KIND_AT] == 0:
        sequences = sections_follow_body(view)
        body = view[_BODY_AT : _BODY_AT + _INT32.unpack_from(view, _BODY_AT)[0]]
    else:  # a body after a document sequence: decode the message properly
        body = memoryview(decode_op_msg(view[HEADER_LEN:], full_message=view).body)
        sequences = True
    return _walk(flags, body, sequences)


def _walk(flags: int, body: memoryview, sequences: bool) -> CommandPeek:
    seen: set[str] = set()
    name: str | None = None
    first: str | None = None
    found: dict[str, tuple[int, int, int]] = {}
    duplicate: str | None = None
    for key, kind, start, stop in iter_elements(body):
        if name is None:
            name = key
            first = _string(body, start, stop, key) if kind == STRING else None
        if key in seen:
            duplicate = duplicate or key
            continue
        seen.add(key)
        if key in _WANTED:
            found[key] = (kind, start, stop)
    if name is None:
        raise InvalidBSON("empty document has no first key")
    collection = first
    if name == "getMore":
        collection = _field_str(body, found.get("collection"), "collection")
    return CommandPeek(
        flags=flags,
        body=body,
        name=name,
        db=_field_str(body, found.get("$db"), "$db"),
        duplicate=duplicate,
        collection=collection,
        max_time_ms=_number(body, found.get("maxTimeMS")),
        autocommit=_boolean(body, found.get("autocommit")),
        start_transaction=_boolean(body, found.get("startTransaction")),
        sequences=sequences,
    )


_WANTED = frozenset({"$db", "collection", "maxTimeMS", "autocommit", "startTransaction"})


def _string(body: memoryview, start: int, stop: int, key: str) -> str:
    try:
        return str(body[start + 4 : stop - 1], "utf-8")  # past the length, before the NUL
    except UnicodeDecodeError:
        raise InvalidBSON(f"BSON string {key!r} is not UTF-8") from None


def _field_str(body: memoryview, at: tuple[int, int, int] | None, key: str) -> str | None:
    if at is None or at[0] != STRING:
        return None
    return _string(body, at[1], at[2], key)


def _number(body: memoryview, at: tuple[int, int, int] | None) -> float | None:
    if at is None:
        return None
    kind, start, _ = at
    if kind == INT32:
        return float(_INT32.unpack_from(body, start)[0])
    if kind == INT64:
        return float(_INT64.unpack_from(body, start)[0])
    if kind == DOUBLE:
        return float(_DOUBLE.unpack_from(body, start)[0])
    return None


def _boolean(body: memoryview, at: tuple[int, int, int] | None) -> bool | None:
    if at is None or at[0] != BOOLEAN:
        return None
    return body[at[1]] != 0


def reply_more_to_come(reply: bytes | memoryview) -> bool:
    """Whether the OP_MSG reply ``reply`` (header included) has more replies behind it."""
    if len(reply) < _KIND_AT:
        raise MalformedMessage("OP_MSG reply shorter than its flags")
    return bool(_UINT32.unpack_from(reply, _FLAGS_AT)[0] & MORE_TO_COME)
