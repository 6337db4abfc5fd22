"""Branches through real clients: create, select, isolate both ways, refuse clearly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from argon_proxy import wal

from ..processes import Process
from ..stacks import argon, own_stack

Client = MongoClient[dict[str, object]]


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Process, Process]]:
    """An upstream and proxy of their own: branches here must not guard other tests' drops."""
    with own_stack() as pair:
        yield pair


@pytest.fixture
def admin(stack: tuple[Process, Process]) -> Iterator[Client]:
    c: Client = MongoClient(stack[1].uri)
    yield c
    c.close()


def test_seed_flow_isolation_both_ways(stack: tuple[Process, Process], admin: Client) -> None:
    up, proxy = stack
    main = admin.ml_database.training_data
    main.insert_many(
        [
            {"_id": i, "category": "outlier" if i % 4 == 0 else "normal", "weight": 1.0}
            for i in range(20)
        ]
    )
    argon(admin, "createBranch", name="model-v2-experiment", **{"from": "main"})

    # An unmodified app pointed at the branch through appName.
    app: Client = MongoClient(proxy.uri, appname="argon:model-v2-experiment")
    try:
        data = app.ml_database.training_data
        assert data.count_documents({}) == 20
        res = data.update_many({"category": "outlier"}, {"$set": {"weight": 0.1}})
        assert (res.matched_count, res.modified_count) == (5, 5)
        data.insert_many(
            [{"_id": 100 + i, "category": "augmented", "weight": 1.0} for i in range(3)]
        )
        data.delete_one({"_id": 1})
        assert data.count_documents({}) == 22
        assert data.count_documents({"weight": 0.1}) == 5
        assert sorted(data.distinct("category")) == ["augmented", "normal", "outlier"]

        # main is untouched, also when read directly from the upstream
        direct: Client = MongoClient(up.uri)
        assert direct.ml_database.training_data.count_documents({"weight": 0.1}) == 0
        assert main.count_documents({}) == 20
        assert main.find_one({"_id": 1}) is not None
        direct.close()

        # main changes; the branch does not see it
        main.update_one({"_id": 2}, {"$set": {"weight": 5.0}})
        main.delete_one({"_id": 3})
        main.insert_one({"_id": 500, "category": "late"})
        assert data.find_one({"_id": 2})["weight"] == 1.0  # type: ignore[index]
        assert data.find_one({"_id": 3}) is not None
        assert data.find_one({"_id": 500}) is None
        assert data.count_documents({}) == 22
        ordered = [d["_id"] for d in data.find({"_id": {"$lt": 6}}).sort("_id", -1)]
        assert ordered == [5, 4, 3, 2, 0]
    finally:
        app.close()


def test_database_name_addresses_a_branch(admin: Client) -> None:
    admin.shop.orders.insert_many([{"_id": i, "qty": i} for i in range(5)])
    argon(admin, "createBranch", name="debug/INCIDENT-2024-001")
    branch_db = admin["shop@debug~INCIDENT-2024-001"]
    branch_db.orders.update_one({"_id": 2}, {"$inc": {"qty": 100}})
    assert branch_db.orders.find_one({"_id": 2})["qty"] == 102  # type: ignore[index]
    assert admin.shop.orders.find_one({"_id": 2})["qty"] == 2  # type: ignore[index]
    total = list(branch_db.orders.aggregate([{"$group": {"_id": None, "s": {"$sum": "$qty"}}}]))
    assert total[0]["s"] == 110


def test_nested_branches(admin: Client) -> None:
    admin.nest.c.insert_many([{"_id": i, "v": 0} for i in range(3)])
    argon(admin, "createBranch", name="lvl1")
    argon(admin, "createBranch", name="lvl1/lvl2", **{"from": "lvl1"})
    admin["nest@lvl1"].c.update_one({"_id": 0}, {"$set": {"v": 1}})
    l2 = admin["nest@lvl1~lvl2"].c
    assert l2.find_one({"_id": 0})["v"] == 0  # type: ignore[index]  # created before the change
    l2.update_one({"_id": 1}, {"$set": {"v": 2}})
    assert admin["nest@lvl1"].c.find_one({"_id": 1})["v"] == 0  # type: ignore[index]
    assert [d["v"] for d in l2.find().sort("_id", 1)] == [0, 2, 0]


