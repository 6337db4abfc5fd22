"""Whole messages: a frame in, a typed message out, and back.

Theory of operation: ``decode_frame`` unwraps OP_COMPRESSED transparently and
returns the inner message with the compressor id it came with, so a server
can answer with the same compressor. OP_INSERT, OP_UPDATE, OP_DELETE,
OP_GET_MORE and OP_KILL_CURSORS were removed in MongoDB 6.0 and are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from .compression import decompress_payload
from .errors import UnknownOpCode
from .framer import Frame
from .header import HEADER_LEN, Header, OpCode, pack_header
from .legacy import (
    OpQuery,
    OpReply,
    decode_op_query,
    decode_op_reply,
    encode_op_query,
    encode_op_reply,
)
from .opmsg import OpMsg, decode_op_msg, encode_op_msg

Message = OpMsg | OpQuery | OpReply


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded frame: the frame's header, the message, its compressor (0 = none)."""

    header: Header
    message: Message
    compressor_id: int = 0


def decode_frame(frame: Frame) -> Decoded:
    """Decode any message a MongoDB peer may send today."""
    op_code = frame.header.op_code
    payload: bytes | memoryview = frame.payload
    full: bytes = frame.data
    compressor = 0
    if op_code == OpCode.COMPRESSED:
        op_code, payload = decompress_payload(frame.payload)  # validates the prefix first
        compressor = frame.payload[8]
        h = frame.header
        full = (
            pack_header(HEADER_LEN + len(payload), h.request_id, h.response_to, op_code) + payload
        )
    message: Message
    if op_code == OpCode.MSG:
        message = decode_op_msg(payload, full_message=full)
    elif op_code == OpCode.QUERY:
        message = decode_op_query(payload)
    elif op_code == OpCode.REPLY:
        message = decode_op_reply(payload)
    elif op_code in (
        OpCode.INSERT,
        OpCode.UPDATE,
        OpCode.DELETE,
        OpCode.GET_MORE,
        OpCode.KILL_CURSORS,
    ):
        raise UnknownOpCode(
            f"legacy opcode {OpCode(op_code).name} ({op_code}) was removed in MongoDB 6.0"
        )
    else:
        raise UnknownOpCode(f"unknown opcode {op_code}")
    return Decoded(frame.header, message, compressor)


def encode_message(message: Message, request_id: int, response_to: int) -> bytes:
    """The whole message, header included."""
    if isinstance(message, OpMsg):
        return encode_op_msg(message, request_id, response_to)
    if isinstance(message, OpQuery):
        return encode_op_query(message, request_id, response_to)
    return encode_op_reply(message, request_id, response_to)
