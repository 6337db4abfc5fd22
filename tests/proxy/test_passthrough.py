"""The main branch through Argon behaves like the upstream itself, for pymongo."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from bson import ObjectId
from pymongo import InsertOne, MongoClient, UpdateOne
from pymongo.errors import BulkWriteError, OperationFailure

from ..processes import Process

Client = MongoClient[dict[str, object]]


def _metrics(proxy: Process) -> str:
    url = f"http://127.0.0.1:{proxy.extra['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def test_hello_is_argons_own_router_answer(proxy: Process) -> None:
    client: Client = MongoClient(f"mongodb://127.0.0.1:{proxy.port}")  # discovery on
    try:
        reply = client.admin.command("hello")
        assert reply["isWritablePrimary"] is True and reply["msg"] == "isdbgrid"
        assert "setName" not in reply and "hosts" not in reply
        assert "topologyVersion" not in reply  # no awaitable hello to stream
        assert reply["maxWireVersion"] <= 25
        assert reply["argon"]["version"]
        legacy = client.admin.command("isMaster")
        assert legacy["ismaster"] is True and legacy["msg"] == "isdbgrid"
        # A router: drivers stay on its one address and use retryable writes.
        assert client.topology_description.topology_type_name == "Sharded"
        assert [
            s.server_type_name for s in client.topology_description.server_descriptions().values()
        ] == ["Mongos"]
        assert client.options.retry_writes
    finally:
        client.close()


def test_crud_round_trip(client: Client, direct: Client) -> None:
    coll = client.crud_db.people
    coll.drop()
    ids = coll.insert_many([{"name": n, "age": a} for n, a in [("ann", 31), ("bob", 42)]])
    assert len(ids.inserted_ids) == 2
    assert coll.find_one({"name": "ann"})["age"] == 31  # type: ignore[index]
    assert coll.update_one({"name": "bob"}, {"$inc": {"age": 1}}).modified_count == 1
    assert coll.find_one_and_update({"name": "ann"}, {"$set": {"x": 1}})["name"] == "ann"  # type: ignore[index]
    assert coll.delete_one({"name": "ann"}).deleted_count == 1
    assert [d["age"] for d in coll.find({}, {"_id": 0})] == [43]
    # The data really is upstream: main is the real data.
    assert direct.crud_db.people.find_one({"name": "bob"})["age"] == 43  # type: ignore[index]


def test_ordered_bulk_write_stops_at_first_error(client: Client) -> None:
    coll = client.bulk_db.ordered
    coll.drop()
    oid = ObjectId()
    with pytest.raises(BulkWriteError) as info:
        coll.bulk_write([InsertOne({"_id": oid}), InsertOne({"_id": oid}), InsertOne({"x": 1})])
    details = info.value.details
    assert details["nInserted"] == 1
    assert details["writeErrors"][0]["code"] == 11000
    assert details["writeErrors"][0]["index"] == 1
    assert coll.count_documents({}) == 1


def test_unordered_bulk_write_reports_every_error(client: Client) -> None:
    coll = client.bulk_db.unordered
    coll.drop()
    ops: list[InsertOne[dict[str, Any]] | UpdateOne] = [
        InsertOne({"_id": i % 3}) for i in range(6)
    ] + [UpdateOne({"_id": 0}, {"$set": {"y": 1}})]
    with pytest.raises(BulkWriteError) as info:
        coll.bulk_write(ops, ordered=False)
    details = info.value.details
    assert details["nInserted"] == 3
    assert sorted(e["index"] for e in details["writeErrors"]) == [3, 4, 5]
    assert details["nModified"] == 1


def test_aggregation(client: Client) -> None:
    coll = client.agg_db.sales
    coll.drop()
    coll.insert_many([{"region": r, "amount": a} for r, a in [("n", 5), ("s", 7), ("n", 10)]])
    result = list(
        coll.aggregate(
            [
                {"$group": {"_id": "$region", "total": {"$sum": "$amount"}}},
                {"$sort": {"_id": 1}},
            ]
        )
    )
    assert result == [{"_id": "n", "total": 15}, {"_id": "s", "total": 7}]


def test_cursor_over_many_small_batches_and_kill(client: Client) -> None:
    coll = client.cursor_db.items
    coll.drop()
    coll.insert_many([{"i": i} for i in range(1000)])
    seen = [d["i"] for d in coll.find({}, sort=[("i", 1)], batch_size=7)]
    assert seen == list(range(1000))
    cursor = coll.find({}, batch_size=5)
    next(cursor)
    cursor_id = cursor.cursor_id
    assert cursor_id
    cursor.close()  # killCursors through the proxy
    with pytest.raises(OperationFailure) as info:
        client.cursor_db.command("getMore", cursor_id, collection="items")
    assert info.value.code == 43  # CursorNotFound


@pytest.mark.parametrize("compressor", ["zstd", "zlib", "snappy"])
def test_compression_is_negotiated_and_used(proxy: Process, compressor: str) -> None:
    before = _metrics(proxy)
    c: Client = MongoClient(proxy.uri, compressors=compressor)
    try:
        coll = c.comp_db[compressor]
        coll.drop()
        coll.insert_many([{"i": i, "pad": "x" * 500} for i in range(200)])
        assert coll.count_documents({}) == 200
        assert len(list(coll.find())) == 200
    finally:
        c.close()
    after = _metrics(proxy)
    line = f'argon_compressed_messages_total{{compressor="{compressor}"}}'
    count_after = _metric_value(after, line)
    assert count_after > _metric_value(before, line) + 3


def _metric_value(text: str, prefix: str) -> float:
    for row in text.splitlines():
        if row.startswith(prefix + " "):
            return float(row.split()[-1])
    return 0.0


def test_session_and_transaction(client: Client) -> None:
    coll = client.txn_db.accounts
    coll.drop()
    coll.insert_many([{"_id": "a", "balance": 100}, {"_id": "b", "balance": 0}])
    with client.start_session() as session:
        with session.start_transaction():
            coll.update_one({"_id": "a"}, {"$inc": {"balance": -30}}, session=session)
            coll.update_one({"_id": "b"}, {"$inc": {"balance": 30}}, session=session)
        assert session.operation_time is not None
    assert {d["_id"]: d["balance"] for d in coll.find()} == {"a": 70, "b": 30}
    with client.start_session() as session:
        session.start_transaction()
        coll.update_one({"_id": "a"}, {"$set": {"balance": -1}}, session=session)
        session.abort_transaction()
    assert coll.find_one({"_id": "a"})["balance"] == 70  # type: ignore[index]


def test_change_stream(client: Client) -> None:
    coll = client.cs_db.events
    coll.drop()
    coll.insert_one({"warm": True})
    with coll.watch(max_await_time_ms=500) as stream:
        coll.insert_one({"n": 1})
        change: dict[str, Any] | None = stream.try_next()
        for _ in range(20):
            if change is not None:
                break
            change = stream.try_next()
    assert change is not None
    assert change["operationType"] == "insert"
    assert change["fullDocument"]["n"] == 1


def test_fifteen_megabyte_document(client: Client) -> None:
    coll = client.big_db.blobs
    coll.drop()
    blob = "z" * (15 * 1024 * 1024)
    coll.insert_one({"_id": 1, "blob": blob})
    assert coll.find_one({"_id": 1})["blob"] == blob  # type: ignore[index]


def test_explain(client: Client) -> None:
    coll = client.explain_db.things
    coll.drop()
    coll.insert_one({"a": 1})
    plan = coll.find({"a": 1}).explain()
    assert "queryPlanner" in plan or "stages" in plan


def test_upstream_errors_reach_the_client_verbatim(client: Client, direct: Client) -> None:
    with pytest.raises(OperationFailure) as via_proxy:
        client.err_db.command("noSuchCommand")
    with pytest.raises(OperationFailure) as via_direct:
        direct.err_db.command("noSuchCommand")
    assert via_proxy.value.code == via_direct.value.code
    assert via_proxy.value.details["errmsg"] == via_direct.value.details["errmsg"]  # type: ignore[index]


def test_two_hundred_concurrent_clients(proxy: Process) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(200)

    def worker(n: int) -> None:
        try:
            c: Client = MongoClient(proxy.uri, maxPoolSize=1, serverSelectionTimeoutMS=30000)
            try:
                barrier.wait(timeout=60)
                coll = c.many_db.hits
                coll.insert_one({"worker": n})
                assert coll.find_one({"worker": n}) is not None
            finally:
                c.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    c: Client = MongoClient(proxy.uri)
    try:
        assert c.many_db.hits.count_documents({}) >= 200
    finally:
        c.many_db.hits.drop()
        c.close()


def test_exhaust_cursor(client: Client) -> None:
    from pymongo import CursorType

    coll = client.exhaust_db.items
    coll.drop()
    coll.insert_many([{"i": i} for i in range(500)])
    got = [d["i"] for d in coll.find({}, cursor_type=CursorType.EXHAUST, batch_size=20).sort("i")]
    assert got == list(range(500))
    assert client.admin.command("ping")["ok"] == 1.0  # the connection is usable afterwards


def test_retryable_write_is_applied_once(client: Client) -> None:
    from bson import Int64

    coll = client.retry_db.items
    coll.drop()
    with client.start_session() as session:
        command = {
            "insert": "items",
            "documents": [{"_id": 1}],
            "lsid": session.session_id,
            "txnNumber": Int64(1),
        }
        first = client.retry_db.command(command)
        again = client.retry_db.command(command)  # a driver's retry after a network error
    assert first["n"] == again["n"] == 1
    assert coll.count_documents({}) == 1


@pytest.mark.parametrize("db", ["retry_inc", "retry_inc@retry-branch"])
def test_retried_update_is_not_applied_twice(client: Client, db: str) -> None:
    from bson import Int64

    client.retry_inc.items.drop()
    client.retry_inc.items.insert_one({"_id": 1, "n": 0})
    if "@" in db:
        client.admin.command({"argon": "createBranch", "name": "retry-branch"})
    try:
        with client.start_session() as session:
            command = {
                "update": "items",
                "updates": [{"q": {"_id": 1}, "u": {"$inc": {"n": 1}}}],
                "lsid": session.session_id,
                "txnNumber": Int64(7),
            }
            first = client[db].command(command)
            again = client[db].command(command)  # its earlier attempt committed
        assert first["nModified"] == again["nModified"] == 1
        assert client[db].items.find_one({"_id": 1}) == {"_id": 1, "n": 1}
    finally:
        if "@" in db:
            client.admin.command({"argon": "deleteBranch", "name": "retry-branch"})


def test_advertised_argon_is_a_one_member_replica_set(
    proxy_factory: Callable[..., Process],
) -> None:
    """With ``--advertise``, drivers see the primary of a one-member replica set at
    that address (Argon's own), discover it from another name of the same host,
    and use sessions, transactions and change streams through it."""
    proxy = proxy_factory("--advertise", "127.0.0.1")
    member = f"127.0.0.1:{proxy.port}"
    client: Client = MongoClient(f"mongodb://localhost:{proxy.port}/?replicaSet=argon")
    try:
        reply = client.admin.command("hello")
        assert reply["setName"] == "argon" and reply["hosts"] == [member]
        assert reply["primary"] == reply["me"] == member and "msg" not in reply
        assert client.topology_description.topology_type_name == "ReplicaSetWithPrimary"
        assert list(client.topology_description.server_descriptions()) == [
            ("127.0.0.1", proxy.port)
        ]
        coll = client.rs_db.items
        coll.drop()
        with coll.watch() as stream:
            with client.start_session() as session, session.start_transaction():
                coll.insert_one({"_id": 1}, session=session)
                coll.insert_one({"_id": 2}, session=session)
            seen = [stream.next()["documentKey"] for _ in range(2)]
        assert seen == [{"_id": 1}, {"_id": 2}] and coll.count_documents({}) == 2
    finally:
        client.close()
