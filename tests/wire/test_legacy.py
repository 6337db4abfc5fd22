"""OP_QUERY and OP_REPLY round trips and malformed input."""

from __future__ import annotations

import bson
import pytest
from hypothesis import given, settings

from wire import (
    InvalidBSON,
    MalformedMessage,
    OpQuery,
    OpReply,
    decode_op_query,
    decode_op_reply,
    encode_op_query,
    encode_op_reply,
)

from .strategies import ids, op_queries, op_replies


@settings(max_examples=200, deadline=None)
@given(op_queries, ids)
def test_query_round_trip(query: OpQuery, request_id: int) -> None:
    data = encode_op_query(query, request_id)
    assert decode_op_query(data[16:]) == query


@settings(max_examples=200, deadline=None)
@given(op_replies, ids, ids)
def test_reply_round_trip(reply: OpReply, request_id: int, response_to: int) -> None:
    data = encode_op_reply(reply, request_id, response_to)
    assert decode_op_reply(data[16:]) == reply


def test_query_names() -> None:
    q = OpQuery(0, "admin.$cmd", 0, -1, bson.encode({"hello": 1}))
    assert (q.database, q.collection) == ("admin", "$cmd")


def test_reply_count_must_match() -> None:
    data = encode_op_reply(OpReply(0, 0, 0, (bson.encode({"a": 1}),)), 1, 0)
    tampered = data[16:32] + (2).to_bytes(4, "little") + data[36:]
    with pytest.raises((MalformedMessage, InvalidBSON)):
        decode_op_reply(tampered)


def test_query_with_unterminated_name() -> None:
    with pytest.raises(MalformedMessage):
        decode_op_query(b"\x00\x00\x00\x00" + b"admin" * 5)
