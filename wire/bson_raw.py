"""Reading raw BSON without decoding it.

Theory of operation: the proxy's hot path needs a command's name (the first
key of its body) and now and then one top-level field; decoding whole
documents for that would cost more than relaying them. These helpers walk the
top level of a document by the lengths BSON encodes, skip values unread, and
raise ``InvalidBSON`` for any structure that does not add up. Rules:

* a document is int32 length (counting itself), elements, a NUL byte;
* an element is a type byte, a NUL-terminated key, a value whose size the
  type fixes or the value's own length prefix states;
* lengths come from the document itself, so a buffer may hold more after it;
* nested documents are bounds-checked, not walked; string values are not
  checked for UTF-8 (keys are, as they are returned as ``str``).

Every function accepts ``bytes``, ``bytearray`` or ``memoryview`` and copies
nothing but the keys and values it returns.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator

from .errors import InvalidBSON
from .header import BytesLike

_INT32 = struct.Struct("<i")
# re searches any buffer in C; bytes.find would need a copy of a memoryview.
_NUL = re.compile(b"\x00")

# BSON type bytes used by callers.
DOUBLE = 0x01
STRING = 0x02
DOCUMENT = 0x03
ARRAY = 0x04
BINARY = 0x05
OBJECT_ID = 0x07
BOOLEAN = 0x08
DATETIME = 0x09
NULL = 0x0A
INT32 = 0x10
TIMESTAMP = 0x11
INT64 = 0x12
DECIMAL128 = 0x13

# Per type byte: a fixed value size (>= 0), or one of these tags for variable sizes.
_STR, _DOC, _BIN, _REGEX, _DBPTR, _CODE_W_S, _BAD = -1, -2, -3, -4, -5, -6, -7
_LAYOUT = [_BAD] * 256
for _kind, _size in {
    0x01: 8,  # double
    0x02: _STR,  # string
    0x03: _DOC,  # document
    0x04: _DOC,  # array
    0x05: _BIN,  # binary: int32 length, subtype, bytes
    0x06: 0,  # undefined
    0x07: 12,  # ObjectId
    0x08: 1,  # boolean
    0x09: 8,  # UTC datetime
    0x0A: 0,  # null
    0x0B: _REGEX,  # regex: two C strings
    0x0C: _DBPTR,  # DBPointer: string then ObjectId
    0x0D: _STR,  # JavaScript code
    0x0E: _STR,  # symbol
    0x0F: _CODE_W_S,  # code with scope: int32 total length, string, document
    0x10: 4,  # int32
    0x11: 8,  # timestamp
    0x12: 8,  # int64
    0x13: 16,  # decimal128
    0x7F: 0,  # max key
    0xFF: 0,  # min key
}.items():
    _LAYOUT[_kind] = _size
del _kind, _size
_CODE_W_S_MIN = 4 + 5 + 5  # int32 total, empty string, empty document


def find_nul(buf: BytesLike, start: int, end: int) -> int:
    """Index of the first NUL byte in ``buf[start:end]``, or -1."""
    match = _NUL.search(buf, start, end)
    return -1 if match is None else match.start()


def validate_document_bounds(buf: BytesLike, offset: int = 0) -> int:
    """Check the length prefix and terminator of the document at ``offset``; return its size.

    Only the frame of the document is checked: its length is at least 5, it
    fits in ``buf`` and its last byte is NUL. Raises ``InvalidBSON``.
    """
    return _doc_size(buf, offset, len(buf))


def _doc_size(buf: BytesLike, offset: int, limit: int) -> int:
    if offset < 0 or limit - offset < 5:
        raise InvalidBSON("BSON document shorter than 5 bytes")
    length: int = _INT32.unpack_from(buf, offset)[0]
    if length < 5 or length > limit - offset:
        raise InvalidBSON(f"BSON document length {length} does not fit in its container")
    if buf[offset + length - 1] != 0:
        raise InvalidBSON("BSON document does not end with a NUL byte")
    return length


def _cstring_end(buf: BytesLike, start: int, end: int) -> int:
    match = _NUL.search(buf, start, end)
    if match is None:
        raise InvalidBSON("unterminated BSON key or C string")
    return match.start()


def _key(buf: BytesLike, start: int, stop: int) -> str:
    try:
        return str(buf[start:stop], "utf-8")
    except UnicodeDecodeError:
        raise InvalidBSON("BSON key is not UTF-8") from None


def _string_end(buf: BytesLike, start: int, end: int) -> int:
    """End of a BSON string (int32 size counting the NUL, bytes, NUL) at ``start``."""
    if end - start < 5:
        raise InvalidBSON("truncated BSON string")
    size: int = _INT32.unpack_from(buf, start)[0]
    if size < 1 or size > end - start - 4:
        raise InvalidBSON(f"BSON string length {size} does not fit in its document")
    stop = start + 4 + size
    if buf[stop - 1] != 0:
        raise InvalidBSON("BSON string does not end with a NUL byte")
    return stop


def _value_end(buf: BytesLike, kind: int, start: int, end: int) -> int:
    """End of the value of type ``kind`` at ``start``; ``end`` is the parent's terminator."""
    layout = _LAYOUT[kind]
    if layout >= 0:
        stop = start + layout
    elif layout == _STR:
        return _string_end(buf, start, end)
    elif layout == _DOC:
        return start + _doc_size(buf, start, end)
    elif layout == _BIN:
        if end - start < 5:
            raise InvalidBSON("truncated BSON binary")
        size: int = _INT32.unpack_from(buf, start)[0]
        if size < 0:
            raise InvalidBSON(f"BSON binary length {size} is negative")
        stop = start + 5 + size
    elif layout == _REGEX:
        stop = _cstring_end(buf, _cstring_end(buf, start, end) + 1, end) + 1
    elif layout == _DBPTR:
        stop = _string_end(buf, start, end) + 12
    elif layout == _CODE_W_S:
        if end - start < 4:
            raise InvalidBSON("truncated BSON code with scope")
        total: int = _INT32.unpack_from(buf, start)[0]
        if total < _CODE_W_S_MIN:
            raise InvalidBSON(f"BSON code-with-scope length {total} is too small")
        stop = start + total
    else:
        raise InvalidBSON(f"unknown BSON type 0x{kind:02x}")
    if stop > end:
        raise InvalidBSON("BSON value runs past the end of its document")
    return stop


