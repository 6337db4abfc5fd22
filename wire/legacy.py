"""OP_QUERY (2004) and OP_REPLY (1): kept only for the first handshake.

Theory of operation: drivers still open a connection with ``hello`` sent as
an OP_QUERY on ``admin.$cmd`` and read the answer as an OP_REPLY; MongoDB 6.0
accepts OP_QUERY for nothing else. OP_QUERY: int32 flags, C-string full
collection name, int32 numberToSkip, int32 numberToReturn, the query document,
an optional returnFieldsSelector document. OP_REPLY: int32 flags, int64
cursorID, int32 startingFrom, int32 numberReturned, then the documents.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .bson_raw import validate_document_bounds
from .errors import MalformedMessage
from .header import HEADER_LEN, OpCode, pack_header

_QUERY_TAIL = struct.Struct("<ii")
_REPLY_HEAD = struct.Struct("<iqii")
QUERY_FAILURE = 1 << 1


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
        return self.full_collection_name.split(".", 1)[0]

    @property
    def collection(self) -> str:
        return (
            self.full_collection_name.split(".", 1)[1] if "." in self.full_collection_name else ""
        )


@dataclass(frozen=True, slots=True)
class OpReply:
    """A legacy reply."""

    flags: int
    cursor_id: int
    starting_from: int
    documents: tuple[bytes, ...]


def decode_op_query(payload: bytes | bytearray | memoryview) -> OpQuery:
    """Decode an OP_QUERY from the bytes after its header."""
    buf = memoryview(payload)
    if len(buf) < 4 + 1 + 8 + 5:
        raise MalformedMessage("OP_QUERY too short")
    flags = int.from_bytes(buf[:4], "little", signed=True)
    name_end = 4
    while name_end < len(buf) and buf[name_end] != 0:
        name_end += 1
    if name_end >= len(buf):
        raise MalformedMessage("OP_QUERY collection name is not terminated")
    try:
        name = bytes(buf[4:name_end]).decode()
    except UnicodeDecodeError:
        raise MalformedMessage("OP_QUERY collection name is not UTF-8") from None
    pos = name_end + 1
    if len(buf) - pos < 8:
        raise MalformedMessage("OP_QUERY too short")
    skip, to_return = _QUERY_TAIL.unpack_from(buf, pos)
    pos += 8
    size = validate_document_bounds(buf, pos)
    query = bytes(buf[pos : pos + size])
    pos += size
    fields = None
    if pos < len(buf):
        fsize = validate_document_bounds(buf, pos)
        fields = bytes(buf[pos : pos + fsize])
        pos += fsize
    if pos != len(buf):
        raise MalformedMessage("OP_QUERY has trailing bytes")
    return OpQuery(flags, name, skip, to_return, query, fields)


def encode_op_query(q: OpQuery, request_id: int, response_to: int = 0) -> bytes:
    """The whole OP_QUERY message, header included."""
    payload = b"".join(
        [
            q.flags.to_bytes(4, "little", signed=True),
            q.full_collection_name.encode(),
            b"\x00",
            _QUERY_TAIL.pack(q.number_to_skip, q.number_to_return),
            q.query,
            q.return_fields or b"",
        ]
    )
    return pack_header(HEADER_LEN + len(payload), request_id, response_to, OpCode.QUERY) + payload


def decode_op_reply(payload: bytes | bytearray | memoryview) -> OpReply:
    """Decode an OP_REPLY from the bytes after its header."""
    buf = memoryview(payload)
    if len(buf) < _REPLY_HEAD.size:
        raise MalformedMessage("OP_REPLY too short")
    flags, cursor_id, starting_from, returned = _REPLY_HEAD.unpack_from(buf, 0)
    if returned < 0:
        raise MalformedMessage(f"OP_REPLY numberReturned {returned} is negative")
    docs: list[bytes] = []
    pos = _REPLY_HEAD.size
    for _ in range(returned):
        size = validate_document_bounds(buf, pos)
        docs.append(bytes(buf[pos : pos + size]))
        pos += size
    if pos != len(buf):
        raise MalformedMessage("OP_REPLY documents do not match numberReturned")
    return OpReply(flags, cursor_id, starting_from, tuple(docs))


def encode_op_reply(r: OpReply, request_id: int, response_to: int) -> bytes:
    """The whole OP_REPLY message, header included."""
    payload = _REPLY_HEAD.pack(r.flags, r.cursor_id, r.starting_from, len(r.documents))
    payload += b"".join(r.documents)
    return pack_header(HEADER_LEN + len(payload), request_id, response_to, OpCode.REPLY) + payload
