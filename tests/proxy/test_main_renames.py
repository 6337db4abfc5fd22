"""Renaming main's collections. Without branches it is mongod's rename (time travel
then stops there). While branches exist, main's collection takes the new name at
once, branches forked before keep the old name with what it held then, and main's
later writes under the new name stay off them, time travel included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from ..processes import Process
from ..stacks import argon, own_stack

Client = MongoClient[dict[str, Any]]


@pytest.fixture  # a rename without branches needs a proxy that never had one
def proxy() -> Iterator[Client]:
    pair: tuple[Process, Process]
    with own_stack() as pair:
        client: Client = MongoClient(pair[1].uri)
        yield client
        client.close()


def _ids(coll: Any) -> list[Any]:
    return sorted(d["_id"] for d in coll.find())


def test_without_branches_a_rename_is_mongods_and_ends_time_travel(proxy: Client) -> None:
    main = proxy.mr0
    main.a.insert_many([{"_id": 1}, {"_id": 2}])
    before = argon(proxy, "log", branch="main", limit=1)["entries"][0]["lsn"]
    main.a.rename("b")
    assert main.list_collection_names() == ["b"] and _ids(main.b) == [1, 2]
    with pytest.raises(OperationFailure) as info:
        proxy[f"mr0@main@lsn-{before}"].a.find_one()
    assert info.value.code == 2005


def test_a_branch_keeps_the_old_name_and_what_it_held(proxy: Client) -> None:
    main = proxy.mr1
    main.a.insert_many([{"_id": i, "v": i} for i in range(4)])
    main.a.create_index("v", name="by_v")
    argon(proxy, "createBranch", name="mr1-b")
    branch = proxy["mr1@mr1-b"]
    branch.a.update_one({"_id": 0}, {"$set": {"v": 100}})
    main.a.rename("b")
    assert main.list_collection_names() == ["b"]
    assert _ids(main.b) == [0, 1, 2, 3] and "by_v" in main.b.index_information()
    assert branch.list_collection_names() == ["a"]
    assert _ids(branch.a) == [0, 1, 2, 3] and branch.a.find_one({"_id": 0}) == {"_id": 0, "v": 100}
    # Main writes under the new name: the branch keeps the state of the rename.
    main.b.update_one({"_id": 1}, {"$set": {"v": -1}})
    main.b.delete_one({"_id": 2})
    main.b.insert_one({"_id": 9})
    assert _ids(branch.a) == [0, 1, 2, 3] and branch.a.find_one({"_id": 1}) == {"_id": 1, "v": 1}
    assert "b" not in branch.list_collection_names()
    # Renamed again, then dropped: still what the branch had.
    main.b.rename("c")
    main.c.update_one({"_id": 3}, {"$set": {"v": -3}})
    assert branch.a.find_one({"_id": 3}) == {"_id": 3, "v": 3}
    main.c.drop()
    assert _ids(branch.a) == [0, 1, 2, 3]
    argon(proxy, "createBranch", name="mr1-later")
    assert proxy["mr1@mr1-later"].list_collection_names() == []


def test_a_branch_that_never_had_the_new_name_gets_none_of_main_writes_under_it(
    proxy: Client,
) -> None:
    """Main's writes under the new name change documents that existed before the
    branch forked (under the old name): their pre-images must not become documents
    of the branch's collection of the new name, which it creates later."""
    main = proxy.mr5
    main.a.insert_many([{"_id": i, "v": i} for i in range(3)])
    argon(proxy, "createBranch", name="mr5-b")
    branch = proxy["mr5@mr5-b"]
    main.a.rename("b")
    main.b.update_one({"_id": 1}, {"$set": {"v": 100}})
    main.b.delete_one({"_id": 2})
    branch.b.insert_one({"_id": 14})
    assert _ids(branch.b) == [14]
    assert _ids(branch.a) == [0, 1, 2] and branch.a.find_one({"_id": 1}) == {"_id": 1, "v": 1}
    assert _ids(main.b) == [0, 1]