def test_unique_id_holds_across_the_view(admin: Client) -> None:
    admin.uniq.c.insert_one({"_id": "a"})
    argon(admin, "createBranch", name="uniq-branch")
    coll = admin["uniq@uniq-branch"].c
    with pytest.raises(DuplicateKeyError) as info:
        coll.insert_one({"_id": "a"})
    assert "E11000" in str(info.value)
    with pytest.raises(BulkWriteError) as bulk:
        coll.insert_many([{"_id": "b"}, {"_id": "a"}, {"_id": "c"}], ordered=False)
    details = bulk.value.details
    assert details["nInserted"] == 2
    assert [e["index"] for e in details["writeErrors"]] == [1]
    coll.delete_one({"_id": "a"})
    coll.insert_one({"_id": "a", "again": True})  # allowed once deleted on the branch
    assert coll.find_one({"_id": "a"}) == {"_id": "a", "again": True}


def test_unknown_and_invalid_branches_are_clear_errors(
    stack: tuple[Process, Process], admin: Client
) -> None:
    with pytest.raises(OperationFailure) as info:
        admin["shop@no-such-branch"].orders.find_one()
    assert "no-such-branch" in str(info.value) and "does not exist" in str(info.value)
    with pytest.raises(OperationFailure) as bad:
        argon(admin, "createBranch", name="bad name!")
    assert "invalid branch name" in str(bad.value)
    c: Client = MongoClient(stack[1].uri, appname="argon:ghost")
    try:
        with pytest.raises(OperationFailure):
            c.shop.orders.find_one()
    finally:
        c.close()


def test_unsupported_command_on_branch_names_it_and_the_branch(admin: Client) -> None:
    argon(admin, "createBranch", name="idx-branch")
    with pytest.raises(OperationFailure) as info:
        admin["shop@idx-branch"].command({"collMod": "orders", "validator": {}})
    assert info.value.code == 115
    assert "collMod" in str(info.value) and "idx-branch" in str(info.value)
    with pytest.raises(OperationFailure) as out:
        admin["shop@idx-branch"].orders.aggregate(
            [{"$merge": {"into": "elsewhere", "whenMatched": [{"$set": {"x": 1}}]}}]
        )
    assert out.value.code == 115 and "$merge" in str(out.value)


def test_drop_database_on_a_branch_leaves_main_whole(admin: Client) -> None:
    admin.dropdb.a.insert_many([{"_id": 1}, {"_id": 2}])
    admin.dropdb.b.insert_one({"_id": 1})
    argon(admin, "createBranch", name="dropdb-branch")
    branch = admin["dropdb@dropdb-branch"]
    branch.c.insert_one({"_id": 9})  # a collection only the branch has
    branch.a.insert_one({"_id": 3})

    reply = branch.command("dropDatabase")
    assert reply["ok"] == 1.0 and reply["dropped"] == "dropdb"
    assert branch.list_collection_names() == []
    assert branch.a.find_one() is None and branch.c.count_documents({}) == 0
    assert sorted(admin.dropdb.list_collection_names()) == ["a", "b"]
    assert admin.dropdb.a.count_documents({}) == 2

    branch.a.insert_one({"_id": 5})  # the branch writes again from empty
    assert list(branch.a.find()) == [{"_id": 5}]
    assert branch.list_collection_names() == ["a"]
    assert admin.dropdb.a.count_documents({"_id": 5}) == 0
    assert "dropped" not in admin["nothing@dropdb-branch"].command("dropDatabase")

    argon(admin, "createBranch", name="dropdb-child", **{"from": "dropdb-branch"})
    with pytest.raises(OperationFailure) as info:
        branch.command("dropDatabase")
    assert info.value.code == 115 and "child branches" in str(info.value)
    assert list(admin["dropdb@dropdb-child"].a.find()) == [{"_id": 5}]


def test_indexes_are_branch_local(admin: Client) -> None:
    admin.ix.c.insert_one({"_id": 1, "a": 1})
    argon(admin, "createBranch", name="ix-branch")
    branch = admin["ix@ix-branch"].c
    branch.create_index("a")
    assert "a_1" in branch.index_information()
    assert "a_1" not in admin.ix.c.index_information()  # main is untouched
    admin.ix.c.create_index("b")  # main's new index does not reach the branch
    assert "b_1" not in branch.index_information()
    assert "b_1" in admin.ix.c.index_information()
    branch.drop_index("a_1")
    assert set(branch.index_information()) == {"_id_"}
    with pytest.raises(OperationFailure) as info:
        branch.drop_index("nope_1")
    assert info.value.code == 27


