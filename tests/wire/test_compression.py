"""OP_COMPRESSED: every compressor round-trips; lies and bombs are refused."""

from __future__ import annotations

import struct
import zlib

import bson
import pytest
import zstandard
from hypothesis import given, settings

from wire import (
    FrameTooLarge,
    MalformedMessage,
    OpMsg,
    UnsupportedCompressor,
    available_compressors,
    compress_message,
    decode_frame,
    decompress_payload,
    encode_op_msg,
    must_not_compress,
    parse_header,
)
from wire.framer import Frame

from .strategies import op_msgs


def _compressed(op_code: int, size: int, compressor: int, data: bytes) -> bytes:
    return struct.pack("<iiB", op_code, size, compressor) + data


def test_all_three_compressors_available() -> None:
    assert set(available_compressors()) == {"zstd", "zlib", "snappy"}


@pytest.mark.parametrize("compressor", ["zstd", "zlib", "snappy", "noop"])
@settings(max_examples=60, deadline=None)
@given(msg=op_msgs)
def test_round_trip(compressor: str, msg: OpMsg) -> None:
    plain = encode_op_msg(msg, 11, 22)
    packed = compress_message(plain, compressor)
    header = parse_header(packed)
    assert (header.request_id, header.response_to, header.op_code) == (11, 22, 2012)
    op_code, payload = decompress_payload(packed[16:])
    assert op_code == 2013 and payload == plain[16:]
    decoded = decode_frame(Frame(header, packed))
    assert decoded.message == msg
    assert decoded.compressor_id == {"noop": 0, "snappy": 1, "zlib": 2, "zstd": 3}[compressor]


def test_size_lie_is_refused() -> None:
    body = b"x" * 100
    with pytest.raises(MalformedMessage):
        decompress_payload(_compressed(2013, 50, 2, zlib.compress(body)))
    with pytest.raises(MalformedMessage):
        decompress_payload(_compressed(2013, 500, 2, zlib.compress(body)))


@pytest.mark.parametrize("compressor", [2, 3])
def test_decompression_bomb_is_refused_without_expanding(compressor: int) -> None:
    huge = b"\x00" * 200_000_000
    data = zlib.compress(huge, 9) if compressor == 2 else zstandard.ZstdCompressor().compress(huge)
    with pytest.raises(MalformedMessage):
        decompress_payload(_compressed(2013, 1000, compressor, data))


def test_announced_size_over_the_maximum() -> None:
    with pytest.raises(FrameTooLarge):
        decompress_payload(_compressed(2013, 48_000_000, 2, b""))


def test_unknown_compressor_and_corrupt_data() -> None:
    with pytest.raises(UnsupportedCompressor):
        decompress_payload(_compressed(2013, 3, 9, b"abc"))
    with pytest.raises(MalformedMessage):
        decompress_payload(_compressed(2013, 3, 3, b"not zstd"))
    with pytest.raises(UnsupportedCompressor):
        compress_message(encode_op_msg(OpMsg(0, bson.encode({"a": 1})), 1), "lz4")


def test_handshake_commands_stay_uncompressed() -> None:
    assert must_not_compress("hello") and must_not_compress("isMaster")
    assert must_not_compress("saslStart") and not must_not_compress("find")
