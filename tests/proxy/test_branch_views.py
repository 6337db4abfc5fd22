"""Views on a branch read the branch's data: main's views as well as views created
on the branch, through every read command, compared with mongod's views over a
physical copy of the branch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from ..stacks import argon, own_clients

Client = MongoClient[dict[str, Any]]
_BIG: list[dict[str, Any]] = [
    {"$match": {"x": {"$gte": 2}}},
    {"$set": {"double": {"$multiply": ["$x", 2]}}},
]
_LOOKUP: list[dict[str, Any]] = [
    {"$lookup": {"from": "big", "localField": "_id", "foreignField": "_id", "as": "m"}},
    {"$match": {"m": {"$ne": []}}},
]


@pytest.fixture(scope="module")
def clients() -> Iterator[tuple[Client, Client]]:
    """``(direct, through Argon)``."""
    with own_clients() as pair:
        yield pair


def _reads(db: Any) -> list[Any]:
    """The same reads of view ``big``, each command mongod turns into an aggregate."""
    big = db.big
    return [
        sorted(d["_id"] for d in big.find()),
        list(big.find({"x": {"$lt": 10}}, {"double": 1}).sort("_id", -1).skip(1).limit(2)),
        big.count_documents({"x": {"$ne": 3}}),
        big.estimated_document_count(),
        list(big.aggregate([{"$group": {"_id": None, "n": {"$sum": 1}}}])),
    ]


def _check_upstream_blind_spots(branch: Any, copy: Any) -> None:
    """distinct on a view and $lookup from one, which the test upstream answers with
    nothing on its own views: what they must answer is worked out from a find."""
    assert sorted(branch.big.distinct("double")) == sorted({d["double"] for d in copy.big.find()})
    looked_up = sorted(d["_id"] for d in branch.items.aggregate(_LOOKUP))
    assert looked_up == sorted(d["_id"] for d in copy.big.find())


def test_main_views_read_the_branchs_data(clients: tuple[Client, Client]) -> None:
    direct, proxy = clients
    proxy.v1.items.insert_many([{"_id": i, "x": i} for i in range(5)])
    proxy.v1.command("create", "big", viewOn="items", pipeline=_BIG)
    argon(proxy, "createBranch", name="v1-b")
    branch = proxy["v1@v1-b"]
    branch.items.insert_one({"_id": 10, "x": 10})
    branch.items.update_one({"_id": 0}, {"$set": {"x": 7}})
    branch.items.delete_one({"_id": 3})
    copy = direct.v1copy
    copy.items.insert_many(list(branch.items.find()))
    copy.command("create", "big", viewOn="items", pipeline=_BIG)
    assert _reads(branch) == _reads(copy)
    _check_upstream_blind_spots(branch, copy)
    assert sorted(d["_id"] for d in proxy.v1.big.find()) == [2, 3, 4]  # main keeps its own
    with pytest.raises(OperationFailure) as info:
        branch.big.insert_one({"_id": 99})
    assert info.value.code == 166


def test_views_created_on_a_branch_stay_on_it(clients: tuple[Client, Client]) -> None:
    direct, proxy = clients
    proxy.v2.items.insert_many([{"_id": i, "x": i} for i in range(5)])
    argon(proxy, "createBranch", name="v2-b")
    branch = proxy["v2@v2-b"]
    branch.items.delete_one({"_id": 4})
    branch.create_collection("big", viewOn="items", pipeline=_BIG)
    listed = branch.command("listCollections", filter={"name": "big"})["cursor"]["firstBatch"]
    assert listed[0]["type"] == "view"
    assert listed[0]["options"] == {"viewOn": "items", "pipeline": _BIG}
    names = branch.command("listCollections", nameOnly=True)["cursor"]["firstBatch"]
    assert {"name": "big", "type": "view"} in names
    assert "big" not in proxy.v2.list_collection_names()
    copy = direct.v2copy
    copy.items.insert_many(list(branch.items.find()))
    copy.command("create", "big", viewOn="items", pipeline=_BIG)
    assert _reads(branch) == _reads(copy)
    _check_upstream_blind_spots(branch, copy)
    with pytest.raises(OperationFailure) as exists:
        branch.command("create", "big", viewOn="items", pipeline=[])
    assert exists.value.code == 48
    branch.drop_collection("big")
    assert "big" not in branch.list_collection_names()
    branch.big.insert_one({"_id": 1})  # a collection now, no view any more
    assert list(branch.big.find()) == [{"_id": 1}]


def test_main_cannot_change_a_view_its_branches_read(clients: tuple[Client, Client]) -> None:
    _, proxy = clients
    proxy.v3.items.insert_one({"_id": 1, "x": 5})
    proxy.v3.command("create", "big", viewOn="items", pipeline=_BIG)
    argon(proxy, "createBranch", name="v3-b")
    with pytest.raises(OperationFailure) as info:
        proxy.v3.command("collMod", "big", viewOn="items", pipeline=[])
    assert info.value.code == 115
    proxy.v3.command("create", "later", viewOn="items", pipeline=[])  # after the fork
    assert "later" not in proxy["v3@v3-b"].list_collection_names()