def test_list_and_get_and_delete_and_switch(stack: tuple[Process, Process], admin: Client) -> None:
    argon(admin, "createBranch", name="temp-branch")
    admin["tmpdb@temp-branch"].c.insert_one({"x": 1})
    names = [b["name"] for b in argon(admin, "listBranches")["branches"]]
    assert names[0] == "main" and "temp-branch" in names
    info = argon(admin, "getBranch", name="temp-branch")["branch"]
    assert info["parent"] == "main" and info["stats"]["changes"] == 1
    assert info["head_lsn"] > info["base_lsn"]
    # internal collections never show through the proxy
    assert all(not n.startswith("__argon") for n in admin.tmpdb.list_collection_names())
    assert "__argon" not in admin.list_database_names()
    assert admin["tmpdb@temp-branch"].list_collection_names() == ["c"]

    argon(admin, "switchBranch", name="temp-branch")
    try:
        c: Client = MongoClient(stack[1].uri)
        assert c.tmpdb.c.count_documents({}) == 1  # plain connections now land on the branch
        c.close()
    finally:
        argon(admin, "switchBranch", name="main")
    assert admin.tmpdb.c.count_documents({}) == 0
    argon(admin, "deleteBranch", name="temp-branch")
    with pytest.raises(OperationFailure):
        admin["tmpdb@temp-branch"].c.find_one()


def test_wal_records_every_write_with_images(stack: tuple[Process, Process], admin: Client) -> None:
    up, _ = stack
    admin.waldb.c.insert_one({"_id": 1, "v": 1})
    admin.waldb.c.update_one({"_id": 1}, {"$set": {"v": 2}})
    admin.waldb.c.delete_one({"_id": 1})
    direct: Client = MongoClient(up.uri)
    entries: list[dict[str, Any]] = list(
        direct["__argon"].wal.find({"ns": "waldb.c"}).sort("_id", 1)
    )
    direct.close()
    assert [e["op"] for e in entries] == ["i", "u", "d"]
    images = [(wal.image(e, "pre"), wal.image(e, "post")) for e in entries]
    assert images[0] == (None, {"_id": 1, "v": 1})
    assert images[1] == ({"_id": 1, "v": 1}, {"_id": 1, "v": 2})
    assert images[2] == ({"_id": 1, "v": 2}, None)
    assert entries[0]["_id"] < entries[1]["_id"] < entries[2]["_id"]


def _lsn(c: Client) -> int:
    return int(argon(c, "status")["lsn"])


def test_time_travel_reads_past_states_read_only(admin: Client) -> None:
    import datetime as dt
    import time

    coll = admin.tt.c
    coll.insert_many([{"_id": i, "v": 0} for i in range(5)])
    before = _lsn(admin)
    time.sleep(1.1)
    moment = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    time.sleep(1.1)
    coll.update_one({"_id": 1}, {"$set": {"v": 1}})
    coll.delete_one({"_id": 2})
    coll.insert_one({"_id": 9, "v": 9})
    now_docs = list(coll.find().sort("_id", 1))
    for address in (f"tt@main@lsn-{before}", f"tt@main@{moment}"):
        past = admin[address].c
        assert list(past.find().sort("_id", 1)) == [{"_id": i, "v": 0} for i in range(5)]
        assert past.count_documents({"v": 0}) == 5
        with pytest.raises(OperationFailure) as info:
            past.insert_one({"_id": 50})
        assert "read-only" in str(info.value)
    assert list(coll.find().sort("_id", 1)) == now_docs  # the present is untouched
    # a writable branch from the same point
    argon(admin, "createBranch", name="from-the-past", lsn=before)
    fork = admin["tt@from-the-past"].c
    assert fork.count_documents({}) == 5
    fork.insert_one({"_id": 9, "v": -9})  # 9 did not exist then
    assert admin.tt.c.find_one({"_id": 9})["v"] == 9  # type: ignore[index]
    info = argon(admin, "timeTravelInfo", name="main")["branches"][0]
    assert info["earliest_lsn"] < before <= info["latest_lsn"]


def test_time_travel_on_a_branch(admin: Client) -> None:
    admin.ttb.c.insert_many([{"_id": i} for i in range(3)])
    argon(admin, "createBranch", name="tt-branch")
    coll = admin["ttb@tt-branch"].c
    coll.update_one({"_id": 0}, {"$set": {"x": 1}})
    mark = _lsn(admin)
    coll.update_one({"_id": 0}, {"$set": {"x": 2}})
    coll.delete_one({"_id": 1})
    past = admin[f"ttb@tt-branch@lsn-{mark}"].c
    assert list(past.find().sort("_id", 1)) == [{"_id": 0, "x": 1}, {"_id": 1}, {"_id": 2}]
    with pytest.raises(OperationFailure) as info:
        admin["ttb@tt-branch@lsn-1"].c.find_one()  # before the branch existed
    assert "earliest reachable" in str(info.value)
    argon(admin, "deleteBranch", name="tt-branch")  # its snapshots go with it


