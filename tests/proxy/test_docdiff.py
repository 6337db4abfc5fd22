"""Properties of the document diff and three-way merge (pure functions)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from argon_proxy.docdiff import (
    MISSING,
    field_changes,
    merge_document,
    merge_fields,
    same,
)

keys = st.sampled_from(["a", "b", "c", "d"])
leaves = st.one_of(
    st.integers(-3, 3), st.text(max_size=2), st.none(), st.lists(st.integers(0, 2), max_size=2)
)
values = st.recursive(leaves, lambda inner: st.dictionaries(keys, inner, max_size=3), max_leaves=6)
docs = st.dictionaries(keys, values, max_size=4)

# Recursive documents are slow to generate on a loaded machine: a health check
# must not fail the run, and no example has a deadline.
_robust = settings(deadline=None, suppress_health_check=list(HealthCheck))


def _get(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return MISSING
        doc = doc[key]
    return doc


def _apply(doc: dict[str, Any], changes: list[Any]) -> dict[str, Any]:
    import copy

    out = copy.deepcopy(doc)
    for ch in changes:
        node = out
        for key in ch.path[:-1]:
            node = node[key]
        if ch.after is MISSING:
            del node[ch.path[-1]]
        else:
            node[ch.path[-1]] = ch.after
    return out


@_robust
@given(docs, docs)
def test_field_changes_turn_before_into_after(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    changes = field_changes(before, after)
    rebuilt = _apply(before, changes)
    assert field_changes(rebuilt, after) == []
    assert (changes == []) == (field_changes(after, before) == [])


@_robust
@given(docs, docs, docs)
def test_merge_keeps_each_sides_own_changes(
    base: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any]
) -> None:
    merged = merge_fields(base, ours, theirs)
    conflicted = merged.conflicts
    for side in (ours, theirs):
        for ch in field_changes(base, side):
            if any(ch.path[: len(p)] == p or p[: len(ch.path)] == ch.path for p in conflicted):
                continue
            got = _get(merged.doc, ch.path)
            if isinstance(ch.after, dict) and isinstance(got, dict):
                continue  # a subdocument both sides added: merged field by field
            assert same(got, ch.after)


@_robust
@given(docs, docs)
def test_one_sided_changes_never_conflict(base: dict[str, Any], side: dict[str, Any]) -> None:
    assert merge_fields(base, base, side).conflicts == ()
    assert same(merge_fields(base, base, side).doc, side)
    assert same(merge_fields(base, side, base).doc, side)


@_robust
@given(docs, docs, docs)
def test_preference_only_matters_where_there_is_a_conflict(
    base: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any]
) -> None:
    a = merge_fields(base, ours, theirs, "ours")
    b = merge_fields(base, ours, theirs, "theirs")
    assert set(a.conflicts) == set(b.conflicts)
    if not a.conflicts:
        assert same(a.doc, b.doc)


def test_document_level_shapes() -> None:
    base = {"_id": 1, "v": 1}
    assert merge_document(base, base, None).result is None
    assert merge_document(base, None, base).result is None
    assert merge_document(base, {"_id": 1, "v": 2}, None).conflict == "changed-deleted"
    assert merge_document(base, None, {"_id": 1, "v": 2}).conflict == "deleted-changed"
    assert merge_document(None, {"_id": 1}, {"_id": 1, "x": 1}).conflict == "both-inserted"
    assert merge_document(None, {"_id": 1}, {"_id": 1}).changed is False
    grained = merge_document(
        base | {"w": 1}, base | {"w": 2}, {"_id": 1, "v": 2, "w": 1}, granularity="document"
    )
    assert grained.conflict == "both-changed" and grained.paths == ()
