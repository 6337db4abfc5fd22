"""Whole messages: a frame in, a typed message out, and back.

Theory of operation: ``decode_frame`` unwraps OP_COMPRESSED transparently and
returns the inner message with the compressor id it came with, so a server
can answer with the same compressor; ``Decoded.header`` stays the frame's own
header. A compressed OP_MSG's checksum covers the uncompressed message under
a header rebuilt with the original opcode and length, as the server computes
it. OP_INSERT, OP_UPDATE, OP_DELETE, OP_GET_MORE and OP_KILL_CURSORS were
removed in MongoDB 6.0 and are refused with ``UnknownOpCode``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from .compression import decompress_payload
from .errors import BadLength, UnknownOpCode
from .framer import Frame
from .header import HEADER_LEN, BytesLike, Header, OpCode, pack_header
from .legacy import (
    OpQuery,
    OpReply,
    decode_op_query,
    decode_op_reply,
    encode_op_query,
    encode_op_reply,
)
from .opmsg import CHECKSUM_PRESENT, OpMsg, decode_op_msg, encode_op_msg

Message: TypeAlias = OpMsg | OpQuery | OpReply

_REMOVED = frozenset(
    {OpCode.INSERT, OpCode.UPDATE, OpCode.DELETE, OpCode.GET_MORE, OpCode.KILL_CURSORS}
)


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded frame: the frame's header, the message, its compressor id (0 = none)."""

    header: Header
    message: Message
    compressor_id: int = 0

    @property
    def op_code(self) -> OpCode:
        """The opcode of the message itself, under any compression."""
        if isinstance(self.message, OpMsg):
            return OpCode.MSG
        if isinstance(self.message, OpQuery):
            return OpCode.QUERY
        return OpCode.REPLY


def decode_frame(frame: Frame) -> Decoded:
    """Decode any message a MongoDB peer may send today."""
    header = frame.header
    if len(frame.data) != header.length:
        raise BadLength(f"header says {header.length} bytes, frame holds {len(frame.data)}")
    if header.op_code != OpCode.COMPRESSED:
        message = decode_message(header.op_code, frame.payload, full_message=frame.data)
        return Decoded(header, message, 0)
    op_code, payload = decompress_payload(frame.payload)
    full: bytes | None = None
    if op_code == OpCode.MSG and len(payload) >= 4 and payload[0] & CHECKSUM_PRESENT:
        full = pack_header(
            HEADER_LEN + len(payload), header.request_id, header.response_to, op_code
        )
        full += payload
    return Decoded(header, decode_message(op_code, payload, full_message=full), frame.data[24])


def decode_message(
    op_code: int, payload: BytesLike, *, full_message: BytesLike | None = None
) -> Message:
    """Decode the bytes after the header of an uncompressed message of ``op_code``.

    ``full_message`` is only needed for an OP_MSG with a checksum.
    """
    if op_code == OpCode.MSG:
        return decode_op_msg(payload, full_message=full_message)
    if op_code == OpCode.QUERY:
        return decode_op_query(payload)
    if op_code == OpCode.REPLY:
        return decode_op_reply(payload)
    if op_code in _REMOVED:
        raise UnknownOpCode(
            f"legacy opcode {OpCode(op_code).name} ({op_code}) is unsupported: "
            "it was removed in MongoDB 6.0"
        )
    if op_code == OpCode.COMPRESSED:
        raise UnknownOpCode("OP_COMPRESSED cannot be decoded here: decompress it first")
    raise UnknownOpCode(f"unknown opcode {op_code}")


def encode_message(message: Message, request_id: int, response_to: int) -> bytes:
    """The whole message, header included."""
    if isinstance(message, OpMsg):
        return encode_op_msg(message, request_id, response_to)
    if isinstance(message, OpQuery):
        return encode_op_query(message, request_id, response_to)
    if isinstance(message, OpReply):
        return encode_op_reply(message, request_id, response_to)
    raise TypeError(f"not a wire message: {type(message).__name__}")
