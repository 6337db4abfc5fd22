"""``wire.peek``: one pass over a request gives what a full decode gives."""

from __future__ import annotations

import struct
from typing import Any

import bson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wire import (
    DocumentSequence,
    Frame,
    InvalidBSON,
    OpCode,
    OpMsg,
    available_compressors,
    compress_message,
    encode_op_msg,
    open_frame,
    parse_header,
    peek_command,
    reply_more_to_come,
)
from wire.opmsg import CHECKSUM_PRESENT, EXHAUST_ALLOWED, MORE_TO_COME

from .strategies import values

_fields = st.sampled_from(
    ["$db", "collection", "maxTimeMS", "autocommit", "startTransaction", "lsid", "a"]
)
_field_values = (
    values
    | st.integers(-(2**31), 2**31 - 1)
    | st.integers(-(2**63), 2**63 - 1).map(bson.Int64)
    | st.booleans()
    | st.text(max_size=6)
)
_names = st.sampled_from(["find", "getMore", "insert", "aggregate", "ping", "é"])
_items = st.tuples(_names, _field_values).flatmap(
    lambda first: st.lists(st.tuples(_fields, _field_values), max_size=8).map(
        lambda rest: [first, *rest]
    )
)


def _raw(items: list[tuple[str, object]]) -> bytes:
    """A BSON document holding ``items`` in order, repeated keys included."""
    body = b"".join(bson.encode({k: v})[4:-1] for k, v in items)
    return struct.pack("<i", len(body) + 5) + body + b"\x00"


def _first(items: list[tuple[str, Any]], key: str) -> Any:
    return next((v for k, v in items if k == key), None)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(_items, st.sampled_from([0, CHECKSUM_PRESENT, MORE_TO_COME, EXHAUST_ALLOWED]))
def test_peek_agrees_with_a_full_decode(items: list[tuple[str, Any]], flags: int) -> None:
    message = encode_op_msg(OpMsg(flags, _raw(items)), 7)
    peek = peek_command(message)
    keys = [k for k, _ in items]
    name, first = items[0]
    assert peek.name == name
    assert peek.flags == flags
    assert bytes(peek.body) == _raw(items)
    assert peek.duplicate == next((k for i, k in enumerate(keys) if k in keys[:i]), None)
    db = _first(items, "$db")
    assert peek.db == (db if isinstance(db, str) else None)
    collection = _first(items, "collection") if name == "getMore" else first
    assert peek.collection == (collection if isinstance(collection, str) else None)
    assert peek.max_time_ms == _number(_first(items, "maxTimeMS"))
    autocommit = _first(items, "autocommit")
    assert peek.autocommit == (autocommit if isinstance(autocommit, bool) else None)
    start = _first(items, "startTransaction")
    assert peek.start_transaction == (start if isinstance(start, bool) else None)
    assert peek.in_transaction == (autocommit is False)
    assert peek.more_to_come == bool(flags & MORE_TO_COME)
    assert peek.exhaust_allowed == bool(flags & EXHAUST_ALLOWED)
    assert not peek.sequences


@pytest.mark.parametrize("flags", [0, CHECKSUM_PRESENT])
def test_sequences_are_seen_before_or_after_the_body(flags: int) -> None:
    body = bson.encode({"insert": "c", "$db": "d", "autocommit": False})
    seq = DocumentSequence("documents", (bson.encode({"a": 1}),))
    after = peek_command(encode_op_msg(OpMsg(flags, body, (seq,)), 1))
    assert (after.name, after.db, after.collection, after.sequences) == ("insert", "d", "c", True)
    # A body after its sequence: legal, sent by no driver, decoded properly.
    sections = (
        b"\x01"
        + struct.pack("<i", 4 + 10 + len(seq.documents[0]))
        + b"documents\x00"
        + seq.documents[0]
    )
    payload = struct.pack("<I", flags & ~CHECKSUM_PRESENT) + sections + b"\x00" + body
    message = struct.pack("<iiii", 16 + len(payload), 1, 0, OpCode.MSG) + payload
    before = peek_command(message)
    assert (before.name, before.db, before.in_transaction, before.sequences) == (
        "insert",
        "d",
        True,
        True,
    )


def test_an_empty_body_is_refused() -> None:
    with pytest.raises(InvalidBSON):
        peek_command(encode_op_msg(OpMsg(0, bson.encode({})), 1))


def test_a_string_that_is_not_utf8_is_refused() -> None:
    body = _raw([("find", "c")]).replace(b"c\x00\x00", b"\xff\x00\x00")
    with pytest.raises(InvalidBSON):
        peek_command(encode_op_msg(OpMsg(0, body), 1))


@pytest.mark.parametrize("compressor", available_compressors())
def test_a_compressed_request_opens_to_the_message_inside(compressor: str) -> None:
    message = encode_op_msg(OpMsg(0, bson.encode({"ping": 1, "$db": "admin"})), 42)
    compressed = compress_message(message, compressor)
    frame = Frame(parse_header(compressed), compressed)
    incoming = open_frame(frame)
    assert incoming.compressor_id == {"snappy": 1, "zlib": 2, "zstd": 3}[compressor]
    assert (incoming.request_id, incoming.op_code, incoming.data) == (42, OpCode.MSG, message)
    assert bson.decode(incoming.op_msg().body) == {"ping": 1, "$db": "admin"}
    plain = open_frame(Frame(parse_header(message), message))
    assert (plain.compressor_id, plain.data) == (0, message)


def test_reply_flags_say_whether_more_replies_follow() -> None:
    body = bson.encode({"ok": 1})
    assert reply_more_to_come(encode_op_msg(OpMsg(MORE_TO_COME, body), 1))
    assert not reply_more_to_come(encode_op_msg(OpMsg(0, body), 1))
