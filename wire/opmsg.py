"""OP_MSG (opcode 2013), the message of every command since MongoDB 3.6.

Theory of operation: ``flagBits`` (uint32), then sections, then an optional
CRC-32C. A kind-0 section is one BSON document, the command body; there must
be exactly one. A kind-1 section is a document sequence: int32 size (covering
itself), a C-string identifier (``documents``, ``updates``…), then documents
filling the rest exactly. Flag bits 0-15 are required: a receiver must refuse
bits it does not know. Bits 16-31 are optional and may be ignored.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import crc32c as _crc32c

from .bson_raw import first_key, validate_document_bounds
from .errors import ChecksumMismatch, MalformedMessage
from .header import HEADER_LEN, MAX_MESSAGE_SIZE, OpCode, pack_header

CHECKSUM_PRESENT = 1 << 0
MORE_TO_COME = 1 << 1
EXHAUST_ALLOWED = 1 << 16
_KNOWN_REQUIRED = CHECKSUM_PRESENT | MORE_TO_COME
_REQUIRED_MASK = 0xFFFF

_UINT32 = struct.Struct("<I")
_INT32 = struct.Struct("<i")


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C (Castagnoli), the checksum OP_MSG uses."""
    return int(_crc32c.crc32c(data))


@dataclass(frozen=True, slots=True)
class DocumentSequence:
    """A kind-1 section: documents sent beside the body under one identifier."""

    identifier: str
    documents: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class OpMsg:
    """An OP_MSG: flags, the raw BSON body and any document sequences."""

    flags: int
    body: bytes
    sequences: tuple[DocumentSequence, ...] = ()

    @property
    def command_name(self) -> str:
        return first_key(self.body)

    @property
    def checksum_present(self) -> bool:
        return bool(self.flags & CHECKSUM_PRESENT)

    @property
    def more_to_come(self) -> bool:
        return bool(self.flags & MORE_TO_COME)

    @property
    def exhaust_allowed(self) -> bool:
        return bool(self.flags & EXHAUST_ALLOWED)


def decode_op_msg(
    payload: bytes | bytearray | memoryview,
    *,
    full_message: bytes | bytearray | memoryview | None = None,
) -> OpMsg:
    """Decode an OP_MSG from the bytes after its header.

    With the checksum flag set, ``full_message`` (header included) is needed to
    verify the CRC-32C.
    """
    buf = memoryview(payload)
    if len(buf) < 5:
        raise MalformedMessage("OP_MSG shorter than its flags and one section")
    (flags,) = _UINT32.unpack_from(buf, 0)
    unknown = flags & _REQUIRED_MASK & ~_KNOWN_REQUIRED
    if unknown:
        raise MalformedMessage(f"OP_MSG has unknown required flag bits 0x{unknown:x}")
    end = len(buf)
    if flags & CHECKSUM_PRESENT:
        if full_message is None:
            raise ValueError("full_message is needed to verify an OP_MSG checksum")
        if end < 9:
            raise MalformedMessage("OP_MSG too short for its checksum")
        end -= 4
        whole = memoryview(full_message)
        (expected,) = _UINT32.unpack_from(buf, end)
        if crc32c(whole[: len(whole) - 4]) != expected:
            raise ChecksumMismatch("OP_MSG checksum does not match its contents")
    body: bytes | None = None
    sequences: list[DocumentSequence] = []
    pos = 4
    while pos < end:
        kind = buf[pos]
        pos += 1
        if kind == 0:
            if body is not None:
                raise MalformedMessage("OP_MSG has more than one body section")
            size = validate_document_bounds(buf[:end], pos)
            body = bytes(buf[pos : pos + size])
            pos += size
        elif kind == 1:
            sequence, pos = _decode_sequence(buf, pos, end)
            sequences.append(sequence)
        else:
            raise MalformedMessage(f"OP_MSG section kind {kind} is unknown")
    if body is None:
        raise MalformedMessage("OP_MSG has no body section")
    return OpMsg(flags, body, tuple(sequences))


def _decode_sequence(buf: memoryview, pos: int, end: int) -> tuple[DocumentSequence, int]:
    if end - pos < 4:
        raise MalformedMessage("truncated document sequence")
    (size,) = _INT32.unpack_from(buf, pos)
    stop = pos + size
    if size < 5 or stop > end:
        raise MalformedMessage(f"document sequence size {size} does not fit the message")
    ident_end = pos + 4
    while ident_end < stop and buf[ident_end] != 0:
        ident_end += 1
    if ident_end >= stop:
        raise MalformedMessage("document sequence identifier is not terminated")
    try:
        identifier = bytes(buf[pos + 4 : ident_end]).decode()
    except UnicodeDecodeError:
        raise MalformedMessage("document sequence identifier is not UTF-8") from None
    docs: list[bytes] = []
    cur = ident_end + 1
    section = buf[:stop]
    while cur < stop:
        length = validate_document_bounds(section, cur)
        docs.append(bytes(buf[cur : cur + length]))
        cur += length
    return DocumentSequence(identifier, tuple(docs)), stop


def encode_op_msg(msg: OpMsg, request_id: int, response_to: int = 0) -> bytes:
    """The whole message, header included; a checksum is appended if the flag asks for one."""
    parts = [_UINT32.pack(msg.flags), b"\x00", msg.body]
    for seq in msg.sequences:
        ident = seq.identifier.encode() + b"\x00"
        size = 4 + len(ident) + sum(len(d) for d in seq.documents)
        parts += [b"\x01", _INT32.pack(size), ident, *seq.documents]
    payload = b"".join(parts)
    checksum = bool(msg.flags & CHECKSUM_PRESENT)
    length = HEADER_LEN + len(payload) + (4 if checksum else 0)
    if length > MAX_MESSAGE_SIZE:
        from .errors import FrameTooLarge

        raise FrameTooLarge(f"OP_MSG of {length} bytes exceeds {MAX_MESSAGE_SIZE}")
    message = pack_header(length, request_id, response_to, OpCode.MSG) + payload
    if checksum:
        message += _UINT32.pack(crc32c(message))
    return message