def test_a_rename_over_a_collection_branches_read_keeps_it_for_them(proxy: Client) -> None:
    """``dropTarget`` over main's renamed collection, which a branch reads under its
    old name: the target moves aside for the branch, as a drop would."""
    main = proxy.mr6
    main.a.insert_many([{"_id": 1}, {"_id": 2}])
    argon(proxy, "createBranch", name="mr6-b")
    main.a.rename("b")  # the branch reads main's b as its a
    main.a.insert_one({"_id": 9})  # a later a, which the branch never reads
    main.a.rename("b", dropTarget=True)
    assert _ids(main.b) == [9] and main.list_collection_names() == ["b"]
    branch = proxy["mr6@mr6-b"]
    assert _ids(branch.a) == [1, 2] and branch.list_collection_names() == ["a"]


def test_time_travel_across_a_rename_on_main(proxy: Client) -> None:
    main = proxy.mr2
    main.a.insert_many([{"_id": 1}, {"_id": 2}])
    argon(proxy, "createBranch", name="mr2-keep")
    main.a.insert_one({"_id": 3})
    before = argon(proxy, "log", branch="main", limit=1)["entries"][0]["lsn"]
    main.a.delete_one({"_id": 1})
    main.a.rename("b")
    main.b.insert_one({"_id": 4})
    main.b.delete_one({"_id": 2})
    past = proxy[f"mr2@main@lsn-{before}"]
    assert past.list_collection_names() == ["a"]
    assert _ids(past.a) == [1, 2, 3]
    assert _ids(main.b) == [3, 4]


def test_renames_that_cannot_keep_branches_isolated_are_refused(proxy: Client) -> None:
    proxy.mr3.a.insert_one({"_id": 1})
    proxy.mr3.b.insert_one({"_id": 2})
    argon(proxy, "createBranch", name="mr3-b")
    with pytest.raises(OperationFailure) as other_db:
        proxy.admin.command("renameCollection", "mr3.a", to="mr3x.a")
    assert other_db.value.code == 115
    with pytest.raises(OperationFailure) as exists:
        proxy.mr3.a.rename("b")
    assert exists.value.code == 48
    proxy.mr3.a.rename("b", dropTarget=True)
    assert _ids(proxy.mr3.b) == [1]
    assert _ids(proxy["mr3@mr3-b"].a) == [1] and _ids(proxy["mr3@mr3-b"].b) == [2]


def test_points_on_either_side_of_a_rename_are_different_states(proxy: Client) -> None:
    main = proxy.mr4
    main.a.insert_many([{"_id": 1}, {"_id": 2}])
    argon(proxy, "createBranch", name="mr4-keep")
    before = argon(proxy, "log", branch="main", limit=1)["entries"][0]["lsn"]
    assert _ids(proxy[f"mr4@main@lsn-{before}"].a) == [1, 2]  # its snapshot is kept
    main.a.rename("b")
    after = argon(proxy, "status")["lsn"]  # no WAL entry since: only the rename
    past = proxy[f"mr4@main@lsn-{after}"]
    assert past.list_collection_names() == ["b"]
    assert _ids(past.b) == [1, 2] and _ids(past.a) == []


@pytest.mark.parametrize("with_branch", [False, True])
def test_a_transaction_writes_a_renamed_collection_after_reading_it(
    proxy: Client, with_branch: bool
) -> None:
    """Argon asked the upstream, outside the client's transaction, whether the
    collection exists (to register overlays nobody needed); after a rename that
    made the transaction's next write conflict on the test upstream."""
    main = proxy[f"mr_txn{int(with_branch)}"]
    main.other.insert_many([{"_id": 1, "a": 1, "b": "x"}, {"_id": 2, "a": 2}])
    if with_branch:
        argon(proxy, "createBranch", name=f"txn-rename-{int(with_branch)}")
        main.other.update_one({"_id": 2}, {"$set": {"a": 3}})  # the child has its overlay
    main.other.rename("items")
    with proxy.start_session() as session, session.start_transaction():
        assert len(list(main.items.find({}, session=session))) == 2
        done = main.items.update_many({"a": 1}, {"$unset": {"b": ""}}, session=session)
        assert done.modified_count == 1
    assert main.items.find_one({"_id": 1}) == {"_id": 1, "a": 1}
