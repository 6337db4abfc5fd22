"""``namespaces``: every form in which a command names a collection, found in-process."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from argon_proxy.errors import ArgonError
from argon_proxy.namespaces import FIRST_VALUE_ONLY, check, namespaces

from ..wire.strategies import keys, values

HIDDEN = "__argon.b0123456789.items"


def _agg(*stages: dict[str, Any]) -> dict[str, Any]:
    return {"aggregate": "orders", "pipeline": list(stages), "cursor": {}}


FORMS: list[tuple[dict[str, Any], tuple[str, str]]] = [
    ({"find": HIDDEN}, ("shop", HIDDEN)),
    ({"listIndexes": HIDDEN}, ("shop", HIDDEN)),
    ({"collStats": HIDDEN}, ("shop", HIDDEN)),
    ({"validate": HIDDEN}, ("shop", HIDDEN)),
    ({"killCursors": HIDDEN, "cursors": [1]}, ("shop", HIDDEN)),
    ({"getMore": 1, "collection": HIDDEN}, ("shop", HIDDEN)),
    ({"renameCollection": "shop.a", "to": f"shop.{HIDDEN}"}, ("shop", HIDDEN)),
    ({"renameCollection": "__argon.wal", "to": "shop.b"}, ("__argon", "wal")),
    ({"dataSize": f"shop.{HIDDEN}"}, ("shop", HIDDEN)),
    (
        {"bulkWrite": 1, "ops": [], "nsInfo": [{"ns": "shop.a"}, {"ns": "__argon.wal"}]},
        ("__argon", "wal"),
    ),
    ({"applyOps": [{"op": "d", "ns": "__argon.wal", "o": {}}]}, ("__argon", "wal")),
    (_agg({"$lookup": {"from": HIDDEN, "pipeline": [], "as": "x"}}), ("shop", HIDDEN)),
    (_agg({"$lookup": {"from": {"db": "__argon", "coll": "wal"}, "as": "x"}}), ("__argon", "wal")),
    (_agg({"$unionWith": HIDDEN}), ("shop", HIDDEN)),
    (_agg({"$unionWith": {"coll": HIDDEN}}), ("shop", HIDDEN)),
    (_agg({"$graphLookup": {"from": HIDDEN, "as": "x"}}), ("shop", HIDDEN)),
    (_agg({"$out": HIDDEN}), ("shop", HIDDEN)),
    (_agg({"$out": {"db": "__argon", "coll": "wal"}}), ("__argon", "wal")),
    (_agg({"$merge": HIDDEN}), ("shop", HIDDEN)),
    (_agg({"$merge": {"into": {"db": "__argon", "coll": "wal"}}}), ("__argon", "wal")),
    (
        _agg({"$lookup": {"from": "a", "pipeline": [{"$unionWith": HIDDEN}], "as": "x"}}),
        ("shop", HIDDEN),
    ),
    (
        _agg({"$unionWith": {"coll": "a", "pipeline": [{"$lookup": {"from": HIDDEN, "as": "x"}}]}}),
        ("shop", HIDDEN),
    ),
    (_agg({"$facet": {"f": [{"$unionWith": {"coll": HIDDEN}}]}}), ("shop", HIDDEN)),
    ({"mapReduce": "a", "out": HIDDEN}, ("shop", HIDDEN)),
    ({"mapReduce": "a", "out": {"merge": "wal", "db": "__argon"}}, ("__argon", "wal")),
    ({"create": "v", "viewOn": HIDDEN, "pipeline": []}, ("shop", HIDDEN)),
    ({"collMod": "v", "viewOn": "a", "pipeline": [{"$unionWith": HIDDEN}]}, ("shop", HIDDEN)),
    ({"cloneCollectionAsCapped": "a", "toCollection": HIDDEN, "size": 1}, ("shop", HIDDEN)),
    ({"explain": {"find": HIDDEN}, "verbosity": "queryPlanner"}, ("shop", HIDDEN)),
    ({"explain": _agg({"$unionWith": HIDDEN})}, ("shop", HIDDEN)),
    ({"dbHash": 1, "collections": ["a", HIDDEN]}, ("shop", HIDDEN)),
]


@pytest.mark.parametrize(("command", "named"), FORMS, ids=lambda v: str(v)[:60])
def test_every_form_is_found_and_refused(command: dict[str, Any], named: tuple[str, str]) -> None:
    assert named in set(namespaces(command, "shop"))
    with pytest.raises(ArgonError) as info:
        check(command, "shop", "main")
    assert info.value.code in (13, 73)


def test_an_unknown_command_mentioning_internal_data_is_refused() -> None:
    with pytest.raises(ArgonError):
        check({"filemd5": 1, "root": HIDDEN}, "shop", "main")
    check({"filemd5": 1, "root": "fs"}, "shop", "main")


first_value_commands = st.sampled_from(sorted(FIRST_VALUE_ONLY))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(first_value_commands, keys | st.integers(), st.dictionaries(keys, values, max_size=4))
def test_fast_path_commands_name_only_their_first_value(
    name: str, first: object, rest: dict[str, Any]
) -> None:
    """What the pass-through fast path looks at is all these commands can name."""
    command = {name: first, **{k: v for k, v in rest.items() if k != name}}
    allowed = {("shop", first)} if isinstance(first, str) else set()
    if name == "getMore" and isinstance(command.get("collection"), str):
        allowed = {("shop", command["collection"])}
    assert set(namespaces(command, "shop")) <= allowed