def test_point_reads_by_id_ask_the_layer_that_holds_the_id(admin: Client) -> None:
    admin.pointdb.items.insert_many([{"_id": i, "v": "main"} for i in range(4)])
    argon(admin, "createBranch", name="point")
    argon(admin, "createBranch", name="point/child", **{"from": "point"})
    b, child = admin["pointdb@point"].items, admin["pointdb@point~child"].items
    b.update_one({"_id": 1}, {"$set": {"v": "branch"}})
    b.delete_one({"_id": 2})
    b.insert_one({"_id": 9, "v": "new"})
    child.update_one({"_id": 3}, {"$set": {"v": "child"}})
    got = {i: (b.find_one({"_id": i}) or {}).get("v") for i in (0, 1, 2, 3, 9, 42)}
    assert got == {0: "main", 1: "branch", 2: None, 3: "main", 9: "new", 42: None}
    got = {i: (child.find_one({"_id": i}) or {}).get("v") for i in (0, 1, 2, 3, 9)}
    assert got == {0: "main", 1: "main", 2: "main", 3: "child", 9: None}


def test_collection_created_on_main_later_stays_off_the_branch(admin: Client) -> None:
    argon(admin, "createBranch", name="before-coll")
    admin.latecomer.created.insert_one({"_id": 1})
    admin.latecomer.command({"create": "explicit"})
    admin.latecomer.indexed.create_index("a")
    branch = admin["latecomer@before-coll"]
    assert branch.list_collection_names() == []
    assert admin.latecomer.list_collection_names() == ["created", "explicit", "indexed"]
    with pytest.raises(OperationFailure) as err:
        branch.command({"listIndexes": "indexed"})
    assert err.value.code == 26
    # The branch can create the collection itself, and it starts empty.
    branch.created.insert_one({"_id": 2})
    assert list(branch.created.find()) == [{"_id": 2}]
    assert branch.list_collection_names() == ["created"]
    # Never having had a collection is not dropping it: the branch merges.
    argon(admin, "createBranch", name="untouched", **{"from": "main"})
    admin.latecomer.more.insert_one({"_id": 3})
    merged = argon(admin, "merge", source="untouched", into="main")
    assert merged["ok"] == 1.0
    assert admin.latecomer.more.count_documents({}) == 1


def test_multi_writes_beyond_one_transaction_run_in_parts(admin: Client) -> None:
    many = admin.bulk.items
    many.insert_many([{"_id": i, "v": 0} for i in range(1200)])
    argon(admin, "createBranch", name="bulk-child")
    child = admin["bulk@bulk-child"].items
    res = many.update_many({"_id": {"$lt": 1150}}, {"$inc": {"v": 1}})
    assert (res.matched_count, res.modified_count) == (1150, 1150)
    assert many.count_documents({"v": 1}) == 1150
    assert child.count_documents({"v": 0}) == 1200  # every part froze into the child
    on_child = child.update_many({}, {"$set": {"w": 1}})
    assert on_child.modified_count == 1200 and many.count_documents({"w": 1}) == 0
    gone = child.delete_many({"_id": {"$gte": 50}})
    assert gone.deleted_count == 1150 and child.count_documents({}) == 50
    assert many.count_documents({}) == 1200
    log = admin.admin.command({"argon": "log", "branch": "main", "limit": 5000})["entries"]
    assert sum(1 for e in log if e["ns"] == "bulk.items" and e["op"] == "update") == 1150


def test_replies_argon_builds_carry_the_cluster_and_operation_time(admin: Client) -> None:
    """Causally consistent sessions read after the operation time of what they wrote:
    a write Argon runs itself (main's through the WAL, a branch's) must report it."""
    argon(admin, "createBranch", name="clock-b")
    for db in ("clock", "clock@clock-b"):
        with admin.start_session(causal_consistency=True) as s:
            admin[db].items.insert_one({"_id": 1}, session=s)
            assert s.operation_time is not None and s.cluster_time is not None
            first = s.operation_time
            admin[db].items.update_one({"_id": 1}, {"$set": {"x": 1}}, session=s)
            assert s.operation_time >= first
            assert admin[db].items.find_one({"_id": 1}, session=s) == {"_id": 1, "x": 1}


