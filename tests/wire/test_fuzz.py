"""Random and mutated bytes: only WireError subclasses, never anything else, never a hang."""

from __future__ import annotations

import contextlib

import bson
from hypothesis import given, settings
from hypothesis import strategies as st

from wire import Framer, WireError, compress_message, decode_frame, encode_message, iter_elements
from wire.bson_raw import first_key, get_raw

from .strategies import op_msgs, op_queries, op_replies, values


def _decode_all(data: bytes) -> None:
    framer = Framer()
    framer.feed(data)
    try:
        while (frame := framer.next_frame()) is not None:
            decode_frame(frame)
        framer.eof()
    except WireError:
        pass


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    _decode_all(data)


@settings(max_examples=400, deadline=None)
@given(
    op_msgs | op_queries | op_replies,
    st.sampled_from([None, "zlib", "zstd", "snappy"]),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_mutated_messages(
    message: object, compressor: str | None, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(encode_message(message, 1, 0))  # type: ignore[arg-type]
    if compressor:
        data = bytearray(compress_message(bytes(data), compressor))
    for pos, value in flips:
        data[pos % len(data)] = value
    _decode_all(bytes(data))


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=5, max_size=120))
def test_raw_bson_walkers_on_garbage(data: bytes) -> None:
    doc = len(data).to_bytes(4, "little") + data[4:-1] + b"\x00"
    for fn in (lambda: list(iter_elements(doc)), lambda: first_key(doc), lambda: get_raw(doc, "x")):
        with contextlib.suppress(WireError):
            fn()


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=5).filter(lambda k: "\x00" not in k), values, min_size=1
    )
)
def test_raw_bson_walk_matches_decoding(doc: dict[str, object]) -> None:
    raw = bson.encode(doc)  # which moves a top-level _id first
    order = list(bson.decode(raw))
    assert [k for k, *_ in iter_elements(raw)] == order
    assert first_key(raw) == order[0]
