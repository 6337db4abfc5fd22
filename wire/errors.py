"""Typed errors of the wire codec.

Theory of operation: every way bytes from a peer can be wrong raises a
subclass of ``WireError``, so a server can catch one type, close that
connection and carry on. Nothing else escapes the decoders for bad input;
``ValueError`` and ``TypeError`` are kept for mistakes of the calling code.
"""

from __future__ import annotations


class WireError(Exception):
    """Bytes that are not a valid MongoDB wire-protocol message."""


class FrameTooLarge(WireError):
    """A message longer than the maximum message size (48,000,000 bytes by default)."""


class BadLength(WireError):
    """A message length that cannot be right (shorter than a header, negative)."""


class TruncatedFrame(WireError):
    """The bytes stop in the middle of a message."""


class UnknownOpCode(WireError):
    """An opcode that is not part of the protocol, or no longer accepted."""


class InvalidBSON(WireError):
    """A BSON document whose structure is broken."""


class ChecksumMismatch(WireError):
    """An OP_MSG whose CRC-32C does not match its bytes."""


class UnsupportedCompressor(WireError):
    """A compressor id or name this side does not know or cannot load."""


class MalformedMessage(WireError):
    """A message whose sections or fields do not fit together."""
