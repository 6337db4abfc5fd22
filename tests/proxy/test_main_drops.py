"""Dropping main's collections and databases while branches exist: main loses them,
branches forked before keep them as they were (with their own changes), branches
forked after see what main has since."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from ..processes import Process
from ..stacks import argon, own_stack

Client = MongoClient[dict[str, Any]]


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Process, Process]]:
    with own_stack() as pair:
        yield pair


@pytest.fixture
def clients(stack: tuple[Process, Process]) -> Iterator[tuple[Client, Client]]:
    """``(direct, through Argon)``."""
    direct: Client = MongoClient(stack[0].uri)
    proxy: Client = MongoClient(stack[1].uri)
    yield direct, proxy
    direct.close()
    proxy.close()


def _ids(coll: Any, **flt: Any) -> list[Any]:
    return sorted(d["_id"] for d in coll.find(flt))


def test_a_branch_keeps_what_main_dropped(clients: tuple[Client, Client]) -> None:
    direct, proxy = clients
    main = proxy.md1.items
    main.insert_many([{"_id": i, "v": i} for i in range(5)])
    main.create_index("v", name="by_v")
    argon(proxy, "createBranch", name="md1-b")
    branch = proxy["md1@md1-b"].items
    branch.update_one({"_id": 1}, {"$set": {"v": 100}})
    main.update_one({"_id": 2}, {"$set": {"v": 200}})  # frozen into the branch
    main.drop()
    assert "items" not in proxy.md1.list_collection_names()
    assert "items" not in direct.md1.list_collection_names()  # main is the real data
    assert _ids(branch) == [0, 1, 2, 3, 4]
    assert branch.find_one({"_id": 1}) == {"_id": 1, "v": 100}
    assert branch.find_one({"_id": 2}) == {"_id": 2, "v": 2}
    assert branch.count_documents({"v": {"$gte": 3}}) == 3
    assert sorted(branch.distinct("v")) == [0, 2, 3, 4, 100]
    assert "by_v" in branch.index_information()
    assert proxy["md1@md1-b"].list_collection_names() == ["items"]
    # Main starts again: the branch forked before does not see it, one forked after does.
    main.insert_one({"_id": 9, "v": 9})
    assert _ids(branch) == [0, 1, 2, 3, 4]
    branch.insert_one({"_id": 9, "v": -9})  # the branch's own, beside main's new one
    argon(proxy, "createBranch", name="md1-c")
    assert _ids(proxy["md1@md1-c"].items) == [9]
    assert proxy["md1@md1-c"].items.find_one({"_id": 9}) == {"_id": 9, "v": 9}
    assert branch.find_one({"_id": 9}) == {"_id": 9, "v": -9}
    main.insert_one({"_id": 10})  # freezes into the later branch only
    assert _ids(proxy["md1@md1-c"].items) == [9]
    assert _ids(branch) == [0, 1, 2, 3, 4, 9]


def test_dropping_a_database_on_main_keeps_it_for_the_branch(
    clients: tuple[Client, Client],
) -> None:
    _, proxy = clients
    proxy.md2.a.insert_one({"_id": "a"})
    proxy.md2.b.insert_one({"_id": "b"})
    argon(proxy, "createBranch", name="md2-b")
    proxy.drop_database("md2")
    assert proxy.md2.list_collection_names() == []
    assert "md2" not in proxy.list_database_names() or not proxy.md2.list_collection_names()
    kept = proxy["md2@md2-b"]
    assert sorted(kept.list_collection_names()) == ["a", "b"]
    assert kept.a.find_one() == {"_id": "a"} and kept.b.find_one() == {"_id": "b"}


def test_time_travel_before_a_drop_reads_the_collection_main_had(
    clients: tuple[Client, Client],
) -> None:
    _, proxy = clients
    main = proxy.md3.items
    main.insert_many([{"_id": 1}, {"_id": 2}])
    argon(proxy, "createBranch", name="md3-keep")  # so the drop moves it aside
    main.insert_one({"_id": 3})
    before = argon(proxy, "log", branch="main", limit=1)["entries"][0]["lsn"]
    main.delete_one({"_id": 1})
    main.drop()
    main.insert_one({"_id": 7})  # a later collection of the same name
    past = proxy[f"md3@main@lsn-{before}"].items
    assert _ids(past) == [1, 2, 3]
    assert _ids(main) == [7]


def test_time_travel_reaches_across_drops_no_branch_reads(
    clients: tuple[Client, Client],
) -> None:
    """While branches exist, main's drops keep what they drop even when no branch
    reads it (the branch read an earlier archive of the name), and a drop of nothing
    changes nothing: time travel on main still reaches every point before them."""
    _, proxy = clients
    main = proxy.md7.items
    main.insert_many([{"_id": 1}, {"_id": 2}])
    argon(proxy, "createBranch", name="md7-keep")
    first = argon(proxy, "log", branch="main", limit=1)["entries"][0]["lsn"]
    main.drop()  # kept for the branch
    main.insert_one({"_id": 3})  # a later collection, which the branch never reads
    second = argon(proxy, "log", branch="main", limit=1)["entries"][0]["lsn"]
    main.drop()
    main.drop()  # nothing left to drop
    proxy.md7.nothing.drop()
    assert _ids(proxy[f"md7@main@lsn-{first}"].items) == [1, 2]
    assert _ids(proxy[f"md7@main@lsn-{second}"].items) == [3]
    assert _ids(proxy["md7@md7-keep"].items) == [1, 2]
    assert proxy.md7.list_collection_names() == []


def test_merges_and_diffs_across_a_drop_on_main_are_refused(
    clients: tuple[Client, Client],
) -> None:
    _, proxy = clients
    proxy.md4.items.insert_one({"_id": 1})
    argon(proxy, "createBranch", name="md4-b")
    proxy["md4@md4-b"].items.insert_one({"_id": 2})
    proxy.md4.items.insert_one({"_id": 3})
    proxy.md4.items.drop()
    with pytest.raises(OperationFailure) as merged:
        argon(proxy, "merge", source="md4-b", into="main")
    assert merged.value.code == 115 and "md4.items" in str(merged.value)
    with pytest.raises(OperationFailure) as diffed:
        argon(proxy, "diff", **{"from": "md4-b", "to": "main"})
    assert diffed.value.code == 115
    assert proxy.md4.list_collection_names() == []  # nothing half-merged


def test_what_cannot_be_moved_aside_is_refused(clients: tuple[Client, Client]) -> None:
    _, proxy = clients
    proxy.md5.items.insert_one({"_id": 1})
    proxy.md5.command("create", "shown", viewOn="items", pipeline=[])
    argon(proxy, "createBranch", name="md5-b")
    for attempt in (
        lambda: proxy.md5.drop_collection("shown"),
        lambda: proxy.drop_database("md5"),
    ):
        with pytest.raises(OperationFailure) as info:
            attempt()
        assert info.value.code == 115
    assert sorted(proxy.md5.list_collection_names()) == ["items", "shown"]


def test_without_branches_a_drop_ends_time_travel_and_gc_frees_archives() -> None:
    """With no branch to keep it, mongod drops the collection itself, and time travel
    refuses points before the drop rather than show part of it; an archive kept for
    a branch is removed by gc once the branch is gone and no point reaches it."""
    pair: tuple[Process, Process]
    with own_stack() as pair:
        direct: Client = MongoClient(pair[0].uri)
        proxy: Client = MongoClient(pair[1].uri)
        main = proxy.md6.items
        main.insert_many([{"_id": 1}, {"_id": 2}])
        before = argon(proxy, "log", branch="main", limit=1)["entries"][0]["lsn"]
        main.update_one({"_id": 1}, {"$set": {"x": 1}})
        proxy.drop_database("md6")
        main.insert_one({"_id": 5})
        with pytest.raises(OperationFailure) as info:
            proxy[f"md6@main@lsn-{before}"].items.find_one()
        assert info.value.code == 2005
        argon(proxy, "createBranch", name="md6-b")
        main.drop()  # a branch reads it: moved aside
        kept = [n for n in direct.md6.list_collection_names() if n.startswith("__argon.main")]
        assert len(kept) == 1
        argon(proxy, "deleteBranch", name="md6-b")
        main.insert_one({"_id": 6})  # a write after the drop: gc's retention reaches past it
        report = argon(proxy, "gc", retainSeconds=0, snapshotSeconds=0)["gc"]
        assert [key.split("@")[0] for key in report["archives_removed"]] == ["md6.items"]
        assert not [n for n in direct.md6.list_collection_names() if n.startswith("__argon")]
        direct.close()
        proxy.close()
