"""``conjoin`` and ``pin`` mean what ``$and`` means, as mongod evaluates them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import MongoClient

from argon_proxy.view import conjoin, indexable, pin

from ..processes import start_upstream

Client = MongoClient[dict[str, Any]]

DOCS = [
    {"_id": i, "a": i % 4, "b": ["x", "y", "z"][i % 3], **({"c": {"d": i % 2}} if i % 5 else {})}
    for i in range(20)
]

field_conditions = st.one_of(
    st.builds(lambda k: {"a": k}, st.integers(0, 4)),
    st.builds(lambda k: {"a": {"$gte": k}}, st.integers(0, 4)),
    st.builds(lambda k: {"a": {"$lt": k}}, st.integers(0, 4)),
    st.builds(lambda v: {"b": v}, st.sampled_from(["x", "y", "q"])),
    st.just({"b": re.compile("^[xy]")}),
    st.just({"b": {"$regex": "z"}}),
    st.just({"b": {"$in": [re.compile("^x"), "z"]}}),
    st.builds(lambda k: {"b": {"$in": [re.compile("y$")], "$ne": "q"}, "a": k}, st.integers(0, 4)),
    st.builds(lambda k: {"_id": k}, st.integers(0, 21)),
    st.builds(lambda k: {"_id": {"$lt": k}}, st.integers(0, 21)),
    st.builds(lambda ks: {"_id": {"$in": ks}}, st.lists(st.integers(0, 21), max_size=6)),
    st.just({"c": {"d": 1}}),
    st.just({"c.d": {"$exists": False}}),
    st.builds(lambda k: {"$or": [{"a": k}, {"b": "x"}]}, st.integers(0, 4)),
    st.builds(lambda k: {"$and": [{"a": {"$ne": k}}]}, st.integers(0, 4)),
)
filters = st.lists(field_conditions, max_size=3).map(lambda parts: conjoin(*parts))


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    up = start_upstream()
    c: Client = MongoClient(up.uri)
    c.filters.docs.insert_many(DOCS)
    c.filters.indexed.insert_many(DOCS)
    c.filters.indexed.create_index("b")
    yield c
    c.close()
    up.stop()


@pytest.fixture(scope="module")
def coll(client: Client) -> Any:
    return client.filters.docs


def _ids(coll: Any, flt: dict[str, Any]) -> list[Any]:
    return [d["_id"] for d in coll.find(flt, {"_id": 1}, sort=[("_id", 1)])]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(f=filters, g=filters)
def test_conjoin_is_and(coll: Any, f: dict[str, Any], g: dict[str, Any]) -> None:
    assert _ids(coll, conjoin(f, g)) == _ids(coll, {"$and": [f, g]})


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(f=filters, data=st.data())
def test_pin_keeps_exactly_the_matched_ids(coll: Any, f: dict[str, Any], data: Any) -> None:
    matched = _ids(coll, f)
    chosen = data.draw(st.lists(st.sampled_from(matched), unique=True)) if matched else []
    # The pin stands for documents already found to match ``f``.
    assert _ids(coll, pin({"$in": chosen}, f)) == sorted(chosen)
    if matched:
        assert _ids(coll, pin(matched[0], f)) == [matched[0]]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(f=st.lists(field_conditions, min_size=1, max_size=3).map(lambda parts: {"$and": parts}))
def test_indexable_means_the_same_and_survives_an_index(client: Client, f: dict[str, Any]) -> None:
    """Unindexed, the test upstream answers regex values right: the rewrite must
    match the same documents there, and on an indexed copy too."""
    want = _ids(client.filters.docs, f)
    assert _ids(client.filters.docs, indexable(f)) == want
    assert _ids(client.filters.indexed, indexable(f)) == want
    assert _ids(client.filters.indexed, conjoin(*f["$and"])) == want


def test_conjoin_keeps_fields_top_level() -> None:
    assert conjoin({"a": 1}, {"b": {"$gt": 2}}, {"a": {"$lt": 5}}) == {
        "a": {"$eq": 1, "$lt": 5},
        "b": {"$gt": 2},
    }
    assert conjoin({"a": {"$gt": 1}}, {"a": {"$gt": 3}}) == {
        "a": {"$gt": 1},
        "$and": [{"a": {"$gt": 3}}],
    }
    assert pin(5, {"_id": {"$lt": 9}, "a": 1}) == {"_id": 5, "a": 1}
