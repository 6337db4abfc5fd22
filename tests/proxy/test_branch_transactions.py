"""Client transactions that write on a branch: one upstream transaction holding the
branch's documents and their WAL entries, seen by the transaction alone until it
commits, and gone without a trace if it aborts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import DuplicateKeyError, OperationFailure

from ..processes import Process, start_proxy
from ..stacks import argon, branch_id, own_stack

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


def _wal(direct: Client, branch: str) -> int:
    return direct["__argon"].wal.count_documents({"branch_id": branch_id(direct, branch)})


def _seed(proxy: Client, db: str, branch: str) -> None:
    proxy[db].items.insert_many([{"_id": i, "x": i} for i in range(5)])
    argon(proxy, "createBranch", name=branch)


def test_a_committed_transaction_shows_its_writes_to_itself_then_to_all(
    clients: tuple[Client, Client],
) -> None:
    direct, proxy = clients
    _seed(proxy, "txa", "txa-b")
    items, fresh = proxy["txa@txa-b"].items, proxy["txa@txa-b"].fresh
    before = _wal(direct, "txa-b")
    with proxy.start_session() as s, s.start_transaction():
        items.insert_one({"_id": 10, "x": 10}, session=s)
        items.update_one({"_id": 1}, {"$set": {"x": 100}}, session=s)
        items.delete_one({"_id": 2}, session=s)
        fresh.insert_one({"_id": 1, "of": 1}, session=s)
        # The transaction reads its own writes, on every read path...
        got = list(items.find({}, session=s).sort("_id", 1))
        assert [d["_id"] for d in got] == [0, 1, 3, 4, 10] and got[1]["x"] == 100
        assert items.count_documents({}, session=s) == 5
        assert sorted(items.distinct("x", session=s)) == [0, 3, 4, 10, 100]
        joined = items.aggregate(
            [{"$match": {"_id": 1}}, {"$lookup": {"from": "fresh", "as": "f", "pipeline": []}}],
            session=s,
        )
        assert [len(d["f"]) for d in joined] == [1]
        # ...and nobody else sees them yet.
        assert items.count_documents({}) == 5 and items.find_one({"_id": 2}) is not None
        assert "fresh" not in proxy["txa@txa-b"].list_collection_names()
    assert [d["_id"] for d in items.find().sort("_id", 1)] == [0, 1, 3, 4, 10]
    assert sorted(proxy["txa@txa-b"].list_collection_names()) == ["fresh", "items"]
    assert list(fresh.find()) == [{"_id": 1, "of": 1}]
    assert _wal(direct, "txa-b") == before + 4
    assert (
        proxy.txa.items.count_documents({}) == 5 and proxy.txa.items.find_one({"_id": 10}) is None
    )
    assert "fresh" not in proxy.txa.list_collection_names()


def test_an_aborted_transaction_leaves_nothing(clients: tuple[Client, Client]) -> None:
    direct, proxy = clients
    _seed(proxy, "txb", "txb-b")
    branch = proxy["txb@txb-b"]
    before = _wal(direct, "txb-b")
    with proxy.start_session() as s:
        s.start_transaction()
        branch.items.insert_one({"_id": 20}, session=s)
        branch.items.delete_many({"x": {"$lt": 3}}, session=s)
        branch.other.insert_one({"_id": 20}, session=s)
        assert branch.items.count_documents({}, session=s) == 3
        s.abort_transaction()
    assert [d["_id"] for d in branch.items.find().sort("_id", 1)] == [0, 1, 2, 3, 4]
    assert branch.list_collection_names() == ["items"]
    assert branch.other.find_one() is None
    assert _wal(direct, "txb-b") == before
    branch.other.insert_one({"_id": 21})  # the collection is created afresh
    assert list(branch.other.find()) == [{"_id": 21}]


def test_one_document_changed_several_times_in_one_transaction(
    clients: tuple[Client, Client],
) -> None:
    _direct, proxy = clients
    _seed(proxy, "txc", "txc-b")
    items = proxy["txc@txc-b"].items
    with proxy.start_session() as s, s.start_transaction():
        items.update_one({"_id": 1}, {"$inc": {"x": 1}}, session=s)
        items.update_one({"_id": 1}, {"$inc": {"x": 1}}, session=s)
        assert items.find_one({"_id": 1}, session=s) == {"_id": 1, "x": 3}
        items.delete_one({"_id": 1}, session=s)
        assert items.find_one({"_id": 1}, session=s) is None
        res = items.update_one({"_id": 1}, {"$set": {"x": 7}}, upsert=True, session=s)
        assert res.upserted_id == 1
        items.delete_one({"_id": 3}, session=s)
        items.insert_one({"_id": 3, "x": 33}, session=s)
        assert items.count_documents({}, session=s) == 5
    assert items.find_one({"_id": 1}) == {"_id": 1, "x": 7}
    assert items.find_one({"_id": 3}) == {"_id": 3, "x": 33}
    assert proxy.txc.items.find_one({"_id": 1}) == {"_id": 1, "x": 1}


def test_a_failing_statement_aborts_the_whole_transaction(
    clients: tuple[Client, Client],
) -> None:
    _direct, proxy = clients
    _seed(proxy, "txd", "txd-b")
    items = proxy["txd@txd-b"].items
    items.create_index("x", unique=True)
    with proxy.start_session() as s:
        s.start_transaction()
        items.insert_one({"_id": 30, "x": 30}, session=s)
        with pytest.raises(DuplicateKeyError):
            items.insert_one({"_id": 31, "x": 1}, session=s)
        with pytest.raises(OperationFailure):
            s.commit_transaction()
    assert items.find_one({"_id": 30}) is None and items.count_documents({}) == 5


def test_with_transaction_and_a_restart_keep_what_was_committed(
    stack: tuple[Process, Process], clients: tuple[Client, Client]
) -> None:
    up, _proxy = stack
    _direct, proxy = clients
    _seed(proxy, "txe", "txe-b")
    branch = proxy["txe@txe-b"]

    def body(s: Any) -> None:
        branch.items.update_many({}, {"$set": {"y": 1}}, session=s)
        branch.created.insert_many([{"_id": i} for i in range(3)], session=s)

    with proxy.start_session() as s:
        s.with_transaction(body)
    other = start_proxy(f"mongodb://127.0.0.1:{up.port}")
    try:
        fresh: Client = MongoClient(other.uri)
        view = fresh["txe@txe-b"]
        assert view.items.count_documents({"y": 1}) == 5
        assert view.created.count_documents({}) == 3
        assert sorted(view.list_collection_names()) == ["created", "items"]
        fresh.close()
    finally:
        other.stop()
    assert proxy.txe.items.count_documents({"y": 1}) == 0


def test_a_collection_first_written_late_in_a_transaction(
    clients: tuple[Client, Client],
) -> None:
    """The branch's overlay of an indexed collection is created inside the
    transaction that first writes it: created outside, it would be newer than the
    transaction's snapshot, and mongod refuses such writes (WriteConflict)."""
    _direct, proxy = clients
    proxy.txf.items.insert_many([{"_id": i, "a": i % 6} for i in range(10)])
    proxy.txf.items.create_index("a")
    argon(proxy, "createBranch", name="txf-parent")
    proxy["txf@txf-parent"].items.insert_one({"_id": 20, "a": 1})
    argon(proxy, "createBranch", name="txf-child", **{"from": "txf-parent"})
    branch = proxy["txf@txf-child"]
    with proxy.start_session() as s, s.start_transaction():
        assert len(list(branch.items.find({}, session=s))) == 11
        branch.other.insert_one({"_id": 1}, session=s)
        assert branch.items.delete_many({"a": {"$gt": 1}}, session=s).deleted_count == 6
    assert sorted(d["_id"] for d in branch.items.find()) == [0, 1, 6, 7, 20]
    assert proxy.txf.items.count_documents({}) == 10


