"""Cutting a byte stream into whole messages.

Theory of operation: the caller feeds whatever chunks the socket gave and
pulls whole frames out; the framer never does I/O. The header is checked as
soon as its 16 bytes are in (length bounds, known opcode), so garbage is
refused before its announced body is waited for. A frame keeps the exact bytes
received, header included, so a proxy can forward it untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import TruncatedFrame, UnknownOpCode
from .header import HEADER_LEN, KNOWN_OPCODES, MAX_MESSAGE_SIZE, Header, parse_header

# Compacting the buffer only past this many consumed bytes keeps feeding O(n).
_COMPACT_AT = 1 << 16


@dataclass(frozen=True, slots=True)
class Frame:
    """One whole message: its header and every byte of it as received."""

    header: Header
    data: bytes

    @property
    def payload(self) -> memoryview:
        """The message after its 16-byte header."""
        return memoryview(self.data)[HEADER_LEN:]


class Framer:
    """Incremental framer: ``feed`` bytes, then ``next_frame`` until it returns None."""

    def __init__(self, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._max = max_message_size
        self._header: Header | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned in a frame (a partial frame if > 0)."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes received from the peer."""
        if self._pos >= _COMPACT_AT and self._pos * 2 >= len(self._buf):
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_frame(self) -> Frame | None:
        """The next whole frame, or None until more bytes are fed."""
        available = len(self._buf) - self._pos
        header = self._header
        if header is None:
            if available < HEADER_LEN:
                return None
            header = parse_header(
                memoryview(self._buf)[self._pos : self._pos + HEADER_LEN], self._max
            )
            if header.op_code not in KNOWN_OPCODES:
                raise UnknownOpCode(f"unknown opcode {header.op_code}")
            self._header = header
        if available < header.length:
            return None
        start = self._pos
        data = bytes(self._buf[start : start + header.length])
        self._pos = start + header.length
        self._header = None
        if self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        return Frame(header, data)

    def eof(self) -> None:
        """The peer closed: raise ``TruncatedFrame`` if a partial frame is pending."""
        if self.buffered:
            raise TruncatedFrame(
                f"connection closed with {self.buffered} bytes of a partial message"
            )
