"""Write commands keep every option the client gave them, on main and on a branch.

The write path rebuilds each statement as the upstream commands it runs;
an option it forgets changes what the write does (``sort`` picks another
document, ``let`` variables are undefined, a validator rejects what the
client asked to bypass). Each case runs through Argon on main, through
Argon on a branch, and straight against the upstream, and must agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import ReturnDocument, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import (
    BulkWriteError,
    DuplicateKeyError,
    OperationFailure,
    WriteConcernError,
    WriteError,
)
from pymongo.write_concern import WriteConcern

from ..stacks import Client, side_by_side

Coll = Collection[dict[str, Any]]


@pytest.fixture(scope="module")
def clients() -> Iterator[dict[str, Client]]:
    """Direct, Argon on main, and Argon on branch ``opts`` (by appName)."""
    with side_by_side("opts") as clients:
        yield clients


TARGETS = ["direct", "main", "branch"]


def _fresh(clients: dict[str, Client], target: str, name: str) -> Coll:
    """``name`` (per target) holding x = 0..4, read back through ``target``."""
    coll_name = f"{name}_{target}"
    clients["direct"].opts_db[coll_name].insert_many([{"_id": i, "x": i} for i in range(5)])
    return clients[target].opts_db[coll_name]


@pytest.mark.parametrize("target", TARGETS)
def test_update_one_with_sort_changes_the_document_the_sort_picks(
    clients: dict[str, Client], target: str
) -> None:
    coll = _fresh(clients, target, "sorted")
    result = coll.update_one({"x": {"$gte": 1}}, {"$set": {"hit": True}}, sort={"x": -1})
    assert result.matched_count == 1
    assert [d["_id"] for d in coll.find({"hit": True})] == [4]
    coll.replace_one({}, {"x": 10, "replaced": True}, sort={"x": -1})
    assert coll.find_one({"replaced": True}) == {"_id": 4, "x": 10, "replaced": True}


@pytest.mark.parametrize("target", TARGETS)
def test_let_variables_reach_every_statement(clients: dict[str, Client], target: str) -> None:
    coll = _fresh(clients, target, "let")
    by_var = {"$expr": {"$eq": ["$x", "$$v"]}}
    assert coll.update_many(by_var, {"$set": {"u": 1}}, let={"v": 2}).modified_count == 1
    assert coll.find_one({"u": 1}) == {"_id": 2, "x": 2, "u": 1}
    assert coll.update_one(by_var, [{"$set": {"w": "$$v"}}], let={"v": 3}).modified_count == 1
    assert coll.find_one({"_id": 3}) == {"_id": 3, "x": 3, "w": 3}
    found = coll.find_one_and_update(
        by_var, {"$set": {"f": 1}}, let={"v": 1}, return_document=ReturnDocument.AFTER
    )
    assert found == {"_id": 1, "x": 1, "f": 1}
    assert coll.delete_many(by_var, let={"v": 0}).deleted_count == 1
    assert sorted(d["_id"] for d in coll.find()) == [1, 2, 3, 4]


@pytest.mark.parametrize("target", ["direct", "main"])
def test_bypass_document_validation_is_honoured(clients: dict[str, Client], target: str) -> None:
    name = f"validated_{target}"
    db = clients[target].opts_db
    db.create_collection(name, validator={"x": {"$type": "int"}})
    coll = db[name]
    with pytest.raises(WriteError) as info:
        coll.insert_one({"x": "text"})
    assert info.value.code == 121
    coll.insert_one({"_id": "bypassed", "x": "text"}, bypass_document_validation=True)
    coll.update_one(
        {"_id": "bypassed"}, {"$set": {"y": "also text"}}, bypass_document_validation=True
    )
    coll.bulk_write(
        [UpdateOne({"_id": "bypassed"}, {"$set": {"z": "z"}})], bypass_document_validation=True
    )
    assert coll.find_one({"_id": "bypassed"}) == {
        "_id": "bypassed",
        "x": "text",
        "y": "also text",
        "z": "z",
    }


@pytest.mark.parametrize("target", TARGETS)
def test_an_upsert_of_id_null_is_reported_as_an_upsert(
    clients: dict[str, Client], target: str
) -> None:
    coll = clients[target].opts_db[f"null_id_{target}"]
    result = coll.update_one({"_id": None}, {"$set": {"a": 1}}, upsert=True)
    assert result.raw_result is not None
    assert result.raw_result["n"] == 1
    assert result.did_upsert and result.upserted_id is None
    assert coll.find_one({"_id": None}) == {"_id": None, "a": 1}


@pytest.mark.parametrize("target", TARGETS)
def test_client_bulk_write_keeps_let_and_sort(clients: dict[str, Client], target: str) -> None:
    from pymongo import UpdateOne as ClientUpdateOne

    coll = _fresh(clients, target, "client_bulk")
    client = clients[target]
    result = client.bulk_write(
        [
            ClientUpdateOne(
                {"x": {"$gte": 1}},
                {"$set": {"top": True}},
                sort={"x": -1},
                namespace=coll.full_name,
            ),
        ],
        let={"v": 2},
    )
    assert result.modified_count == 1
    assert [d["_id"] for d in coll.find({"top": True})] == [4]


@pytest.mark.parametrize("target", TARGETS)
def test_duplicate_key_errors_say_which_key_clashed(
    clients: dict[str, Client], target: str
) -> None:
    name = f"unique_{target}"
    clients["direct"].opts_db[name].create_index([("email", 1)], unique=True, name="email_1")
    clients["direct"].opts_db[name].insert_one({"_id": 1, "email": "a@x"})
    coll = clients[target].opts_db[name]
    with pytest.raises(DuplicateKeyError) as by_key:
        coll.insert_one({"_id": 2, "email": "a@x"})
    assert by_key.value.details is not None
    assert by_key.value.details["keyPattern"] == {"email": 1}
    assert by_key.value.details["keyValue"] == {"email": "a@x"}
    with pytest.raises(BulkWriteError) as by_id:
        coll.insert_many([{"_id": 3, "email": "c@x"}, {"_id": 1, "email": "d@x"}], ordered=False)
    error = by_id.value.details["writeErrors"][0]
    assert (error["index"], error["code"]) == (1, 11000)
    assert (error["keyPattern"], error["keyValue"]) == ({"_id": 1}, {"_id": 1})
    with pytest.raises(DuplicateKeyError) as by_modify:
        coll.find_one_and_update({"_id": 3}, {"$set": {"email": "a@x"}})
    assert by_modify.value.details is not None
    assert by_modify.value.details["keyValue"] == {"email": "a@x"}


@pytest.mark.parametrize("target", TARGETS)
def test_catalog_changes_are_acknowledged_as_the_write_concern_asks(
    clients: dict[str, Client], target: str
) -> None:
    """The upstream has one member: ``w: 2`` cannot be satisfied. mongod makes the
    change and says so in ``writeConcernError``; so must Argon, where it makes the
    change itself (on a branch, or on main while a branch reads the collection)."""
    db = clients[target].get_database("wc_db", write_concern=WriteConcern(w=2))
    name = f"wc_{target}"
    with pytest.raises(WriteConcernError):
        db.create_collection(name)
    coll = db[name]
    with pytest.raises(WriteConcernError):
        coll.create_index("x")
    assert "x_1" in clients[target].wc_db[name].index_information()
    with pytest.raises(WriteConcernError):
        coll.drop_index("x_1")
    with pytest.raises(WriteConcernError):
        coll.rename(f"{name}_moved")
    assert f"{name}_moved" in clients[target].wc_db.list_collection_names()
    with pytest.raises(WriteConcernError):
        db[f"{name}_moved"].drop()
    assert clients[target].wc_db.list_collection_names() == []
    with pytest.raises(WriteConcernError):  # acknowledged even with nothing to drop
        db[f"{name}_never"].drop()


@pytest.mark.parametrize("target", TARGETS)
def test_a_write_concern_that_cannot_be_parsed_fails_before_any_change(
    clients: dict[str, Client], target: str
) -> None:
    create = {"create": f"unparsed_wc_{target}", "writeConcern": {"w": -3}}
    with pytest.raises(OperationFailure) as failed:
        clients[target].wc_db.command(create)
    assert failed.value.code == 9
    assert f"unparsed_wc_{target}" not in clients[target].wc_db.list_collection_names()


@pytest.mark.parametrize("target", TARGETS)
def test_update_statement_constants_reach_the_update(
    clients: dict[str, Client], target: str
) -> None:
    """An update statement's own ``c`` (constants of a pipeline update) is kept,
    one statement alone or several in one command."""
    coll = _fresh(clients, target, "constants")
    updates = [
        {"q": {"_id": i}, "u": [{"$set": {"y": "$$given"}}], "c": {"given": 10 + i}} for i in (1, 2)
    ]
    for part in (updates[:1], updates[1:], updates):
        reply = coll.database.command({"update": coll.name, "updates": part})
        assert (reply["n"], reply["nModified"]) == (len(part), len(part) if part != updates else 0)
    assert [d.get("y") for d in coll.find({}, sort=[("_id", 1)])] == [None, 11, 12, None, None]
