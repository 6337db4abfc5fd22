"""Two proxies on one upstream: each answers from what is stored, not from its own past.

Every proxy keeps caches (branches, overlays, the ids each overlay holds);
another proxy's writes and metadata changes must never leave them serving a
wrong answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pymongo import InsertOne, MongoClient
from pymongo.errors import ClientBulkWriteException, OperationFailure

from argon_proxy.errors import BRANCH_NOT_FOUND, PROTECTED_BRANCH

from ..processes import Process, start_proxy, start_upstream
from ..stacks import argon

Client = MongoClient[dict[str, Any]]


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Process, Process, Process]]:
    """An upstream of their own and two proxies in front of it."""
    up = start_upstream()
    uri = f"mongodb://127.0.0.1:{up.port}"
    a = start_proxy(uri)
    b = start_proxy(uri)
    try:
        yield up, a, b
    finally:
        a.stop()
        b.stop()
        up.stop()


@pytest.fixture
def clients(pair: tuple[Process, Process, Process]) -> Iterator[tuple[Client, Client, Client]]:
    up, a, b = pair
    made: list[Client] = [MongoClient(p.uri) for p in (up, a, b)]
    yield made[0], made[1], made[2]
    for c in made:
        c.close()


def _until(check: Callable[[], bool], what: str) -> None:
    """Wait for ``check`` (another proxy's periodic refresh), failing after a long bound."""
    deadline = time.monotonic() + 60
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.1)


def test_branch_reads_and_writes_through_two_proxies(
    clients: tuple[Client, Client, Client],
) -> None:
    direct, a, b = clients
    direct.shop.items.insert_many([{"_id": i, "x": i} for i in range(1, 21)])
    argon(a, "createBranch", name="two", **{"from": "main"})
    on_a = a["shop@two"].items
    on_b = b["shop@two"].items
    # Both proxies learn the branch's (empty) overlay ids before the other writes.
    assert on_a.count_documents({}) == 20 and on_b.count_documents({}) == 20

    on_a.update_one({"_id": 1}, {"$set": {"x": 100}})
    on_b.delete_one({"_id": 15})
    on_b.update_one({"_id": 2}, {"$set": {"x": 200}})
    on_b.insert_one({"_id": 99, "x": 99})

    truth = {i: i for i in range(1, 21) if i != 15} | {1: 100, 2: 200, 99: 99}
    for side in (on_a, on_b):
        assert side.count_documents({}) == 20
        assert {d["_id"]: d["x"] for d in side.find()} == truth
        assert side.find_one({"_id": 15}) is None
        assert side.find_one({"_id": 2}) == {"_id": 2, "x": 200}
        assert sorted(side.distinct("x")) == sorted(truth.values())

    # A write through A decided on B's changes: it must see them, not resurrect _id 15.
    res = on_a.update_many({}, {"$inc": {"x": 1}})
    assert res.matched_count == 20
    assert on_b.find_one({"_id": 15}) is None
    assert on_b.find_one({"_id": 99}) == {"_id": 99, "x": 100}
    assert direct.shop.items.count_documents({}) == 20  # main untouched
    assert direct.shop.items.find_one({"_id": 15}) == {"_id": 15, "x": 15}


def test_main_writes_freeze_into_a_child_another_proxy_created(
    clients: tuple[Client, Client, Client],
) -> None:
    _direct, a, b = clients
    a.shop.orders.insert_many([{"_id": i, "qty": 1} for i in range(5)])
    a.shop.orders.find_one({"_id": 0})  # A has been through this collection
    argon(b, "createBranch", name="frozen", **{"from": "main"})
    # A has not heard of the branch; its main writes must still keep the child isolated.
    a.shop.orders.update_one({"_id": 0}, {"$set": {"qty": 50}})
    a.shop.orders.delete_one({"_id": 1})
    a.shop.orders.insert_one({"_id": 9, "qty": 9})
    child = b["shop@frozen"].orders
    assert {d["_id"]: d["qty"] for d in child.find()} == {i: 1 for i in range(5)}
    assert {d["_id"]: d["qty"] for d in a["shop@frozen"].orders.find()} == {i: 1 for i in range(5)}


