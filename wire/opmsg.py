"""OP_MSG (opcode 2013), the message of every command since MongoDB 3.6.

Theory of operation: ``flagBits`` (uint32), then sections, then an optional
CRC-32C. Rules enforced on decode:

* flag bits 0-15 are required: a receiver must refuse bits it does not know
  (only checksumPresent and moreToCome exist); bits 16-31 are optional and
  ignored, exhaustAllowed being the one with a meaning;
* exactly one kind-0 section, a BSON document: the command body;
* any number of kind-1 sections (document sequences): int32 size covering
  itself, a C-string identifier (``documents``, ``updates``...), then whole
  documents filling the size exactly;
* with checksumPresent the last 4 bytes are the little-endian CRC-32C of
  every byte of the message before them, header included. It is checked
  before anything else is read.

Documents are bounds-checked, never decoded. Encoding trusts the documents
it is given: they come from ``bson.encode`` or from a decoded message.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import crc32c as _crc32c

from .bson_raw import find_nul, first_key, validate_document_bounds
from .errors import ChecksumMismatch, FrameTooLarge, InvalidBSON, MalformedMessage
from .header import HEADER_LEN, MAX_MESSAGE_SIZE, BytesLike, OpCode, pack_header

CHECKSUM_PRESENT = 1 << 0
MORE_TO_COME = 1 << 1
EXHAUST_ALLOWED = 1 << 16
_KNOWN_REQUIRED = CHECKSUM_PRESENT | MORE_TO_COME
_REQUIRED_MASK = 0xFFFF

_UINT32 = struct.Struct("<I")
_INT32 = struct.Struct("<i")
_FLAGS_AND_KIND = struct.Struct("<IB")  # flagBits, then the kind byte of the first section
_SEQUENCE_HEAD = struct.Struct("<Bi")  # kind 1, section size


def crc32c(data: BytesLike, value: int = 0) -> int:
    """CRC-32C (Castagnoli), the checksum of OP_MSG; ``value`` continues a running CRC."""
    return int(_crc32c.crc32c(data, value))


@dataclass(frozen=True, slots=True)
class DocumentSequence:
    """A kind-1 section: raw BSON documents sent beside the body under one identifier."""

    identifier: str
    documents: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class OpMsg:
    """An OP_MSG: flag bits, the raw BSON body and any document sequences."""

    flags: int
    body: bytes
    sequences: tuple[DocumentSequence, ...] = ()

    @property
    def command_name(self) -> str:
        """The first key of the body; raises ``InvalidBSON`` for an empty body."""
        return first_key(self.body)

    @property
    def checksum_present(self) -> bool:
        """Whether the message carries (or will be encoded with) a CRC-32C."""
        return bool(self.flags & CHECKSUM_PRESENT)

    @property
    def more_to_come(self) -> bool:
        """A request that wants no reply, or a reply with more replies behind it."""
        return bool(self.flags & MORE_TO_COME)

    @property
    def exhaust_allowed(self) -> bool:
        """The client accepts several replies to this one request."""
        return bool(self.flags & EXHAUST_ALLOWED)


def decode_op_msg(payload: BytesLike, *, full_message: BytesLike | None = None) -> OpMsg:
    """Decode an OP_MSG from the bytes after its header.

    With the checksum flag set, ``full_message`` (the same message, header
    included) is needed to verify the CRC-32C; ``ValueError`` if it is missing.
    """
    buf = memoryview(payload)
    if len(buf) < 5:
        raise MalformedMessage("OP_MSG shorter than its flags and one section")
    flags: int = _UINT32.unpack_from(buf, 0)[0]
    unknown = flags & _REQUIRED_MASK & ~_KNOWN_REQUIRED
    if unknown:
        raise MalformedMessage(f"OP_MSG has unknown required flag bits 0x{unknown:x}")
    end = len(buf)
    if flags & CHECKSUM_PRESENT:
        if full_message is None:
            raise ValueError("full_message is needed to verify an OP_MSG checksum")
        end -= 4
        if end < 5:
            raise MalformedMessage("OP_MSG too short for a section and its checksum")
        whole = memoryview(full_message)
        if len(whole) != HEADER_LEN + len(buf):
            raise ValueError("full_message must be the header followed by the payload")
        if crc32c(whole[: len(whole) - 4]) != _UINT32.unpack_from(buf, end)[0]:
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
            size = _section_document(buf, pos, end)
            body = buf[pos : pos + size].tobytes()
            pos += size
        elif kind == 1:
            pos = _decode_sequence(buf, pos, end, sequences)
        else:
            raise MalformedMessage(f"OP_MSG section kind {kind} is unknown")
    if body is None:
        raise MalformedMessage("OP_MSG has no body section")
    return OpMsg(flags, body, tuple(sequences))


def _section_document(buf: memoryview, pos: int, end: int) -> int:
    """Size of the document at ``pos``, which must end by ``end``."""
    size = validate_document_bounds(buf, pos)
    if pos + size > end:
        raise InvalidBSON("BSON document runs past the end of its section")
    return size


def _decode_sequence(buf: memoryview, pos: int, end: int, out: list[DocumentSequence]) -> int:
    """Append the kind-1 section at ``pos`` to ``out``; return where it stops."""
    if end - pos < 4:
        raise MalformedMessage("truncated document sequence")
    size: int = _INT32.unpack_from(buf, pos)[0]
    stop = pos + size
    if size < 5 or stop > end:
        raise MalformedMessage(f"document sequence size {size} does not fit the message")
    ident_end = find_nul(buf, pos + 4, stop)
    if ident_end < 0:
        raise MalformedMessage("document sequence identifier is not terminated")
    try:
        identifier = str(buf[pos + 4 : ident_end], "utf-8")
    except UnicodeDecodeError:
        raise MalformedMessage("document sequence identifier is not UTF-8") from None
    docs: list[bytes] = []
    cur = ident_end + 1
    while cur < stop:
        length = _section_document(buf, cur, stop)
        docs.append(buf[cur : cur + length].tobytes())
        cur += length
    out.append(DocumentSequence(identifier, tuple(docs)))
    return stop


def encode_op_msg(msg: OpMsg, request_id: int, response_to: int = 0) -> bytes:
    """The whole message, header included; a checksum is appended if the flags ask for one.

    Raises ``FrameTooLarge`` if the result would exceed the maximum message size.
    """
    parts: list[bytes] = [b"", _FLAGS_AND_KIND.pack(msg.flags, 0), msg.body]
    length = HEADER_LEN + 5 + len(msg.body)
    for seq in msg.sequences:
        ident = seq.identifier.encode() + b"\x00"
        size = 4 + len(ident) + sum(map(len, seq.documents))
        parts += (_SEQUENCE_HEAD.pack(1, size), ident, *seq.documents)
        length += 1 + size
    checksum = msg.flags & CHECKSUM_PRESENT
    if checksum:
        length += 4
    if length > MAX_MESSAGE_SIZE:
        raise FrameTooLarge(f"OP_MSG of {length} bytes exceeds {MAX_MESSAGE_SIZE}")
    parts[0] = pack_header(length, request_id, response_to, OpCode.MSG)
    if checksum:
        # A running CRC over the parts spares joining the message twice.
        crc = 0
        for part in parts:
            crc = crc32c(part, crc)
        parts.append(_UINT32.pack(crc))
    return b"".join(parts)


def sections_follow_body(message: BytesLike) -> bool:
    """Whether an OP_MSG whose first section is its body has more sections after it.

    ``message`` is the whole message, header included, with a kind-0 section
    first; the body's length prefix says where it ends, before any checksum.
    """
    flags = int.from_bytes(message[16:20], "little")
    end = len(message) - (4 if flags & CHECKSUM_PRESENT else 0)
    return 21 + validate_document_bounds(message, 21) < end
