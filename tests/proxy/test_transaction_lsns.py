"""A client's open transaction holds nothing of Argon's: other writers, catalog
changes and readers of the LSN head go on while it is open, and its entries
take their LSNs when it commits, so a point read before the commit never
gains it later."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.client_session import ClientSession
from pymongo.errors import OperationFailure

from ..processes import Process
from ..stacks import argon

Client = MongoClient[dict[str, Any]]


@pytest.fixture
def pair(proxy_factory: Callable[..., Process]) -> Iterator[tuple[Client, Client]]:
    """Two clients of one proxy whose upstream replies must come within 5 s, so a
    writer stuck behind an open transaction fails instead of waiting it out."""
    proxy = proxy_factory(ARGON_UPSTREAM_TIMEOUT="5")
    first: Client = MongoClient(proxy.uri, socketTimeoutMS=30000)
    second: Client = MongoClient(proxy.uri, socketTimeoutMS=30000, retryWrites=False)
    yield first, second
    first.close()
    second.close()


def _lsn(c: Client) -> int:
    return int(argon(c, "status")["lsn"])


def _ids(coll: Any) -> list[Any]:
    return sorted(d["_id"] for d in coll.find())


def test_an_open_transaction_on_main_holds_up_no_other_writer(
    pair: tuple[Client, Client],
) -> None:
    first, second = pair
    first.tl1.a.insert_one({"_id": 0})
    second.tl1_other.c.insert_one({"_id": 0})
    with first.start_session() as session:
        session.start_transaction()
        first.tl1.a.insert_one({"_id": 1}, session=session)
        # Meanwhile, on other connections: writes, then catalog changes.
        second.tl1.b.insert_one({"_id": 1})
        second.tl1.a.update_one({"_id": 0}, {"$set": {"v": 1}})
        _lsn(second)
        second.drop_database("tl1_other")
        argon(second, "createBranch", name="tl1-b")
        # The branch forked while the transaction ran: it must run again.
        with pytest.raises(OperationFailure) as info:
            session.commit_transaction()
        assert info.value.has_error_label("TransientTransactionError")
    assert list(first.tl1.a.find().sort("_id", 1)) == [{"_id": 0, "v": 1}]
    assert _ids(second.tl1.b) == [1]
    assert "tl1_other" not in second.list_database_names()
    assert list(second["tl1@tl1-b"].a.find()) == [{"_id": 0, "v": 1}]


def test_a_transaction_takes_its_lsns_at_commit(pair: tuple[Client, Client]) -> None:
    first, second = pair
    first.tl6.create_collection("c")
    with first.start_session() as session:
        session.start_transaction()
        first.tl6.c.insert_one({"_id": 1}, session=session)
        first.tl6.c.insert_one({"_id": 2}, session=session)
        second.tl6.c.insert_one({"_id": 3})
        session.commit_transaction()
    entries = argon(first, "log", branch="main", db="tl6", collection="c")["entries"]
    assert [e["docId"] for e in sorted(entries, key=lambda e: e["lsn"])] == [3, 1, 2]
    assert all(e["op"] == "insert" for e in entries)


def test_a_point_read_before_a_commit_never_gains_it(pair: tuple[Client, Client]) -> None:
    first, second = pair
    second.tl2.c.insert_one({"_id": 0})
    with first.start_session() as session:
        session.start_transaction()
        first.tl2.c.insert_one({"_id": 1}, session=session)
        second.tl2.c.insert_one({"_id": 2})
        before = _lsn(second)
        session.commit_transaction()
    after = _lsn(second)
    assert after > before
    assert _ids(second[f"tl2@main@lsn-{before}"].c) == [0, 2]
    assert _ids(second[f"tl2@main@lsn-{after}"].c) == [0, 1, 2]


def test_a_fork_while_a_transaction_is_open_makes_it_start_again(
    pair: tuple[Client, Client],
) -> None:
    """Its statements froze nothing into the new branch, so its commit fails as a
    transient conflict; the driver runs it again, and the branch never sees it."""
    first, second = pair
    first.tl3.c.insert_one({"_id": 0})
    attempts: list[int] = []

    def work(session: ClientSession) -> None:
        attempts.append(1)
        first.tl3.c.update_one({"_id": 0}, {"$inc": {"n": 1}}, session=session)
        first.tl3.c.insert_one({"_id": len(attempts)}, session=session)
        if len(attempts) == 1:
            argon(second, "createBranch", name="tl3-b")

    with first.start_session() as session:
        session.with_transaction(work)
    assert len(attempts) == 2
    assert list(first.tl3.c.find().sort("_id", 1)) == [{"_id": 0, "n": 1}, {"_id": 2}]
    branch = second["tl3@tl3-b"].c
    assert list(branch.find()) == [{"_id": 0}]  # as main was when it forked


def test_an_aborted_transaction_leaves_no_entry(pair: tuple[Client, Client]) -> None:
    first, second = pair
    with first.start_session() as session:
        session.start_transaction()
        first.tl4.c.insert_one({"_id": 1}, session=session)
        session.abort_transaction()
        session.start_transaction()
        first.tl4.c.insert_one({"_id": 2}, session=session)
        session.commit_transaction()
    assert _ids(second.tl4.c) == [2]
    entries = argon(second, "log", branch="main", db="tl4", collection="c")["entries"]
    assert [e["docId"] for e in entries] == [2]


def test_a_commit_of_a_transaction_a_statement_failed_in_is_refused(
    pair: tuple[Client, Client],
) -> None:
    first, _ = pair
    first.tl5.c.insert_one({"_id": 1})
    with first.start_session() as session:
        session.start_transaction()
        first.tl5.c.insert_one({"_id": 2}, session=session)
        with pytest.raises(OperationFailure):
            first.tl5.c.insert_one({"_id": 1}, session=session)  # duplicate key
        with pytest.raises(OperationFailure) as info:
            session.commit_transaction()
        assert info.value.code == 251
    assert _ids(first.tl5.c) == [1]


@pytest.mark.parametrize("target", ["other", "same"])
def test_a_transaction_that_changed_the_catalog_does_not_lock_up_writers(
    pair: tuple[Client, Client], target: str
) -> None:
    """A client's transaction that registers a branch's collection announces it
    inside itself; a write on main meanwhile (of another collection, or of the
    same one, whose overlay on the branch the transaction registered) neither
    waits for the transaction nor blocks its next statement."""
    first, second = pair
    db = f"tl7{target}"
    first[db].c.insert_one({"_id": 0})
    first[db].other.insert_one({"_id": 0})
    argon(first, "createBranch", name=f"{db}-b")
    branch = first[f"{db}@{db}-b"]
    failures: list[BaseException] = []

    def write_on_main() -> None:
        try:
            coll = second[db].c if target == "same" else second[db].other
            coll.update_one({"_id": 0}, {"$set": {"v": 1}})
        except BaseException as exc:  # reported below
            failures.append(exc)

    with first.start_session() as session:
        session.start_transaction()
        branch.c.insert_one({"_id": 1}, session=session)  # the branch's first write there
        writer = threading.Thread(target=write_on_main)
        writer.start()
        writer.join(2)  # it may finish now, or wait for the transaction's documents
        branch.c.insert_one({"_id": 2}, session=session)
        session.commit_transaction()
    writer.join(120)
    assert not writer.is_alive() and not failures, failures
    assert _ids(branch.c) == [0, 1, 2]
    changed = second[db].c if target == "same" else second[db].other
    assert changed.find_one({"_id": 0}) == {"_id": 0, "v": 1}
    assert branch.c.find_one({"_id": 0}) == {"_id": 0}
    assert branch.other.find_one({"_id": 0}) == {"_id": 0}


def test_catalog_changes_elsewhere_do_not_fail_a_commit(pair: tuple[Client, Client]) -> None:
    """Only what the transaction's writes froze into matters at its commit: changes
    of other collections and other branches' catalog let it commit."""
    first, second = pair
    first.tl8.c.insert_one({"_id": 0})
    second.tl8_other.c.insert_one({"_id": 0})
    second.tl8.d.insert_one({"_id": 0})
    argon(first, "createBranch", name="tl8-b")
    with first.start_session() as session:
        session.start_transaction()
        first.tl8.c.update_one({"_id": 0}, {"$set": {"v": 1}}, session=session)
        second.tl8.d.update_one({"_id": 0}, {"$set": {"v": 1}})  # registers tl8-b's overlay of d
        second["tl8@tl8-b"].e.insert_one({"_id": 0})  # a collection created on the branch
        second.drop_database("tl8_other")  # kept for the branch, which read it
        session.commit_transaction()
    assert first.tl8.c.find_one() == {"_id": 0, "v": 1}
    assert second["tl8@tl8-b"].c.find_one() == {"_id": 0}
    assert second["tl8_other@tl8-b"].c.find_one() == {"_id": 0}
