"""The framer: any chunking yields the same frames; bad headers fail early."""

from __future__ import annotations

import struct

import bson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wire import (
    BadLength,
    Framer,
    FrameTooLarge,
    OpMsg,
    TruncatedFrame,
    UnknownOpCode,
    encode_message,
)

from .strategies import op_msgs, op_queries, op_replies


@settings(max_examples=150, deadline=None)
@given(st.lists(op_msgs | op_queries | op_replies, min_size=1, max_size=6), st.data())
def test_any_chunking_yields_the_messages(messages: list[object], data: st.DataObject) -> None:
    wires = [encode_message(m, i, 0) for i, m in enumerate(messages)]  # type: ignore[arg-type]
    stream = b"".join(wires)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(stream) - 1)), max_size=20)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    framer = Framer()
    out = []
    for chunk in chunks:
        framer.feed(chunk)
        while (frame := framer.next_frame()) is not None:
            out.append(frame.data)
    assert out == wires
    assert framer.buffered == 0
    framer.eof()


def test_many_frames_in_one_chunk_and_one_byte_at_a_time() -> None:
    msgs = [encode_message(OpMsg(0, bson.encode({"ping": i})), i, 0) for i in range(2000)]
    framer = Framer()
    framer.feed(b"".join(msgs))
    got = []
    while (frame := framer.next_frame()) is not None:
        got.append(frame.data)
    assert got == msgs
    framer = Framer()
    for byte in msgs[0]:
        assert framer.next_frame() is None
        framer.feed(bytes([byte]))
    frame = framer.next_frame()
    assert frame is not None and frame.data == msgs[0] and frame.payload[0] == 0


def test_oversize_is_refused_from_the_header_alone() -> None:
    framer = Framer()
    framer.feed(struct.pack("<iiii", 48_000_001, 1, 0, 2013))
    with pytest.raises(FrameTooLarge):
        framer.next_frame()


@pytest.mark.parametrize("length", [-1, 0, 15])
def test_impossible_lengths(length: int) -> None:
    framer = Framer()
    framer.feed(struct.pack("<iiii", length, 1, 0, 2013))
    with pytest.raises(BadLength):
        framer.next_frame()


def test_unknown_opcode() -> None:
    framer = Framer()
    framer.feed(struct.pack("<iiii", 20, 1, 0, 4242))
    with pytest.raises(UnknownOpCode):
        framer.next_frame()


def test_truncated_at_eof() -> None:
    framer = Framer()
    framer.feed(encode_message(OpMsg(0, bson.encode({"ping": 1})), 1, 0)[:-3])
    assert framer.next_frame() is None
    assert framer.buffered > 0
    with pytest.raises(TruncatedFrame):
        framer.eof()
