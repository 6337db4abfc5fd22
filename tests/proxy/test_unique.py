"""Unique indexes hold across a branch's whole view, like mongod's on a copy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pymongo import MongoClient
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from ..stacks import own_client

Client = MongoClient[dict[str, object]]


@pytest.fixture(scope="module")
def admin() -> Iterator[Client]:
    with own_client() as client:
        yield client


def branch_of(admin: Client, db: str, name: str) -> object:
    admin.admin.command({"argon": "createBranch", "name": name})
    return admin[f"{db}@{name}"]


def test_main_unique_index_holds_on_the_branch(admin: Client) -> None:
    users = admin.u1.users
    users.create_index("email", unique=True)
    users.insert_many([{"_id": i, "email": f"user{i}@x.io"} for i in range(5)])
    branch = branch_of(admin, "u1", "u1-b").users  # type: ignore[attr-defined]
    with pytest.raises(DuplicateKeyError) as dup:
        branch.insert_one({"_id": 10, "email": "user3@x.io"})
    assert "email_1" in str(dup.value) and 'email: "user3@x.io"' in str(dup.value)
    branch.insert_one({"_id": 11, "email": "new@x.io"})
    with pytest.raises(DuplicateKeyError):
        branch.insert_one({"_id": 12, "email": "new@x.io"})  # against the branch's own
    with pytest.raises(DuplicateKeyError):
        branch.update_one({"_id": 0}, {"$set": {"email": "user1@x.io"}})
    with pytest.raises(DuplicateKeyError):
        branch.update_many({"_id": {"$in": [0, 1]}}, {"$set": {"email": "same@x.io"}})
    assert branch.count_documents({"email": "same@x.io"}) == 0  # nothing half-done
    # A key the branch frees (delete, or moving it away) can be taken again.
    branch.delete_one({"_id": 2})
    branch.insert_one({"_id": 13, "email": "user2@x.io"})
    branch.update_one({"_id": 4}, {"$set": {"email": "moved@x.io"}})
    branch.insert_one({"_id": 14, "email": "user4@x.io"})
    # Swapping keys through a free one works, as on mongod.
    branch.update_one({"_id": 0}, {"$set": {"email": "tmp@x.io"}})
    branch.update_one({"_id": 1}, {"$set": {"email": "user0@x.io"}})
    with pytest.raises(DuplicateKeyError):
        branch.find_one_and_update({"_id": 3}, {"$set": {"email": "user0@x.io"}})
    with pytest.raises(DuplicateKeyError):
        branch.replace_one({"_id": 3}, {"email": "tmp@x.io"})
    with pytest.raises(DuplicateKeyError):
        branch.update_one({"_id": 99}, {"$set": {"email": "tmp@x.io"}}, upsert=True)
    # Main never sees the branch's keys, and the branch never sees main's new ones.
    users.insert_one({"_id": 20, "email": "new@x.io"})
    branch.insert_one({"_id": 21, "email": "main-only@x.io"})
    users.insert_one({"_id": 22, "email": "main-only@x.io"})
    emails = [d["email"] for d in branch.find({}, {"email": 1})]
    assert len(emails) == len(set(emails))


def test_batches_report_the_failing_statement(admin: Client) -> None:
    admin.u2.c.create_index("k", unique=True)
    admin.u2.c.insert_one({"_id": 0, "k": 0})
    branch = branch_of(admin, "u2", "u2-b").c  # type: ignore[attr-defined]
    with pytest.raises(BulkWriteError) as err:
        branch.insert_many([{"_id": 1, "k": 1}, {"_id": 2, "k": 0}, {"_id": 3, "k": 3}])
    details = err.value.details
    assert details["nInserted"] == 1
    assert [(e["index"], e["code"]) for e in details["writeErrors"]] == [(1, 11000)]
    with pytest.raises(BulkWriteError) as err:
        branch.insert_many(
            [{"_id": 4, "k": 4}, {"_id": 5, "k": 4}, {"_id": 6, "k": 6}], ordered=False
        )
    assert err.value.details["nInserted"] == 2
    assert sorted(d["k"] for d in branch.find()) == [0, 1, 4, 6]


def test_key_equality_is_mongods(admin: Client) -> None:
    coll = admin.u3.c
    coll.create_index("tags", unique=True)
    coll.create_index([("a", 1), ("b", 1)], unique=True)
    coll.create_index("s", unique=True, sparse=True)
    coll.create_index("p", unique=True, partialFilterExpression={"active": True}, name="p_active")
    coll.create_index("name", unique=True, collation={"locale": "en", "strength": 2})
    coll.insert_one(
        {"_id": 0, "tags": [1, 2], "a": 1, "b": 1, "p": 1, "active": True, "name": "Ann"}
    )
    branch = branch_of(admin, "u3", "u3-b").c  # type: ignore[attr-defined]
    dup = pytest.raises(DuplicateKeyError)
    with dup:
        branch.insert_one({"_id": 1, "tags": 2, "a": 5})  # an element of an array
    with dup:
        branch.insert_one({"_id": 2, "tags": 9, "a": 1.0, "b": 1})  # numbers by value
    branch.insert_one({"_id": 3, "tags": 10, "a": 1, "b": 2})
    # Missing counts as null in a plain unique index...
    with dup:
        branch.insert_one({"_id": 4, "tags": 11, "a": 7})  # name missing, like _id 3's
    # ...but a sparse one leaves documents without the field out.
    branch.insert_one({"_id": 5, "tags": 12, "a": 8, "name": "Zoe"})
    with dup:
        branch.insert_one({"_id": 6, "tags": 13, "a": 9, "name": "zoe"})  # collation
    branch.insert_one({"_id": 7, "tags": 14, "a": 10, "name": "Al", "p": 1})  # inactive
    with dup:
        branch.insert_one({"_id": 8, "tags": 15, "a": 11, "name": "Bo", "p": 1, "active": True})
    branch.insert_one({"_id": 9, "tags": 16, "a": 12, "name": "Cy", "s": 1})
    with dup:
        branch.insert_one({"_id": 10, "tags": 17, "a": 13, "name": "Di", "s": 1})


def test_unique_index_created_on_a_branch(admin: Client) -> None:
    admin.u4.c.insert_many([{"_id": i, "k": i % 3} for i in range(6)])
    branch = branch_of(admin, "u4", "u4-b").c  # type: ignore[attr-defined]
    with pytest.raises(OperationFailure) as err:
        branch.create_index("k", unique=True)
    assert err.value.code == 11000 and "u4.c" in str(err.value) and "scratch" not in str(err.value)
    assert "k_1" not in branch.index_information()
    branch.delete_many({"_id": {"$gte": 3}})
    branch.create_index("k", unique=True)
    assert branch.index_information()["k_1"].get("unique") is True
    assert "k_1" not in admin.u4.c.index_information()  # main is untouched
    with pytest.raises(DuplicateKeyError):
        branch.insert_one({"_id": 10, "k": 1})
    admin.u4.c.insert_one({"_id": 11, "k": 1})  # main has no such index
    with pytest.raises(OperationFailure) as conflict:
        branch.create_index("k", name="k_1")  # same name, other options
    assert conflict.value.code == 86
    branch.drop_index("k_1")
    branch.insert_one({"_id": 10, "k": 1})
    # Invalid specifications are mongod's to refuse.
    with pytest.raises(OperationFailure):
        branch.create_index([("k", "nonsense")], unique=True)


def test_a_multi_update_mongod_may_refuse_midway_is_refused(admin: Client) -> None:
    """mongod checks a multi-document update's keys document by document: a new
    key that another matched document still holds fails, whichever is reached
    first decides, so a branch refuses every such statement and changes nothing."""
    main = admin.u5.c
    main.create_index("a", unique=True)
    main.create_index("name", unique=True, collation={"locale": "en", "strength": 2})
    main.insert_many([{"_id": i, "a": i, "name": f"n{i}"} for i in range(4)])
    branch = branch_of(admin, "u5", "u5-b").c  # type: ignore[attr-defined]
    branch.update_one({"_id": 3}, {"$set": {"x": 1}})  # one document in the overlay
    before = list(branch.find(sort=[("_id", 1)]))
    dup = pytest.raises(DuplicateKeyError)
    with dup:  # 0 -> 1 while 1 still holds it (mongod's ascending order fails so)
        branch.update_many({}, {"$inc": {"a": 1}})
    with dup:  # across the overlay and main's documents
        branch.update_many({"_id": {"$in": [2, 3]}}, {"$inc": {"a": 1}})
    with dup:  # a swap fails on mongod in any order
        branch.update_many({"_id": {"$in": [0, 1]}}, [{"$set": {"a": {"$subtract": [1, "$a"]}}}])
    with dup:  # keys compare with the index's collation
        branch.update_many(
            {"_id": {"$in": [0, 1]}},
            [{"$set": {"name": {"$cond": [{"$eq": ["$_id", 0]}, "N1", "x"]}}}],
        )
    assert list(branch.find(sort=[("_id", 1)])) == before
    # Keys no matched document held before move freely.
    branch.update_many({}, {"$inc": {"a": 10}})
    assert [d["a"] for d in branch.find(sort=[("_id", 1)])] == [10, 11, 12, 13]
    with admin.start_session() as session:
        session.start_transaction()
        with dup:
            branch.update_many({}, {"$inc": {"a": 1}}, session=session)
        session.abort_transaction()
    assert [d["a"] for d in branch.find(sort=[("_id", 1)])] == [10, 11, 12, 13]
    assert [d["a"] for d in main.find(sort=[("_id", 1)])] == [0, 1, 2, 3]