@pytest.mark.parametrize(
    "change",
    [
        lambda db, s: db.create_collection("made", session=s),
        lambda db, s: db.items.create_index("x", session=s),
        lambda db, s: db.items.drop_index("x_1", session=s),
        lambda db, s: db.items.drop(session=s),
    ],
)
def test_catalog_changes_inside_a_transaction_are_refused_not_hung(
    clients: tuple[Client, Client], change: Any
) -> None:
    """They would wait for the LSN counter the transaction holds since its first write."""
    direct, proxy = clients
    proxy.txg.items.insert_one({"_id": 1, "x": 1})
    proxy.txg.items.create_index("x")
    argon(proxy, "createBranch", name="txg-b")
    branch = proxy["txg@txg-b"]
    with proxy.start_session() as s:
        s.start_transaction()
        branch.items.insert_one({"_id": 2}, session=s)
        with pytest.raises(OperationFailure) as info:
            change(branch, s)
        assert info.value.code == 263 and "txg-b" in str(info.value)
        with pytest.raises(OperationFailure):  # the transaction is over, as on mongod
            s.commit_transaction()
    assert branch.items.count_documents({}) == 1
    assert "x_1" in branch.items.index_information()
    argon(proxy, "deleteBranch", name="txg-b")
    direct.drop_database("txg")  # main's data, now that no branch reads it