def test_a_branch_deleted_and_created_again_elsewhere(
    clients: tuple[Client, Client, Client],
) -> None:
    direct, a, b = clients
    direct.shop.notes.insert_many([{"_id": i} for i in range(3)])
    argon(a, "createBranch", name="again", **{"from": "main"})
    a["shop@again"].notes.insert_one({"_id": "old-only"})
    assert a["shop@again"].notes.count_documents({}) == 4
    argon(b, "deleteBranch", name="again")
    argon(b, "createBranch", name="again", **{"from": "main"})
    b["shop@again"].notes.insert_one({"_id": "new-only"})
    assert sorted(map(str, a["shop@again"].notes.distinct("_id"))) == ["0", "1", "2", "new-only"]
    a["shop@again"].notes.insert_one({"_id": "from-a"})
    assert b["shop@again"].notes.count_documents({"_id": "from-a"}) == 1
    assert b["shop@again"].notes.count_documents({"_id": "old-only"}) == 0


def test_another_proxys_default_branch_is_followed(
    clients: tuple[Client, Client, Client],
) -> None:
    direct, a, b = clients
    direct.shop.flags.insert_one({"_id": 1, "on": False})
    argon(a, "createBranch", name="dflt", **{"from": "main"})
    a["shop@dflt"].flags.update_one({"_id": 1}, {"$set": {"on": True}})
    assert b.shop.flags.find_one({"_id": 1}) == {"_id": 1, "on": False}
    argon(a, "switchBranch", name="dflt")
    try:
        _until(lambda: b.shop.flags.find_one({"_id": 1}) == {"_id": 1, "on": True}, "switch seen")
    finally:
        argon(a, "switchBranch", name="main")
    _until(lambda: b.shop.flags.find_one({"_id": 1}) == {"_id": 1, "on": False}, "switch back")


def test_concurrent_create_branch_across_proxies_has_one_winner(
    clients: tuple[Client, Client, Client],
) -> None:
    direct, a, b = clients
    outcomes: list[str] = []

    def create(c: Client) -> None:
        try:
            argon(c, "createBranch", name="race", **{"from": "main"})
            outcomes.append("ok")
        except Exception as exc:  # every loser must be told why
            outcomes.append(type(exc).__name__ + ":" + str(getattr(exc, "code", "")))

    threads = [threading.Thread(target=create, args=(c,)) for c in (a, b) * 5]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert outcomes.count("ok") == 1, outcomes
    assert all(o == "OperationFailure:2002" for o in outcomes if o != "ok"), outcomes
    stored = direct["__argon"].branches.find_one({"_id": "race"})
    assert stored is not None
    a["shop@race"].things.insert_one({"_id": 1})
    assert b["shop@race"].things.find_one({"_id": 1}) == {"_id": 1}


def test_index_changes_right_after_another_proxys_catalog_change(
    clients: tuple[Client, Client, Client],
) -> None:
    """An index change logs itself with an LSN, which is where a proxy learns that
    another proxy changed the catalog: it must reload and go on, not fail."""
    _direct, a, b = clients
    a.idx.items.insert_one({"_id": 1, "x": 1})
    argon(a, "createBranch", name="idx-child", **{"from": "main"})
    for i in range(8):
        argon(b, "createBranch", name=f"idx-other-{i}", **{"from": "main"})  # a new epoch
        a.idx.items.create_index(f"f{i}")  # before a's periodic refresh, mostly
        a.idx.items.drop_index(f"f{i}_1")
    assert [ix["name"] for ix in a.idx.items.list_indexes()] == ["_id_"]
    assert a["idx@idx-child"].items.count_documents({}) == 1


def test_a_transaction_on_main_right_after_another_proxy_changed_a_child(
    clients: tuple[Client, Client, Client],
) -> None:
    """A client's transaction cannot start again by itself, so a proxy learns the
    other proxy's changes (a new branch, a child's writes) before its statements."""
    _direct, a, b = clients
    a.txmain.items.insert_many([{"_id": 1}, {"_id": 2}])
    assert b.txmain.items.count_documents({}) == 2
    argon(a, "createBranch", name="txmain-kid")
    a["txmain@txmain-kid"].items.update_one({"_id": 2}, {"$set": {"kid": 1}})
    with b.start_session() as s, s.start_transaction():
        b.txmain.items.insert_one({"_id": 3}, session=s)
        b.txmain.items.update_one({"_id": 1}, {"$set": {"x": 1}}, session=s)
        b.txmain.items.delete_one({"_id": 2}, session=s)
    assert sorted(d["_id"] for d in b.txmain.items.find()) == [1, 3]
    kid = list(a["txmain@txmain-kid"].items.find().sort("_id", 1))
    assert kid == [{"_id": 1}, {"_id": 2, "kid": 1}]


