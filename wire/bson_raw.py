"""Reading raw BSON without decoding it.

Theory of operation: the proxy's hot path needs a command's name (the first
key of its body) and now and then one top-level field; decoding whole
documents for that would cost more than relaying them. These helpers walk the
top level of a document by the lengths BSON encodes, skip values unread, and
raise ``InvalidBSON`` for any structure that does not add up. Lengths are
taken from the document itself, so a buffer may hold more after it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from .errors import InvalidBSON

_INT32 = struct.Struct("<i")

# type byte -> fixed value size; types absent here have variable size.
_FIXED = {
    0x01: 8,
    0x06: 0,
    0x07: 12,
    0x08: 1,
    0x09: 8,
    0x0A: 0,
    0x10: 4,
    0x11: 8,
    0x12: 8,
    0x13: 16,
    0x7F: 0,
    0xFF: 0,
}
STRING = 0x02
DOCUMENT = 0x03
ARRAY = 0x04
BOOLEAN = 0x08


def validate_document_bounds(buf: bytes | bytearray | memoryview, offset: int = 0) -> int:
    """Check the length prefix and terminator of the document at ``offset``; return its size."""
    if len(buf) - offset < 5:
        raise InvalidBSON("BSON document shorter than 5 bytes")
    (length,) = _INT32.unpack_from(buf, offset)
    if length < 5 or offset + length > len(buf):
        raise InvalidBSON(f"BSON document length {length} does not fit the message")
    if buf[offset + length - 1] != 0:
        raise InvalidBSON("BSON document does not end with a NUL byte")
    return int(length)


def _cstring_end(buf: memoryview, start: int, end: int) -> int:
    for i in range(start, end):
        if buf[i] == 0:
            return i
    raise InvalidBSON("unterminated BSON key or C string")


def _value_end(buf: memoryview, kind: int, start: int, end: int) -> int:
    fixed = _FIXED.get(kind)
    if fixed is not None:
        stop = start + fixed
    elif kind in (STRING, 0x0D, 0x0E):  # string, JavaScript code, symbol
        stop = _sized(buf, start, end, 4)
        if buf[stop - 1] != 0:
            raise InvalidBSON("BSON string does not end with a NUL byte")
    elif kind in (DOCUMENT, ARRAY):
        stop = start + validate_document_bounds(buf[:end], start)
    elif kind == 0x05:  # binary: int32 length, subtype byte, bytes
        stop = _sized(buf, start, end, 5)
    elif kind == 0x0B:  # regex: two C strings
        stop = _cstring_end(buf, _cstring_end(buf, start, end) + 1, end) + 1
    elif kind == 0x0C:  # DBPointer: string then ObjectId
        stop = _sized(buf, start, end, 4) + 12
    elif kind == 0x0F:  # code with scope: int32 total length
        if end - start < 4:
            raise InvalidBSON("truncated code-with-scope")
        stop = start + _INT32.unpack_from(buf, start)[0]
        if stop < start + 14:
            raise InvalidBSON("code-with-scope length too small")
    else:
        raise InvalidBSON(f"unknown BSON type 0x{kind:02x}")
    if stop > end:
        raise InvalidBSON("BSON value runs past the end of its document")
    return stop


def _sized(buf: memoryview, start: int, end: int, extra: int) -> int:
    if end - start < 4:
        raise InvalidBSON("truncated BSON length prefix")
    size: int = _INT32.unpack_from(buf, start)[0]
    if size < 0 or (extra == 4 and size < 1):
        raise InvalidBSON(f"bad BSON value length {size}")
    return start + extra + size


def iter_elements(
    doc: bytes | bytearray | memoryview,
) -> Iterator[tuple[str, int, int, int]]:
    """Yield ``(key, bson_type, value_start, value_end)`` for each top-level element."""
    buf = memoryview(doc)
    end = validate_document_bounds(buf) - 1  # the terminating NUL
    pos = 4
    while pos < end:
        kind = buf[pos]
        key_end = _cstring_end(buf, pos + 1, end)
        try:
            key = bytes(buf[pos + 1 : key_end]).decode()
        except UnicodeDecodeError:
            raise InvalidBSON("BSON key is not UTF-8") from None
        start = key_end + 1
        stop = _value_end(buf, kind, start, end)
        yield key, kind, start, stop
        pos = stop
    if pos != end:
        raise InvalidBSON("BSON elements overrun their document")


def first_key(doc: bytes | bytearray | memoryview) -> str:
    """The first key of a document: a command's name. Values are not read."""
    buf = memoryview(doc)
    end = validate_document_bounds(buf) - 1
    if end <= 4:
        raise InvalidBSON("empty command document")
    key_end = _cstring_end(buf, 5, end)
    try:
        return bytes(buf[5:key_end]).decode()
    except UnicodeDecodeError:
        raise InvalidBSON("BSON key is not UTF-8") from None


def get_raw(doc: bytes | bytearray | memoryview, key: str) -> tuple[int, memoryview] | None:
    """The BSON type and raw value bytes of top-level field ``key``, or None."""
    buf = memoryview(doc)
    for name, kind, start, stop in iter_elements(buf):
        if name == key:
            return kind, buf[start:stop]
    return None


def get_str(doc: bytes | bytearray | memoryview, key: str) -> str | None:
    """A top-level string field's value, or None if absent or not a string."""
    found = get_raw(doc, key)
    if found is None or found[0] != STRING:
        return None
    try:
        return bytes(found[1][4:-1]).decode()
    except UnicodeDecodeError:
        raise InvalidBSON("BSON string is not UTF-8") from None
