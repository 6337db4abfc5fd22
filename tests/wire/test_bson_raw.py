"""Raw BSON helpers: duplicate top-level keys and sections after a body, read without a
full decode."""

from __future__ import annotations

import struct

import bson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wire import DocumentSequence, OpMsg, encode_op_msg
from wire.bson_raw import duplicate_key, get_str_checked
from wire.opmsg import CHECKSUM_PRESENT, sections_follow_body

from .strategies import values

# Few distinct keys, so that repeated keys are common.
small_keys = st.sampled_from(["$db", "a", "b", "find", "é"])
pairs = st.lists(st.tuples(small_keys, values | st.text(max_size=8)), max_size=8)


def raw_document(items: list[tuple[str, object]]) -> bytes:
    """A BSON document holding ``items`` in order, repeated keys included."""
    body = b"".join(bson.encode({k: v})[4:-1] for k, v in items)
    return struct.pack("<i", len(body) + 5) + body + b"\x00"


def naive_duplicate(items: list[tuple[str, object]]) -> str | None:
    seen: set[str] = set()
    for key, _ in items:
        if key in seen:
            return key
        seen.add(key)
    return None


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(pairs)
def test_duplicate_detection_agrees_with_a_naive_decode(items: list[tuple[str, object]]) -> None:
    raw = raw_document(items)
    assert duplicate_key(raw) == naive_duplicate(items)
    first_db = next((v for k, v in items if k == "$db"), None)
    value, duplicate = get_str_checked(memoryview(raw), "$db")
    assert duplicate == naive_duplicate(items)
    assert value == (first_db if isinstance(first_db, str) else None)


def test_a_repeated_db_is_reported() -> None:
    raw = raw_document([("find", "wal"), ("$db", "shop"), ("$db", "__argon")])
    assert get_str_checked(raw, "$db") == ("shop", "$db")


@pytest.mark.parametrize("flags", [0, CHECKSUM_PRESENT])
def test_sections_after_the_body_are_seen(flags: int) -> None:
    body = bson.encode({"insert": "c", "$db": "d"})
    plain = encode_op_msg(OpMsg(flags, body), 1)
    with_docs = encode_op_msg(
        OpMsg(flags, body, (DocumentSequence("documents", (bson.encode({"a": 1}),)),)), 1
    )
    assert not sections_follow_body(plain)
    assert sections_follow_body(with_docs)