def _events_until(stream: Any, last_id: str) -> list[dict[str, Any]]:
    """The stream's events up to the insert of ``last_id`` (bounded tries)."""
    events: list[dict[str, Any]] = []
    for _ in range(200):  # each try waits at most the stream's max_await_time_ms
        event = stream.try_next()
        if event is None:
            continue
        events.append(event)
        if event.get("documentKey") == {"_id": last_id}:
            return events
    raise AssertionError(f"no insert of {last_id!r} among {events}")


def test_database_and_cluster_change_streams_on_main_hide_argons_data(admin: Client) -> None:
    argon(admin, "createBranch", name="watch-b")
    with (
        admin.watchdb.watch(max_await_time_ms=100) as on_db,
        admin.watch(max_await_time_ms=100) as on_cluster,
    ):
        admin["watchdb@watch-b"].items.insert_one({"_id": "on-branch"})  # overlay, WAL
        admin.watchdb.items.insert_one({"_id": "on-main"})  # WAL, frozen into the child
        for stream in (on_db, on_cluster):
            events = _events_until(stream, "on-main")
            spaces = [(e["ns"]["db"], e["ns"].get("coll", "")) for e in events]
            assert all(db != "__argon" and not coll.startswith("__argon.") for db, coll in spaces)
            assert {"_id": "on-branch"} not in [e.get("documentKey") for e in events]


def test_users_and_roles_are_the_servers_on_every_branch(admin: Client) -> None:
    argon(admin, "createBranch", name="users-b")
    on_branch = admin["usersdb@users-b"]
    on_branch.command("createUser", "reader", pwd="secret-pw", roles=["read"])
    listed = on_branch.command("usersInfo", "reader")["users"]
    assert [u["user"] for u in listed] == ["reader"]
    assert [u["user"] for u in admin.usersdb.command("usersInfo", "reader")["users"]] == ["reader"]
    on_branch.command("dropUser", "reader")
    assert admin.usersdb.command("usersInfo", "reader")["users"] == []


def test_server_durability_commands_are_the_servers_on_every_branch(admin: Client) -> None:
    argon(admin, "createBranch", name="fsync-b")
    assert admin["admin@fsync-b"].command("fsync")["ok"] == 1


def test_validate_on_a_branch_checks_every_layer(admin: Client) -> None:
    admin.valdb.items.insert_many([{"_id": 1}, {"_id": 2}])
    argon(admin, "createBranch", name="val-b")
    branch = admin["valdb@val-b"]
    branch.items.update_one({"_id": 1}, {"$set": {"x": 1}})  # an overlay beside main's
    branch.fresh.insert_one({"_id": 1})  # only the branch has it
    for coll in ("items", "fresh"):
        reply = branch.validate_collection(coll, full=True)
        assert reply["valid"] is True and reply["ns"] == f"valdb.{coll}"
    with pytest.raises(OperationFailure) as info:
        branch.validate_collection("nothing")
    assert info.value.code == 26
    with pytest.raises(OperationFailure):
        admin.valdb.validate_collection("fresh")  # main has no such collection


def test_list_reports_every_branch_as_get_does(
    stack: tuple[Process, Process], admin: Client
) -> None:
    """listBranches describes all branches with a few queries, reading the WAL
    only for branches with overlays; each entry must still equal getBranch's."""
    admin.lsdb.c.insert_one({"_id": 1})
    for name in ("ls-wrote", "ls-frozen", "ls-idle"):
        argon(admin, "createBranch", name=name)
    admin["lsdb@ls-wrote"].c.insert_one({"_id": 2})
    admin.lsdb.c.update_one({"_id": 1}, {"$set": {"v": 1}})  # freezes into the children
    argon(admin, "createTag", name="ls-tag", branch="ls-wrote")
    listed = {b["name"]: b for b in argon(admin, "listBranches")["branches"]}
    for name in ("main", "ls-wrote", "ls-frozen", "ls-idle"):
        got = argon(admin, "getBranch", name=name)["branch"]
        got.pop("stats")
        assert listed[name] == got, name
    assert listed["ls-wrote"]["head_lsn"] > listed["ls-wrote"]["base_lsn"]
    assert listed["ls-wrote"]["tags"] == ["ls-tag"]
    assert listed["ls-frozen"]["head_lsn"] == listed["ls-frozen"]["base_lsn"]
    assert listed["main"]["head_lsn"] >= listed["ls-wrote"]["head_lsn"]
