"""Hypothesis strategies for BSON documents and wire messages."""

from __future__ import annotations

from typing import Literal

import bson
from hypothesis import strategies as st

from wire import DocumentSequence, OpMsg, OpQuery, OpReply
from wire.opmsg import CHECKSUM_PRESENT, EXHAUST_ALLOWED, MORE_TO_COME

# Lone surrogates (Unicode category Cs) are not valid UTF-8, which BSON strings must be.
_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)

keys = st.text(
    alphabet=st.characters(blacklist_categories=_SURROGATES, blacklist_characters="\x00"),
    min_size=1,
    max_size=12,
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40).filter(lambda s: "\x00" not in s)
    | st.binary(max_size=40)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)
documents = st.dictionaries(keys, values, max_size=6).map(bson.encode)
commands = st.builds(
    lambda name, rest: bson.encode({name: 1, **rest}),
    keys,
    st.dictionaries(keys, values, max_size=4),
)
sequences = st.builds(
    DocumentSequence,
    st.sampled_from(["documents", "updates", "deletes", "ops"]),
    st.lists(documents, max_size=5).map(tuple),
)
flags = st.sets(st.sampled_from([CHECKSUM_PRESENT, MORE_TO_COME, EXHAUST_ALLOWED])).map(sum)
op_msgs = st.builds(OpMsg, flags, commands, st.lists(sequences, max_size=3).map(tuple))
op_queries = st.builds(
    OpQuery,
    st.integers(0, 255),
    st.sampled_from(["admin.$cmd", "db.coll", "a.b.c"]),
    st.integers(0, 100),
    st.integers(-5, 100),
    commands,
    st.none() | documents,
)
op_replies = st.builds(
    OpReply,
    st.integers(0, 15),
    st.integers(0, 2**63 - 1),
    st.integers(0, 100),
    st.lists(documents, max_size=4).map(tuple),
)
ids = st.integers(-(2**31), 2**31 - 1)
