"""WAL entries store images compactly and read them back exactly.

Pure: entries are built, stored as BSON and read back, without an upstream.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import bson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from argon_proxy import wal
from argon_proxy.wal import ClientIdentity

_WHEN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
_KEYS = st.sampled_from(["a", "b", "c", "d", "e", "payload", "n"])
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.integers(-3, 3).map(bson.Int64),
    st.sampled_from([0.0, -0.0, 1.0, 2.5]),
    st.text(max_size=40),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=3)),
    max_leaves=8,
)
_IDS = st.one_of(
    st.integers(0, 3),
    st.sampled_from([1.0, bson.Int64(1), "1"]),
    st.dictionaries(_KEYS, _SCALARS, max_size=2),
)


@st.composite
def _docs(draw: st.DrawFn) -> dict[str, Any]:
    """A document; its ``_id`` usually first, as the upstream stores it."""
    fields = draw(st.dictionaries(_KEYS, _VALUES, max_size=6))
    doc_id = draw(_IDS)
    return {"_id": doc_id, **fields} if draw(st.integers(0, 3)) else {**fields, "_id": doc_id}


_DOCS = _docs()


def _stored(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry as the upstream hands it back."""
    return dict(bson.decode(bson.encode(entry)))


def _entry(
    op: str, pre: dict[str, Any] | None, post: dict[str, Any] | None, doc_id: Any = None
) -> dict[str, Any]:
    """The entry of a change (``doc_id``: by default the images' ``_id``)."""
    if doc_id is None:
        doc_id = (pre or post or {}).get("_id")
    client = ClientIdentity(None, None, 7)
    return wal.entry(
        1,
        branch_id="main",
        ns="db.c",
        doc_id=doc_id,
        op=op,
        pre=pre,
        post=post,
        client=client,
        ts=_WHEN,
    )


@st.composite
def _updates(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A document and a later version of it: fields changed (also to values
    Python finds equal: 1, 1.0, True), added, removed, or the whole reordered."""
    pre = {**draw(_DOCS), "pad": "p" * 80}  # so a small change is stored as a delta
    post = dict(pre)
    for key in draw(st.lists(_KEYS, max_size=3)):
        post[key] = draw(st.one_of(_VALUES, st.sampled_from([1, 1.0, True, bson.Int64(1)])))
    for key in draw(st.lists(_KEYS, max_size=2)):
        post.pop(key, None)
    if draw(st.booleans()):
        post = dict(reversed(list(post.items())))
    return pre, post


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(_updates())
def test_an_update_reads_back_both_images_byte_for_byte(
    images: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    pre, post = images
    stored = _stored(_entry(wal.UPDATE, pre, post))
    got_pre, got_post = wal.image(stored, "pre"), wal.image(stored, "post")
    assert got_pre is not None and got_post is not None
    assert bson.encode(got_pre) == bson.encode(pre)
    assert bson.encode(got_post) == bson.encode(post)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(_DOCS)
def test_inserts_and_deletes_read_back_their_one_image(doc: dict[str, Any]) -> None:
    inserted, deleted = (
        _stored(_entry(wal.INSERT, None, doc)),
        _stored(_entry(wal.DELETE, doc, None)),
    )
    assert wal.image(inserted, "pre") is None and wal.image(inserted, "post") == doc
    assert wal.image(deleted, "pre") == doc and wal.image(deleted, "post") is None


def test_entries_leave_out_what_they_need_not_store() -> None:
    doc = {"_id": 1, "n": 0, "payload": "x" * 100}
    inserted = _entry(wal.INSERT, None, doc)
    # No pre-image; the post-image's _id is the entry's doc_id.
    assert "pre" not in inserted and inserted["post"] == {"n": 0, "payload": "x" * 100}
    assert wal.image(inserted, "post") == doc
    # An _id that is not the first field, or not the entry's doc_id, stays.
    assert _entry(wal.INSERT, None, {"n": 0, "_id": 1})["post"] == {"n": 0, "_id": 1}
    assert _entry(wal.INSERT, None, {"_id": 1}, doc_id=1.0)["post"] == {"_id": 1}
    assert "post" not in _entry(wal.DELETE, doc, None)
    # A small change to a larger document stores what changed, not a second copy.
    updated = _entry(wal.UPDATE, doc, {**doc, "n": 1, "extra": True})
    assert "post" not in updated and updated["post_d"] == {"set": {"n": 1, "extra": True}}
    assert wal.image(updated, "post") == {**doc, "n": 1, "extra": True}
    # A rewrite of most of the document stores the whole new version.
    assert _entry(wal.UPDATE, doc, {"_id": 1, "other": "y" * 100})["post"]["other"] == "y" * 100
    # The client: only the fields known, among the entry's own.
    assert inserted["conn"] == 7 and "app" not in inserted and "user" not in inserted
    assert wal.client_of(inserted) == {"app": None, "user": None, "conn": 7}
    named = ClientIdentity("app", "ana", 2).to_doc()
    assert named == {"conn": 2, "app": "app", "user": "ana"}
    # Entries of earlier versions kept the client in a document of its own.
    older = {"client": {"app": "app", "user": None, "conn": 2}}
    assert wal.client_of(older) == {"app": "app", "user": None, "conn": 2}


def test_a_compressed_pre_image_rebuilds_a_post_image_delta() -> None:
    big = {"_id": 1, "n": 0, "payload": "x" * (wal.COMPRESS_ABOVE + 10)}
    stored = _stored(_entry(wal.UPDATE, big, {**big, "n": 1}))
    assert "pre_z" in stored and "post_d" in stored
    assert wal.image(stored, "post") == {**big, "n": 1}