def _conflicting(proxy: Client, db: str, second_op: Callable[[Any, Any], object]) -> Any:
    """Run ``second_op(collection, session)`` in a client transaction on branch
    ``<db>-b`` while another one has written document 1 there; returns what it raised."""
    _seed(proxy, db, f"{db}-b")
    branch = proxy[f"{db}@{db}-b"]
    with proxy.start_session() as first, proxy.start_session() as second:
        first.start_transaction()
        branch.items.update_one({"_id": 1}, {"$set": {"x": "first"}}, session=first)
        second.start_transaction()
        with pytest.raises(OperationFailure) as conflict:
            second_op(branch.items, second)
        second.abort_transaction()
        first.commit_transaction()
    assert branch.items.find_one({"_id": 1}) == {"_id": 1, "x": "first"}
    return conflict.value


def test_a_write_conflict_in_a_transaction_fails_the_command_as_transient(
    clients: tuple[Client, Client],
) -> None:
    """Two client transactions writing one document conflict: the second one's
    statement fails as mongod fails a conflicting statement in a transaction, the
    whole command with TransientTransactionError, so drivers (and
    ``with_transaction``) start the transaction again; never a per-document write
    error, which they take for the application's own."""
    _direct, proxy = clients
    update = {"$set": {"x": "second"}}
    error = _conflicting(proxy, "txw", lambda c, s: c.update_one({"_id": 1}, update, session=s))
    assert error.has_error_label("TransientTransactionError")
    assert error.code == 112


def test_a_conflicting_find_and_modify_in_a_transaction_is_transient(
    clients: tuple[Client, Client],
) -> None:
    _direct, proxy = clients
    update = {"$set": {"y": 1}}
    error = _conflicting(
        proxy, "txm", lambda c, s: c.find_one_and_update({"_id": 1}, update, session=s)
    )
    assert error.has_error_label("TransientTransactionError")


def test_an_open_transaction_holds_up_only_the_documents_it_wrote(
    clients: tuple[Client, Client],
) -> None:
    """A client's transaction left open on a branch (a client that went away in the
    middle holds it until the upstream ends it, a minute on mongod) holds up, as on
    mongod, writers of the documents it wrote, not every writer of the collection.
    Whichever of two overlapping writers of the branch's collection commits later
    starts again if the other changed it meanwhile: here the transaction, at its
    commit, as mongod's transactions may; ``with_transaction`` then gets through."""
    _direct, proxy = clients
    _seed(proxy, "txo", "txo-b")
    items = proxy["txo@txo-b"].items
    items.update_one({"_id": 4}, {"$set": {"x": "before"}})  # the branch has its own copy
    with proxy.start_session() as s:
        s.start_transaction()
        items.insert_one({"_id": 10}, session=s)
        items.update_one({"_id": 1}, {"$set": {"x": "in"}}, session=s)
        # Outside it, other documents of the same collection and a new one.
        items.update_one({"_id": 2}, {"$set": {"x": "out"}})
        items.insert_one({"_id": 11})
        items.delete_one({"_id": 3})
        # ... went through while the transaction is alive and sees its own writes
        # (a writer held up until the upstream ends the transaction would not).
        assert items.find_one({"_id": 10}, session=s) == {"_id": 10}
        with pytest.raises(OperationFailure) as late:
            s.commit_transaction()
        assert late.value.has_error_label("TransientTransactionError"), late.value.details
    assert sorted(d["_id"] for d in items.find()) == [0, 1, 2, 4, 11]
    assert items.find_one({"_id": 2}) == {"_id": 2, "x": "out"}
    assert items.find_one({"_id": 1}) == {"_id": 1, "x": 1}

    def again(session: Any) -> None:
        items.insert_one({"_id": 10}, session=session)
        items.update_one({"_id": 1}, {"$set": {"x": "in"}}, session=session)

    with proxy.start_session() as s:
        s.with_transaction(again)
    assert items.find_one({"_id": 1}) == {"_id": 1, "x": "in"}
    assert sorted(d["_id"] for d in items.find()) == [0, 1, 2, 4, 10, 11]
