"""OP_QUERY (2004) and OP_REPLY (1): kept only for the first handshake.

Theory of operation: drivers may still open a connection with ``hello`` (or
``isMaster``) sent as an OP_QUERY on ``admin.$cmd`` and read the answer as an
OP_REPLY; MongoDB 6.0 accepts OP_QUERY for nothing else. Layouts:

* OP_QUERY: int32 flags, C-string full collection name, int32 numberToSkip,
  int32 numberToReturn, the query document, an optional returnFieldsSelector
  document; nothing may follow.
* OP_REPLY: int32 responseFlags, int64 cursorID, int32 startingFrom, int32
  numberReturned, then exactly that many documents filling the message.

Documents are bounds-checked, never decoded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .bson_raw import find_nul, validate_document_bounds
from .errors import MalformedMessage
from .header import HEADER_LEN, BytesLike, OpCode, pack_header

_INT32 = struct.Struct("<i")
_QUERY_TAIL = struct.Struct("<ii")
_REPLY_HEAD = struct.Struct("<iqii")
_MIN_QUERY = 4 + 1 + _QUERY_TAIL.size + 5

# OP_REPLY responseFlags.
CURSOR_NOT_FOUND = 1 << 0
QUERY_FAILURE = 1 << 1
AWAIT_CAPABLE = 1 << 3


@dataclass(frozen=True, slots=True)
class OpQuery:
    """A legacy query; the proxy only ever sees handshake commands in it."""

    flags: int
    full_collection_name: str
    number_to_skip: int
    number_to_return: int
    query: bytes
    return_fields: bytes | None = None

    @property
    def database(self) -> str:
        """The part of the namespace before the first dot."""
        return self.full_collection_name.partition(".")[0]

    @property
    def collection(self) -> str:
        """The part of the namespace after the first dot (``$cmd`` for commands)."""
        return self.full_collection_name.partition(".")[2]


@dataclass(frozen=True, slots=True)
class OpReply:
    """A legacy reply; numberReturned on the wire is ``len(documents)``."""

    flags: int
    cursor_id: int
    starting_from: int
    documents: tuple[bytes, ...]


def decode_op_query(payload: BytesLike) -> OpQuery:
    """Decode an OP_QUERY from the bytes after its header."""
    buf = memoryview(payload)
    if len(buf) < _MIN_QUERY:
        raise MalformedMessage("OP_QUERY too short")
    flags: int = _INT32.unpack_from(buf, 0)[0]
    name_end = find_nul(buf, 4, len(buf))
    if name_end < 0:
        raise MalformedMessage("OP_QUERY collection name is not terminated")
    try:
        name = str(buf[4:name_end], "utf-8")
    except UnicodeDecodeError:
        raise MalformedMessage("OP_QUERY collection name is not UTF-8") from None
    pos = name_end + 1
    if len(buf) - pos < _QUERY_TAIL.size:
        raise MalformedMessage("OP_QUERY too short")
    skip, to_return = _QUERY_TAIL.unpack_from(buf, pos)
    pos += _QUERY_TAIL.size
    size = validate_document_bounds(buf, pos)
    query = buf[pos : pos + size].tobytes()
    pos += size
    fields = None
    if pos < len(buf):
        size = validate_document_bounds(buf, pos)
        fields = buf[pos : pos + size].tobytes()
        pos += size
        if pos != len(buf):
            raise MalformedMessage("OP_QUERY has bytes after its returnFieldsSelector")
    return OpQuery(flags, name, skip, to_return, query, fields)


def encode_op_query(q: OpQuery, request_id: int, response_to: int = 0) -> bytes:
    """The whole OP_QUERY message, header included."""
    name = q.full_collection_name.encode()
    fields = q.return_fields or b""
    length = HEADER_LEN + 4 + len(name) + 1 + _QUERY_TAIL.size + len(q.query) + len(fields)
    return b"".join(
        (
            pack_header(length, request_id, response_to, OpCode.QUERY),
            _INT32.pack(q.flags),
            name,
            b"\x00",
            _QUERY_TAIL.pack(q.number_to_skip, q.number_to_return),
            q.query,
            fields,
        )
    )


def decode_op_reply(payload: BytesLike) -> OpReply:
    """Decode an OP_REPLY from the bytes after its header."""
    buf = memoryview(payload)
    if len(buf) < _REPLY_HEAD.size:
        raise MalformedMessage("OP_REPLY too short")
    flags, cursor_id, starting_from, returned = _REPLY_HEAD.unpack_from(buf, 0)
    # Each document takes at least 5 bytes: a count beyond that is a lie told up front.
    if returned < 0 or returned * 5 > len(buf) - _REPLY_HEAD.size:
        raise MalformedMessage(f"OP_REPLY numberReturned {returned} does not fit the message")
    docs: list[bytes] = []
    pos = _REPLY_HEAD.size
    for _ in range(returned):
        size = validate_document_bounds(buf, pos)
        docs.append(buf[pos : pos + size].tobytes())
        pos += size
    if pos != len(buf):
        raise MalformedMessage("OP_REPLY documents do not fill the message")
    return OpReply(flags, cursor_id, starting_from, tuple(docs))


def encode_op_reply(r: OpReply, request_id: int, response_to: int) -> bytes:
    """The whole OP_REPLY message, header included."""
    length = HEADER_LEN + _REPLY_HEAD.size + sum(map(len, r.documents))
    return b"".join(
        (
            pack_header(length, request_id, response_to, OpCode.REPLY),
            _REPLY_HEAD.pack(r.flags, r.cursor_id, r.starting_from, len(r.documents)),
            *r.documents,
        )
    )
