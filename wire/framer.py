"""Cutting a byte stream into whole messages.

Theory of operation: the caller feeds whatever chunks the socket gave and
pulls whole frames out; the framer never does I/O and never looks past the
header. The header is checked as soon as its 16 bytes are in (length bounds,
known opcode), so garbage is refused before its announced body is waited
for. A frame keeps the exact bytes received, header included, so a proxy can
forward it untouched.

Bytes live in one ``bytearray`` with a read offset; consumed bytes are
dropped only when the buffer empties or the dead prefix is large, so both a
trickle of tiny chunks and one chunk holding thousands of frames cost linear
time. After a ``WireError`` the stream is out of step for good: close it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import TruncatedFrame, UnknownOpCode
from .header import HEADER_LEN, KNOWN_OPCODES, MAX_MESSAGE_SIZE, Header, parse_header

# Dropping consumed bytes only past this many keeps feeding O(n) overall.
_COMPACT_AT = 1 << 16
# Above this size one copy through a memoryview beats slicing (which copies twice).
_VIEW_COPY_AT = 1 << 16


@dataclass(frozen=True, slots=True)
class Frame:
    """One whole message: its header and every byte of it as received."""

    header: Header
    data: bytes

    @property
    def payload(self) -> memoryview:
        """The message after its 16-byte header, without copying."""
        return memoryview(self.data)[HEADER_LEN:]


class Framer:
    """Incremental framer: ``feed`` bytes, then call ``next_frame`` until it returns None."""

    __slots__ = ("_buf", "_header", "_max", "_pos")

    def __init__(self, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._max = max_message_size
        # The header of the frame being waited for, parsed once rather than per feed.
        self._header: Header | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned in a frame (a partial frame if > 0)."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes received from the peer."""
        pos = self._pos
        if pos >= _COMPACT_AT and pos * 2 >= len(self._buf):
            del self._buf[:pos]
            self._pos = 0
        self._buf += data

    def next_frame(self) -> Frame | None:
        """The next whole frame, or None until more bytes are fed.

        Raises ``BadLength``, ``FrameTooLarge`` or ``UnknownOpCode`` as soon as
        a bad header is buffered, whether or not its body has arrived.
        """
        buf = self._buf
        pos = self._pos
        header = self._header
        if header is None:
            if len(buf) - pos < HEADER_LEN:
                return None
            header = parse_header(buf, self._max, offset=pos)
            if header.op_code not in KNOWN_OPCODES:
                raise UnknownOpCode(f"unknown opcode {header.op_code}")
            self._header = header
        end = pos + header.length
        if len(buf) < end:
            return None
        if pos == 0 and end == len(buf):
            data = bytes(buf)
        elif header.length >= _VIEW_COPY_AT:
            with memoryview(buf) as view:
                data = view[pos:end].tobytes()
        else:
            data = bytes(buf[pos:end])
        self._header = None
        if end == len(buf):
            buf.clear()
            self._pos = 0
        else:
            self._pos = end
        return Frame(header, data)

    def eof(self) -> None:
        """The peer closed: raise ``TruncatedFrame`` if a partial frame is pending."""
        if self.buffered:
            raise TruncatedFrame(
                f"connection closed with {self.buffered} bytes of a partial message"
            )
