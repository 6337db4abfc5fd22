"""$lookup, $unionWith and $facet on a branch read the branch's other collections."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from ..processes import Process, start_proxy, start_upstream

Client = MongoClient[dict[str, Any]]


@pytest.fixture(scope="module")
def c() -> Iterator[Client]:
    up = start_upstream()
    proxy: Process = start_proxy(f"mongodb://127.0.0.1:{up.port}")
    client: Client = MongoClient(proxy.uri)
    client.shop.orders.insert_many([{"_id": i, "user": i % 3, "amount": i} for i in range(6)])
    client.shop.users.insert_many([{"_id": u, "name": f"u{u}"} for u in range(3)])
    client.admin.command({"argon": "createBranch", "name": "x"})
    b = client["shop@x"]
    b.users.update_one({"_id": 1}, {"$set": {"name": "renamed"}})
    b.users.delete_one({"_id": 2})
    b.users.insert_one({"_id": 3, "name": "new"})
    b.orders.insert_one({"_id": 10, "user": 3, "amount": 10})
    yield client
    client.close()
    proxy.stop()
    up.stop()


def names(rows: list[dict[str, Any]]) -> list[tuple[int, list[str]]]:
    return [(r["_id"], [u["name"] for u in r["u"]]) for r in rows]


def test_lookup_local_foreign_reads_the_branch(c: Client) -> None:
    stage = {"$lookup": {"from": "users", "localField": "user", "foreignField": "_id", "as": "u"}}
    rows = list(c["shop@x"].orders.aggregate([stage, {"$sort": {"_id": 1}}]))
    assert names(rows) == [
        (0, ["u0"]),
        (1, ["renamed"]),
        (2, []),
        (3, ["u0"]),
        (4, ["renamed"]),
        (5, []),
        (10, ["new"]),
    ]
    main = list(c.shop.orders.aggregate([stage, {"$sort": {"_id": 1}}]))
    assert names(main)[:3] == [(0, ["u0"]), (1, ["u1"]), (2, ["u2"])]


def test_lookup_with_pipeline_and_let(c: Client) -> None:
    stage = {
        "$lookup": {
            "from": "users",
            "let": {"uid": "$user"},
            "pipeline": [{"$match": {"$expr": {"$eq": ["$_id", "$$uid"]}}}],
            "as": "u",
        }
    }
    rows = list(c["shop@x"].orders.aggregate([{"$match": {"_id": {"$in": [1, 10]}}}, stage]))
    assert sorted(names(rows)) == [(1, ["renamed"]), (10, ["new"])]


def test_union_with_and_facet(c: Client) -> None:
    rows = list(
        c["shop@x"].orders.aggregate(
            [
                {"$project": {"_id": 0, "kind": "order"}},
                {
                    "$unionWith": {
                        "coll": "users",
                        "pipeline": [{"$project": {"_id": 0, "n": "$name"}}],
                    }
                },
            ]
        )
    )
    assert sorted(r["n"] for r in rows if "n" in r) == ["new", "renamed", "u0"]
    facet = list(
        c["shop@x"].orders.aggregate(
            [
                {"$match": {"_id": 10}},
                {
                    "$facet": {
                        "joined": [
                            {
                                "$lookup": {
                                    "from": "users",
                                    "localField": "user",
                                    "foreignField": "_id",
                                    "as": "u",
                                }
                            }
                        ]
                    }
                },
            ]
        )
    )
    assert facet[0]["joined"][0]["u"] == [{"_id": 3, "name": "new"}]


def test_graph_lookup_reads_the_branch_view_of_a_changed_collection(c: Client) -> None:
    """A traversal crosses the branch's layers at every step: the branch's own links
    are followed, main's stay as they were, and results come in batches."""
    c.shop.people.insert_many([{"_id": i, "boss": i - 1} for i in range(6)])
    c.admin.command({"argon": "createBranch", "name": "graph"})
    b = c["shop@graph"]
    b.people.update_one({"_id": 3}, {"$set": {"boss": 0}})  # 4 -> 3 -> 0 on the branch
    b.people.insert_one({"_id": 9, "boss": 4})
    chain: dict[str, Any] = {
        "$graphLookup": {
            "from": "people",
            "startWith": "$boss",
            "connectFromField": "boss",
            "connectToField": "_id",
            "as": "chain",
        }
    }
    pipeline: list[dict[str, Any]] = [
        {"$match": {"_id": {"$gte": 4}}},
        chain,
        {"$sort": {"_id": 1}},
    ]

    def chains(rows: Any) -> list[tuple[int, list[int]]]:
        return [(r["_id"], sorted(d["_id"] for d in r["chain"])) for r in rows]

    got = chains(b.people.aggregate(pipeline, batchSize=1))
    assert got == [(4, [0, 3]), (5, [0, 3, 4]), (9, [0, 3, 4])]
    assert chains(c.shop.people.aggregate(pipeline)) == [(4, [0, 1, 2, 3]), (5, [0, 1, 2, 3, 4])]
    copies = [n for n in c.shop.list_collection_names() if "scratch" in n]
    assert copies == []
    nested = [{"$facet": {"f": [chain]}}]
    with pytest.raises(OperationFailure) as err:
        list(b.people.aggregate(nested))
    assert err.value.code == 115
    assert "graph" in str(err.value) and "$graphLookup" in str(err.value)


def test_merge_on_a_field_without_a_unique_index_fails_as_on_mongod(c: Client) -> None:
    with pytest.raises(OperationFailure) as err:
        list(c["shop@x"].orders.aggregate([{"$merge": {"into": "copy", "on": "sku"}}]))
    assert err.value.code == 51183
