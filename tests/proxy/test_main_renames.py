"""Renaming main's collections: as mongod does without branches (time travel then
stops there); refused while branches read the collection."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from ..processes import Process
from ..stacks import argon, own_stack

Client = MongoClient[dict[str, Any]]


@pytest.fixture
def proxy() -> Iterator[Client]:
    pair: tuple[Process, Process]
    with own_stack() as pair:
        client: Client = MongoClient(pair[1].uri)
        yield client
        client.close()


def _ids(coll: Any) -> list[Any]:
    return sorted(d["_id"] for d in coll.find())


def test_without_branches_a_rename_is_mongods_and_ends_time_travel(proxy: Client) -> None:
    main = proxy.mr1
    main.a.insert_many([{"_id": 1}, {"_id": 2}])
    before = argon(proxy, "log", branch="main", limit=1)["entries"][0]["lsn"]
    main.a.rename("b")
    assert main.list_collection_names() == ["b"] and _ids(main.b) == [1, 2]
    with pytest.raises(OperationFailure) as info:
        proxy[f"mr1@main@lsn-{before}"].a.find_one()
    assert info.value.code == 2005


def test_a_rename_branches_read_is_refused(proxy: Client) -> None:
    proxy.mr2.a.insert_one({"_id": 1})
    argon(proxy, "createBranch", name="mr2-b")
    attempts: list[Callable[[], object]] = [
        lambda: proxy.mr2.a.rename("b"),
        lambda: proxy.admin.command("renameCollection", "mr2.a", to="mr2x.a"),
    ]
    for attempt in attempts:
        with pytest.raises(OperationFailure) as info:
            attempt()
        assert info.value.code == 115 and "mr2.a" in str(info.value)
    assert proxy.mr2.list_collection_names() == ["a"]
    assert _ids(proxy["mr2@mr2-b"].a) == [1]
