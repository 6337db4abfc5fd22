"""Every form of update on a branch does what it does on a plain copy.

A branch applies an update to its copy of each matched document, the user's
filter pinned to its ``_id``: the shapes below (positional ``$``, ``$[]``,
array filters, pipelines with ``let``, replacements, failures) run on
documents the branch holds already and on ones it takes from main, and every
result and error is compared with a plain collection.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from ..stacks import argon, own_clients

Client = MongoClient[dict[str, Any]]

DOCS: list[dict[str, Any]] = [
    {"_id": i, "n": i, "tags": ["a", "b", "c"][: i % 3 + 1], "items": [{"x": i}, {"x": i + 5}]}
    for i in range(6)
]

# (filter, update, options) of update_one / update_many
SHAPES: list[tuple[dict[str, Any], Any, dict[str, Any]]] = [
    ({"_id": 1}, {"$inc": {"n": 10}}, {}),
    ({"_id": 2, "tags": "b"}, {"$set": {"tags.$": "B"}}, {}),  # positional
    ({"_id": 3}, {"$set": {"tags.$[]": "z"}}, {}),
    ({"_id": 4}, {"$set": {"items.$[big].x": 0}}, {"array_filters": [{"big.x": {"$gt": 5}}]}),
    ({"_id": 5}, [{"$set": {"n": {"$add": ["$n", "$$k"]}}}], {"let": {"k": 7}}),
    ({"_id": 0}, {"n": 99, "tags": []}, {}),  # a replacement
    ({"_id": 1}, {"$inc": {"tags": 1}}, {}),  # TypeMismatch (14)
    ({"_id": 1}, {"$set": {"_id": 7}}, {}),  # ImmutableField (66)
    ({"_id": 2}, {"$set": {"tags.$": "x"}}, {}),  # no array in the filter (2)
    ({"_id": 3, "n": 0}, {"$inc": {"n": 1}}, {}),  # matches nothing
    ({"n": {"$gte": 3}}, {"$push": {"tags": "m"}}, {"many": True}),
    ({}, [{"$set": {"total": {"$sum": "$items.x"}}}], {"many": True}),
]


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Client, Client]]:
    with own_clients() as clients:
        yield clients


def _apply(coll: Any, flt: dict[str, Any], upd: Any, options: dict[str, Any]) -> Any:
    opts = {k: v for k, v in options.items() if k != "many"}
    try:
        if options.get("many"):
            res = coll.update_many(flt, upd, **opts)
        elif isinstance(upd, dict) and not any(k.startswith("$") for k in upd):
            res = coll.replace_one(flt, upd)
        else:
            res = coll.update_one(flt, upd, **opts)
    except OperationFailure as exc:
        return ("error", exc.code)
    return (res.matched_count, res.modified_count)


@pytest.mark.parametrize("held", [False, True], ids=["from-main", "held-by-branch"])
def test_updates_on_a_branch_match_a_plain_copy(pair: tuple[Client, Client], held: bool) -> None:
    direct, proxy = pair
    db = f"upd_{int(held)}"
    direct[db].items.insert_many(DOCS)
    direct[db].copy.insert_many(DOCS)
    argon(proxy, "createBranch", name=db)
    branch = proxy[f"{db}@{db}"].items
    copy = direct[db].copy
    if held:  # the branch holds its own version of every document first
        for coll in (branch, copy):
            coll.update_many({}, {"$set": {"held": True}})
    for flt, upd, options in SHAPES:
        got, want = _apply(branch, flt, upd, options), _apply(copy, flt, upd, options)
        assert got == want, (flt, upd, got, want)
        assert list(branch.find(sort=[("_id", 1)])) == list(copy.find(sort=[("_id", 1)])), upd
    assert list(direct[db].items.find(sort=[("_id", 1)])) == DOCS  # main is untouched