def iter_elements(doc: BytesLike) -> Iterator[tuple[str, int, int, int]]:
    """Yield ``(key, bson_type, value_start, value_end)`` for each top-level element.

    Offsets index ``doc``. Values are skipped by their sizes, never decoded.
    Raises ``InvalidBSON`` when an element does not fit, at the point it is reached.
    """
    end = validate_document_bounds(doc) - 1  # the terminating NUL
    pos = 4
    while pos < end:
        kind = doc[pos]
        key_end = _cstring_end(doc, pos + 1, end)
        key = _key(doc, pos + 1, key_end)
        pos = _value_end(doc, kind, key_end + 1, end)
        yield key, kind, key_end + 1, pos


def first_key(doc: BytesLike) -> str:
    """The first key of a document: a command's name. Values are not read."""
    end = validate_document_bounds(doc) - 1
    if end <= 4:
        raise InvalidBSON("empty document has no first key")
    if _LAYOUT[doc[4]] == _BAD:
        raise InvalidBSON(f"unknown BSON type 0x{doc[4]:02x}")
    return _key(doc, 5, _cstring_end(doc, 5, end))


def get_raw(doc: BytesLike, key: str) -> tuple[int, memoryview] | None:
    """The BSON type and raw value bytes of top-level field ``key``, or None.

    The value is a view into ``doc``, in its wire form (a string keeps its
    length prefix and NUL). Only elements up to the match are walked.
    """
    for name, kind, start, stop in iter_elements(doc):
        if name == key:
            return kind, memoryview(doc)[start:stop]
    return None


def get_str(doc: BytesLike, key: str) -> str | None:
    """A top-level string field's value, or None if absent or not a string."""
    found = get_raw(doc, key)
    if found is None or found[0] != STRING:
        return None
    try:
        return str(found[1][4:-1], "utf-8")
    except UnicodeDecodeError:
        raise InvalidBSON(f"BSON string {key!r} is not UTF-8") from None


def get_str_checked(doc: BytesLike, key: str) -> tuple[str | None, str | None]:
    """``(value, duplicate)``: top-level string ``key`` and the first repeated key.

    Walks every top-level element (values unread), so a caller that needs one
    field also learns, at the cost of a set of keys, whether the document
    names any field twice. A repeated field is ambiguous: parsers disagree on
    which occurrence wins (the first, the last, or an error), so a proxy that
    reads one while the server reads another would check one thing and run
    another. ``value`` is None if ``key`` is absent or not a string; when
    ``key`` itself repeats, ``value`` is the first and ``duplicate`` is ``key``.
    """
    seen: set[str] = set()
    value: str | None = None
    duplicate: str | None = None
    for name, kind, start, stop in iter_elements(doc):
        if name in seen:
            duplicate = duplicate or name
            continue
        seen.add(name)
        if name == key and kind == STRING:
            try:
                value = str(memoryview(doc)[start + 4 : stop - 1], "utf-8")
            except UnicodeDecodeError:
                raise InvalidBSON(f"BSON string {key!r} is not UTF-8") from None
    return value, duplicate


def duplicate_key(doc: BytesLike) -> str | None:
    """The first top-level key that ``doc`` holds twice, or None."""
    return get_str_checked(doc, "")[1]