def test_drops_and_renames_on_main_keep_a_branch_another_proxy_just_made(
    clients: tuple[Client, Client, Client],
) -> None:
    """Proxy A drops and renames main's collections right after proxy B created a
    branch, before A's timer would have seen it: the branch keeps both."""
    _direct, a, b = clients
    a.t2d.items.insert_many([{"_id": 1}, {"_id": 2}])
    a.t2d.other.insert_one({"_id": 3})
    argon(b, "createBranch", name="t2d-b")
    a.t2d.items.drop()
    a.t2d.other.rename("moved")
    branch = b["t2d@t2d-b"]
    assert sorted(branch.list_collection_names()) == ["items", "other"]
    assert [d["_id"] for d in branch.items.find(sort=[("_id", 1)])] == [1, 2]
    assert [d["_id"] for d in branch.other.find()] == [3]
    assert a.t2d.list_collection_names() == ["moved"]


def test_point_reads_see_the_other_proxys_writes_at_once(
    clients: tuple[Client, Client, Client],
) -> None:
    # A point read checks A's caches with the read itself: whatever B changed just
    # before (a document, a new overlay, the branch itself) is in its answer.
    direct, a, b = clients
    direct.shop.points.insert_many([{"_id": i, "x": i} for i in range(5)])
    argon(a, "createBranch", name="points", **{"from": "main"})
    on_a, on_b = a["shop@points"].points, b["shop@points"].points
    assert on_a.find_one({"_id": 2}) == {"_id": 2, "x": 2}
    on_b.update_one({"_id": 2}, {"$set": {"x": 20}})  # the branch's first own document
    assert on_a.find_one({"_id": 2}) == {"_id": 2, "x": 20}
    on_b.delete_one({"_id": 3})
    assert on_a.find_one({"_id": 3}) is None
    assert on_a.find_one({"_id": 4}, {"x": 1, "_id": 0}) == {"x": 4}
    argon(b, "deleteBranch", name="points")
    argon(b, "createBranch", name="points", **{"from": "main"})
    assert on_a.find_one({"_id": 2}) == {"_id": 2, "x": 2}
    assert on_a.count_documents({"_id": 3}) == 1
    argon(b, "deleteBranch", name="points")
    with pytest.raises(OperationFailure) as refused:
        on_a.find_one({"_id": 2})
    assert refused.value.code == BRANCH_NOT_FOUND and "points" in str(refused.value)


@pytest.mark.parametrize("name", ["main", "guarded"])
def test_protection_set_or_lifted_on_one_proxy_holds_on_the_other_at_once(
    clients: tuple[Client, Client, Client], name: str
) -> None:
    _direct, a, b = clients
    if name != "main":
        argon(a, "createBranch", name=name, **{"from": "main"})
    db = "shop" if name == "main" else f"shop@{name}"
    coll = f"guards_{name}"
    b[db][coll].insert_one({"_id": 0})  # B has its caches of the branch filled
    argon(a, "protectBranch", name=name)
    try:
        with pytest.raises(OperationFailure) as refused:
            b[db][coll].insert_one({"_id": 1})
        assert refused.value.code == PROTECTED_BRANCH
        assert b[db][coll].count_documents({}) == 1
        # Writes that would change nothing are refused alike, not answered as if
        # the branch took them (a duplicate key, no document matched).
        for write in _no_op_writes(b[db][coll]):
            argon(a, "protectBranch", name=name, protected=False)
            b[db][coll].insert_one({"_id": 1})  # B holds the branch as writable again
            b[db][coll].delete_one({"_id": 1})
            argon(a, "protectBranch", name=name)
            with pytest.raises((OperationFailure, ClientBulkWriteException)) as refused:
                write()
            error: Any = refused.value
            if isinstance(error, ClientBulkWriteException):
                error = error.error
            assert error.code == PROTECTED_BRANCH, error.details
    finally:
        argon(a, "protectBranch", name=name, protected=False)
    with b.start_session() as session, session.start_transaction():
        b[db][coll].insert_one({"_id": 3}, session=session)  # lifted, in a transaction too
    b[db][coll].insert_one({"_id": 2})  # lifted: B must not refuse on what it held
    b[db][coll].create_index("x")
    assert sorted(d["_id"] for d in a[db][coll].find()) == [0, 2, 3]


