"""Collections created on a branch with options behave as mongod's: validation,
default collation, listed options and collMod, for the branch alone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure, WriteError

from ..processes import Process
from ..stacks import argon, own_stack

Client = MongoClient[dict[str, Any]]
_VALIDATOR = {"$jsonSchema": {"required": ["name"]}}


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    pair: tuple[Process, Process]
    with own_stack() as pair:
        c: Client = MongoClient(pair[1].uri)
        yield c
        c.close()


def test_a_validator_judges_the_clients_writes_not_argons(client: Client) -> None:
    argon(client, "createBranch", name="val-b")
    db = client["val@val-b"]
    db.create_collection("people", validator=_VALIDATOR)
    db.people.insert_one({"_id": 1, "name": "ann"})
    with pytest.raises(WriteError) as info:
        db.people.insert_one({"_id": 2})
    assert info.value.code == 121
    db.people.insert_one({"_id": 2}, bypass_document_validation=True)
    with pytest.raises(WriteError):
        db.people.update_one({"_id": 1}, {"$unset": {"name": ""}})
    assert db.people.delete_one({"_id": 1}).deleted_count == 1  # a tombstone: not judged
    assert [d["_id"] for d in db.people.find()] == [2]
    listed = db.command("listCollections", filter={"name": "people"})["cursor"]["firstBatch"]
    assert listed[0]["options"] == {"validator": _VALIDATOR}
    assert "people" not in client.val.list_collection_names()


def test_collmod_changes_what_the_branch_alone_holds(client: Client) -> None:
    client.cm.shared.insert_one({"_id": 1})
    argon(client, "createBranch", name="cm-b")
    db = client["cm@cm-b"]
    db.create_collection("own", validator=_VALIDATOR)
    db.command("collMod", "own", validator={"$jsonSchema": {"required": ["age"]}})
    db.own.insert_one({"_id": 1, "age": 3})
    with pytest.raises(WriteError):
        db.own.insert_one({"_id": 2, "name": "no age"})
    with pytest.raises(OperationFailure) as info:
        db.command("collMod", "shared", validator=_VALIDATOR)
    assert info.value.code == 115 and "cm-b" in str(info.value)
    # Dropped on the branch and created again: the branch alone holds it now.
    db.shared.drop()
    db.create_collection("shared", validator=_VALIDATOR)
    db.command("collMod", "shared", validationAction="warn")
    db.shared.insert_one({"_id": 5})
    assert [d["_id"] for d in db.shared.find()] == [5]
    assert [d["_id"] for d in client.cm.shared.find()] == [1]


def test_options_a_branch_cannot_hold_are_refused_by_name(client: Client) -> None:
    argon(client, "createBranch", name="capped-b")
    with pytest.raises(OperationFailure) as info:
        client["capped@capped-b"].create_collection("log", capped=True, size=4096)
    assert info.value.code == 115
    assert "capped" in str(info.value) and "capped-b" in str(info.value)
    assert "log" not in client["capped@capped-b"].list_collection_names()
    with pytest.raises(OperationFailure) as collated:
        client["capped@capped-b"].create_collection("c", collation={"locale": "en"})
    assert collated.value.code == 115 and "collation" in str(collated.value)


def test_rename_moves_documents_indexes_and_options_on_the_branch_alone(
    client: Client,
) -> None:
    client.rn.src.insert_many([{"_id": i, "v": i} for i in range(5)])
    client.rn.src.create_index("v", name="by_v")
    argon(client, "createBranch", name="rn-b")
    db = client["rn@rn-b"]
    db.src.update_one({"_id": 0}, {"$set": {"v": 100}})
    db.src.delete_one({"_id": 4})
    db.src.rename("dst")
    assert sorted(db.list_collection_names()) == ["dst"]
    assert [d["v"] for d in db.dst.find().sort("_id", 1)] == [100, 1, 2, 3]
    assert "by_v" in db.dst.index_information()
    assert [d["v"] for d in client.rn.src.find().sort("_id", 1)] == [0, 1, 2, 3, 4]
    assert "dst" not in client.rn.list_collection_names()
    db.create_collection("checked", validator=_VALIDATOR)
    db.checked.insert_one({"_id": 1, "name": "x"})
    with pytest.raises(OperationFailure) as exists:
        db.checked.rename("dst")
    assert exists.value.code == 48
    db.checked.rename("dst", dropTarget=True)
    assert list(db.dst.find()) == [{"_id": 1, "name": "x"}]
    with pytest.raises(WriteError):
        db.dst.insert_one({"_id": 2})  # the validator came along
    with pytest.raises(OperationFailure) as missing:
        db.nothing.rename("other")
    assert missing.value.code == 26


def test_a_collection_dropped_on_a_branch_takes_its_indexes_along(client: Client) -> None:
    argon(client, "createBranch", name="ix-b")
    db = client["ix@ix-b"]
    db.coll.insert_one({"x": 1})
    db.coll.create_index("x")
    db.drop_collection("coll")
    # The same name with other options: a new index, not a conflict with the old one.
    name = db.coll.create_index([("x", 1)], partialFilterExpression={"a": {"$lte": 1.5}})
    assert name == "x_1"
    assert "partialFilterExpression" in db.coll.index_information()["x_1"]
    db.drop_collection("never")  # no overlay collection at all: nothing to drop


def test_a_collection_created_again_after_a_drop_has_none_of_the_old_options(
    client: Client,
) -> None:
    argon(client, "createBranch", name="again-b")
    db = client["again@again-b"]
    db.create_collection("c", validator=_VALIDATOR)
    db.c.drop()
    db.create_collection("c")
    db.c.insert_one({"_id": 1})  # no validator any more
    assert (
        db.command("listCollections", filter={"name": "c"})["cursor"]["firstBatch"][0]["options"]
        == {}
    )
