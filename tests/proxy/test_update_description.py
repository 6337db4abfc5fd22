"""Properties of the update descriptions change streams on branches report (pure)."""

from __future__ import annotations

import copy
from typing import Any

import bson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from argon_proxy.update_description import PIPELINE, describe, hints

keys = st.sampled_from(["a", "b", "c", "1"])
leaves = st.one_of(st.integers(-2, 2), st.floats(allow_nan=False, width=32), st.text(max_size=2))
values = st.recursive(
    leaves,
    lambda inner: st.one_of(st.dictionaries(keys, inner, max_size=3), st.lists(inner, max_size=3)),
    max_leaves=8,
)
docs = st.dictionaries(keys, values, max_size=4)
_robust = settings(deadline=None, suppress_health_check=list(HealthCheck))


def _set(doc: Any, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    if isinstance(doc, list):
        index = int(last)
        doc.extend([None] * (index + 1 - len(doc)))
        doc[index] = value
    else:
        doc[last] = value


def _unset(doc: Any, path: str) -> None:
    *parents, last = path.split(".")
    for part in parents:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    del doc[last]


def _applied(pre: dict[str, Any], description: dict[str, Any]) -> dict[str, Any]:
    """``pre`` with the description applied as a consumer of the stream would."""
    doc = copy.deepcopy(pre)
    for field in description["truncatedArrays"]:
        *parents, last = field["field"].split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) else last
        del node[key][field["newSize"] :]
    for path in description["removedFields"]:
        _unset(doc, path)
    for path, value in description["updatedFields"].items():
        _set(doc, path, copy.deepcopy(value))
    return doc


def _canonical(doc: dict[str, Any]) -> bytes:
    """Stored bytes with every document's keys sorted: field order aside, equal."""

    def norm(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: norm(v[k]) for k in sorted(v)}
        if isinstance(v, list):
            return [norm(x) for x in v]
        return v

    return bson.encode(norm(doc))


@_robust
@given(docs, docs, st.sampled_from([None, PIPELINE]))
def test_a_description_turns_the_pre_image_into_the_post_image(
    pre: dict[str, Any], post: dict[str, Any], how: Any
) -> None:
    description = describe(pre, post, how)
    assert _canonical(_applied(pre, description)) == _canonical(post)


@_robust
@given(docs)
def test_no_change_is_described_as_nothing(doc: dict[str, Any]) -> None:
    assert describe(doc, copy.deepcopy(doc)) == {
        "updatedFields": {},
        "removedFields": [],
        "truncatedArrays": [],
    }


def test_operators_decide_how_arrays_and_set_fields_are_reported() -> None:
    pre = {"_id": 1, "a": [1, 2], "s": {"x": 1, "y": 2}, "n": 0.0}
    pushed = {**pre, "a": [1, 2, 3]}
    assert describe(pre, pushed, hints({"$push": {"a": 3}}))["updatedFields"] == {"a.2": 3}
    set_whole = hints({"$set": {"a": [1, 2, 3]}})
    assert describe(pre, pushed, set_whole)["updatedFields"] == {"a": [1, 2, 3]}
    bumped = {**pre, "a": [5, 2]}
    assert describe(pre, bumped, hints({"$inc": {"a.0": 4}}))["updatedFields"] == {"a.0": 5}
    replaced_sub = {**pre, "s": {"x": 1, "z": 3}}
    described = describe(pre, replaced_sub, hints({"$set": {"s": {"x": 1, "z": 3}}}))
    assert described["updatedFields"] == {"s": {"x": 1, "z": 3}}
    assert described["removedFields"] == []
    shrunk = {**pre, "a": [1]}
    assert describe(pre, shrunk, PIPELINE)["truncatedArrays"] == [{"field": "a", "newSize": 1}]
    signed = {**pre, "n": -0.0}
    assert describe(pre, signed, hints({"$set": {"n": -0.0}}))["updatedFields"] == {"n": -0.0}
    assert hints({"x": 1}) is None and hints([{"$set": {"x": 1}}]) == PIPELINE