def test_a_write_that_reloads_the_catalog_on_its_way_still_meets_a_new_protection(
    clients: tuple[Client, Client, Client],
) -> None:
    """B lets a write on main in on its caches; on its way the write reloads the
    catalog for a reason of its own (main's children, created through A, are first
    bundled by this write: docs/design.md, bundles). The reload brings A's
    protection along, and the write must meet it."""
    _direct, a, b = clients
    b.bundled.items.insert_one({"_id": 0})  # B holds main as writable
    for i in range(4):  # enough children of main for its next write to bundle them
        argon(a, "createBranch", name=f"bundled-{i}", **{"from": "main"})
    b["bundled@bundled-0"].items.find_one({"_id": 0})  # B knows them (a branch read syncs)
    argon(a, "protectBranch", name="main")
    try:
        with pytest.raises(OperationFailure) as refused:
            b.bundled.items.insert_one({"_id": 1})
        assert refused.value.code == PROTECTED_BRANCH, refused.value.details
    finally:
        argon(a, "protectBranch", name="main", protected=False)
        for i in range(4):
            argon(a, "deleteBranch", name=f"bundled-{i}")
    assert [d["_id"] for d in b.bundled.items.find()] == [0]


def _no_op_writes(coll: Any) -> list[Callable[[], object]]:
    """Writes that change nothing in ``coll`` (which holds ``{_id: 0}`` only)."""
    writes: list[Callable[[], object]] = [
        lambda: coll.insert_one({"_id": 0}),
        lambda: coll.update_one({"_id": 9}, {"$set": {"x": 1}}),
        lambda: coll.delete_many({"_id": 9}),
        lambda: coll.find_one_and_update({"_id": 9}, {"$set": {"x": 1}}),
    ]
    if "@" not in coll.database.name:  # a client's bulkWrite names main's namespaces
        insert = InsertOne(namespace=coll.full_name, document={"_id": 0})
        writes.append(lambda: coll.database.client.bulk_write([insert]))
    return writes


def test_writes_meet_the_other_proxys_catalog_changes_at_once(
    clients: tuple[Client, Client, Client],
) -> None:
    # A branch write checks A's caches in its own transaction (no sync before it):
    # one that finds them stale starts the whole command again, so the checks made
    # before its statements (is it a view, does the branch exist) see B's change.
    direct, a, b = clients
    direct.shop.writes.insert_many([{"_id": i, "x": i} for i in range(3)])
    argon(a, "createBranch", name="writes", **{"from": "main"})
    on_a, on_b = a["shop@writes"], b["shop@writes"]
    on_a.writes.update_one({"_id": 0}, {"$set": {"x": 10}})
    on_a.v.insert_one({"_id": 0})  # A's caches know v as a collection
    on_b.v.drop()
    on_b.create_collection("v", viewOn="writes", pipeline=[])
    with pytest.raises(OperationFailure) as refused:
        on_a.v.insert_one({"_id": 1})
    assert refused.value.code == 166  # CommandNotSupportedOnView, as mongod answers
    on_b.writes.drop()
    assert on_a.writes.update_one({"_id": 1}, {"$set": {"x": 11}}).matched_count == 0
    on_a.writes.insert_one({"_id": 5})
    assert [d["_id"] for d in on_b.writes.find()] == [5]
    argon(b, "deleteBranch", name="writes")
    with pytest.raises(OperationFailure) as gone:
        on_a.writes.insert_one({"_id": 6})
    assert gone.value.code == BRANCH_NOT_FOUND
    argon(b, "createBranch", name="writes", **{"from": "main"})
    on_a.writes.update_one({"_id": 2}, {"$set": {"x": 12}})
    assert sorted((d["_id"], d["x"]) for d in on_b.writes.find()) == [(0, 0), (1, 1), (2, 12)]
    assert direct.shop.writes.find_one({"_id": 2}) == {"_id": 2, "x": 2}
