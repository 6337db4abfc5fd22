"""OP_MSG: round trips, checksums, required flag bits, section rules."""

from __future__ import annotations

import struct

import bson
import pytest
from hypothesis import given, settings

from wire import (
    ChecksumMismatch,
    DocumentSequence,
    InvalidBSON,
    MalformedMessage,
    OpMsg,
    decode_op_msg,
    encode_op_msg,
    parse_header,
)
from wire.opmsg import CHECKSUM_PRESENT, crc32c

from .strategies import ids, op_msgs


@settings(max_examples=300, deadline=None)
@given(op_msgs, ids, ids)
def test_round_trip(msg: OpMsg, request_id: int, response_to: int) -> None:
    data = encode_op_msg(msg, request_id, response_to)
    header = parse_header(data)
    assert (header.length, header.request_id, header.response_to, header.op_code) == (
        len(data),
        request_id,
        response_to,
        2013,
    )
    assert decode_op_msg(data[16:], full_message=data) == msg


def test_known_bytes_from_the_spec_layout() -> None:
    body = bson.encode({"insert": "c", "$db": "d"})
    doc = bson.encode({"_id": 1})
    msg = OpMsg(0, body, (DocumentSequence("documents", (doc,)),))
    data = encode_op_msg(msg, 7, 0)
    seq_size = 4 + len(b"documents\x00") + len(doc)
    expected = (
        struct.pack("<iiii", 16 + 4 + 1 + len(body) + 1 + seq_size, 7, 0, 2013)
        + b"\x00\x00\x00\x00"
        + b"\x00"
        + body
        + b"\x01"
        + struct.pack("<i", seq_size)
        + b"documents\x00"
        + doc
    )
    assert data == expected


def test_checksum_is_crc32c_of_the_message() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    data = encode_op_msg(OpMsg(CHECKSUM_PRESENT, bson.encode({"ping": 1})), 1)
    assert struct.unpack("<I", data[-4:])[0] == crc32c(data[:-4])


@given(op_msgs)
@settings(max_examples=100, deadline=None)
def test_any_flipped_byte_breaks_the_checksum(msg: OpMsg) -> None:
    data = bytearray(encode_op_msg(OpMsg(msg.flags | CHECKSUM_PRESENT, msg.body, msg.sequences), 1))
    data[len(data) // 2 + 8] ^= 0x40
    with pytest.raises((ChecksumMismatch, MalformedMessage, InvalidBSON)):
        decode_op_msg(bytes(data[16:]), full_message=bytes(data))


def test_unknown_required_flag_bit_is_refused() -> None:
    data = encode_op_msg(OpMsg(1 << 5, bson.encode({"ping": 1})), 1)
    with pytest.raises(MalformedMessage, match="required flag"):
        decode_op_msg(data[16:])


def test_unknown_optional_flag_bit_is_ignored() -> None:
    data = encode_op_msg(OpMsg(1 << 20, bson.encode({"ping": 1})), 1)
    assert decode_op_msg(data[16:]).flags == 1 << 20


def test_exactly_one_body() -> None:
    body = bson.encode({"ping": 1})
    two = b"\x00\x00\x00\x00" + b"\x00" + body + b"\x00" + body
    with pytest.raises(MalformedMessage, match="more than one body"):
        decode_op_msg(two)
    seq_only = b"\x00\x00\x00\x00" + b"\x01" + struct.pack("<i", 6) + b"ab\x00"[:2] + b"\x00"
    with pytest.raises(MalformedMessage):
        decode_op_msg(seq_only)


def test_invalid_bson_body() -> None:
    with pytest.raises(InvalidBSON):
        decode_op_msg(b"\x00\x00\x00\x00\x00" + struct.pack("<i", 50) + b"\x10a\x00")


def test_sequence_must_be_filled_exactly() -> None:
    body = bson.encode({"insert": "c"})
    doc = bson.encode({"x": 1})
    size = 4 + 2 + len(doc) + 3  # claims three bytes more than it holds
    payload = b"\x00\x00\x00\x00\x00" + body + b"\x01" + struct.pack("<i", size) + b"d\x00" + doc
    with pytest.raises((MalformedMessage, InvalidBSON)):
        decode_op_msg(payload + b"\x00\x00\x00")
