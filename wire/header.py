"""The 16-byte header every wire-protocol message starts with.

Theory of operation: ``messageLength`` (int32, the whole message including
the header), ``requestID``, ``responseTo`` and ``opCode``, all little-endian.
A length is checked as soon as the header is seen, before any body arrives,
so a peer cannot make us buffer 2 GB by announcing it. The opcode is not
checked here: whether an opcode is acceptable is the framer's and the
decoder's business.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import TypeAlias

from .errors import BadLength, FrameTooLarge, TruncatedFrame

HEADER = struct.Struct("<iiii")
HEADER_LEN = 16
MAX_MESSAGE_SIZE = 48_000_000

#: What the decoders accept: anything indexable to bytes without a copy.
BytesLike: TypeAlias = bytes | bytearray | memoryview


class OpCode(enum.IntEnum):
    """Opcodes of the protocol; only MSG, QUERY, REPLY and COMPRESSED are in use."""

    REPLY = 1
    UPDATE = 2001
    INSERT = 2002
    QUERY = 2004
    GET_MORE = 2005
    DELETE = 2006
    KILL_CURSORS = 2007
    COMPRESSED = 2012
    MSG = 2013


KNOWN_OPCODES = frozenset(int(op) for op in OpCode)


@dataclass(frozen=True, slots=True)
class Header:
    """A parsed message header; ``length`` counts the header itself."""

    length: int
    request_id: int
    response_to: int
    op_code: int


def parse_header(buf: BytesLike, max_size: int = MAX_MESSAGE_SIZE, *, offset: int = 0) -> Header:
    """Parse the 16 bytes at ``offset`` of ``buf``; refuse impossible or oversized lengths.

    Raises ``BadLength`` for a length below 16 (negative included),
    ``FrameTooLarge`` for one above ``max_size`` and ``TruncatedFrame`` if
    fewer than 16 bytes are given.
    """
    if len(buf) - offset < HEADER_LEN or offset < 0:
        raise TruncatedFrame(f"a header needs 16 bytes, {max(len(buf) - offset, 0)} given")
    length, request_id, response_to, op_code = HEADER.unpack_from(buf, offset)
    if length < HEADER_LEN:
        raise BadLength(f"message length {length} is shorter than the 16-byte header")
    if length > max_size:
        raise FrameTooLarge(f"message length {length} exceeds the maximum of {max_size} bytes")
    return Header(length, request_id, response_to, op_code)


def pack_header(length: int, request_id: int, response_to: int, op_code: int) -> bytes:
    """The 16 header bytes for a message of ``length`` bytes in all."""
    return HEADER.pack(length, request_id, response_to, op_code)
