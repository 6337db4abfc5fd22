"""Nothing reaches Argon's own data or gets around the WAL, from any branch, main included.

Most holes were open while only ``main`` exists, where the proxy forwards
commands byte for byte: so is this module's private stack, and tests that
need a branch delete it again before they end.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

import bson
import pytest
from pymongo import DeleteMany, DeleteOne, InsertOne, MongoClient, ReplaceOne, UpdateMany, UpdateOne
from pymongo.errors import OperationFailure

import wire
from wire import DocumentSequence, OpMsg

from ..processes import Process
from ..rawwire import recv_exact
from ..stacks import Client, argon, own_stack


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Process, Process]]:
    with own_stack() as pair:
        yield pair


@pytest.fixture(scope="module")
def client(stack: tuple[Process, Process]) -> Iterator[Client]:
    c: Client = MongoClient(stack[1].uri, serverSelectionTimeoutMS=10000)
    yield c
    c.close()


@pytest.fixture(scope="module")
def direct(stack: tuple[Process, Process]) -> Iterator[Client]:
    c: Client = MongoClient(stack[0].uri, serverSelectionTimeoutMS=10000)
    yield c
    c.close()


@pytest.fixture
def shop(client: Client) -> Iterator[str]:
    """A fresh ``ns_shop.items`` of three documents on main, with only main existing."""
    client.ns_shop.items.drop()
    client.ns_shop.items.insert_many([{"_id": i, "x": i} for i in range(3)])
    yield "ns_shop"


@pytest.fixture
def overlay(client: Client, direct: Client, shop: str) -> Iterator[str]:
    """The overlay collection of a branch that changed ``items``; the branch is deleted after."""
    argon(client, "createBranch", name="private")
    try:
        client[f"{shop}@private"].items.insert_one({"_id": "secret", "x": 42})
        listed = direct[shop].list_collection_names()
        # The branch's overlay; earlier drops of main's ``items`` left archives beside it.
        names = [n for n in listed if n.endswith(".items") and not n.startswith("__argon.main")]
        assert len(names) == 1 and names[0].startswith("__argon.")
        yield names[0]
    finally:
        argon(client, "deleteBranch", name="private")


def _wal_count(direct: Client) -> int:
    return direct["__argon"].wal.count_documents({})


def _code(info: pytest.ExceptionInfo[OperationFailure]) -> int:
    return int(info.value.code or 0)


# -- renameCollection ----------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("__argon.wal", "ns_shop.stolen"),
        ("__argon.branches", "ns_shop.stolen"),
        ("ns_shop.items", "__argon.items"),
        ("ns_shop.items", "ns_shop.__argon.b0000000000.items"),
        ("ns_shop.items", "ns_shop@feature.items"),
    ],
)
def test_rename_cannot_touch_internal_namespaces(
    client: Client, direct: Client, shop: str, source: str, target: str
) -> None:
    wal = _wal_count(direct)
    with pytest.raises(OperationFailure) as info:
        client.admin.command({"renameCollection": source, "to": target})
    assert _code(info) in (13, 73)
    assert source in str(info.value) or target in str(info.value)
    assert _wal_count(direct) == wal
    assert direct[shop].items.count_documents({}) == 3
    assert "stolen" not in direct[shop].list_collection_names()


def test_rename_of_user_collections_still_works_on_main(client: Client, shop: str) -> None:
    client[shop].renamed.drop()
    client.admin.command({"renameCollection": f"{shop}.items", "to": f"{shop}.renamed"})
    assert client[shop].renamed.count_documents({}) == 3


# -- commands that would write without WAL entries --------------------------------


def _wal_entries(direct: Client, ns: str) -> list[dict[str, Any]]:
    return list(direct["__argon"].wal.find({"ns": ns}).sort("_id", 1))


def test_client_bulk_write_goes_through_the_wal(client: Client, direct: Client, shop: str) -> None:
    client[shop].other.drop()
    before = _wal_count(direct)
    reply = client.admin.command(
        {
            "bulkWrite": 1,
            "ops": [
                {"insert": 0, "document": {"_id": 50}},
                {
                    "update": 1,
                    "filter": {"_id": "o"},
                    "updateMods": {"$set": {"v": 1}},
                    "upsert": True,
                },
                {"update": 0, "filter": {"_id": 1}, "updateMods": {"$set": {"x": 10}}},
                {"delete": 0, "filter": {"_id": 2}},
                {"insert": 0, "document": {"_id": 50}},  # duplicate: stops the ordered bulk
                {"insert": 0, "document": {"_id": 51}},
            ],
            "nsInfo": [{"ns": f"{shop}.items"}, {"ns": f"{shop}.other"}],
        }
    )
    assert (reply["nInserted"], reply["nUpserted"], reply["nMatched"], reply["nDeleted"]) == (
        1,
        1,
        1,
        1,
    )
    assert reply["nErrors"] == 1
    results = reply["cursor"]["firstBatch"]
    assert [r["ok"] for r in results] == [1.0, 1.0, 1.0, 1.0, 0.0]
    assert results[1]["upserted"] == {"_id": "o"} and results[4]["code"] == 11000
    assert direct[shop].items.find_one({"_id": 51}) is None
    assert sorted(d["_id"] for d in direct[shop].items.find()) == [0, 1, 50]
    assert direct[shop].other.find_one({"_id": "o"}) == {"_id": "o", "v": 1}
    # Every change has its WAL entry, with the data.
    assert _wal_count(direct) == before + 4
    assert [e["op"] for e in _wal_entries(direct, f"{shop}.items")[-3:]] == ["i", "u", "d"]
    with pytest.raises(OperationFailure) as internal:
        client.admin.command(
            {
                "bulkWrite": 1,
                "ops": [{"delete": 0, "filter": {}, "multi": True}],
                "nsInfo": [{"ns": "__argon.wal"}],
            }
        )
    assert _code(internal) == 13
    assert _wal_count(direct) == before + 4


def test_client_bulk_write_on_a_branch_stays_on_the_branch(
    stack: tuple[Process, Process], client: Client, shop: str
) -> None:
    ops = [{"insert": 0, "document": {"_id": 60}}, {"delete": 0, "filter": {"_id": 0}}]
    argon(client, "createBranch", name="bulk")
    on_branch: Client = MongoClient(stack[1].uri, appname="argon:bulk")
    try:
        with pytest.raises(OperationFailure) as info:  # a branch address only in $db
            client.admin.command(
                {"bulkWrite": 1, "ops": ops, "nsInfo": [{"ns": f"{shop}@bulk.items"}]}
            )
        assert _code(info) == 73
        reply = on_branch.admin.command(
            {"bulkWrite": 1, "ops": ops, "nsInfo": [{"ns": f"{shop}.items"}]}
        )
        assert (reply["nInserted"], reply["nDeleted"]) == (1, 1)
        assert sorted(d["_id"] for d in client[f"{shop}@bulk"].items.find()) == [1, 2, 60]
        assert sorted(d["_id"] for d in client[shop].items.find()) == [0, 1, 2]
    finally:
        on_branch.close()
        argon(client, "deleteBranch", name="bulk")


def test_bulk_write_as_document_sequences_goes_through_the_wal(
    stack: tuple[Process, Process], direct: Client, shop: str
) -> None:
    before = _wal_count(direct)
    body = bson.encode({"bulkWrite": 1, "$db": "admin"})
    seqs = (
        DocumentSequence("ops", (bson.encode({"insert": 0, "document": {"_id": 51}}),)),
        DocumentSequence("nsInfo", (bson.encode({"ns": f"{shop}.items"}),)),
    )
    reply = _exchange(stack[1], wire.encode_op_msg(OpMsg(0, body, seqs), 7))
    assert reply["ok"] == 1.0 and reply["nInserted"] == 1
    assert _wal_count(direct) == before + 1


def test_bulk_write_options_argon_cannot_honour_are_refused(client: Client, shop: str) -> None:
    with pytest.raises(OperationFailure) as info:
        client.admin.command(
            {
                "bulkWrite": 1,
                "ops": [{"update": 0, "filter": {}, "updateMods": {"$set": {"y": 1}}}],
                "nsInfo": [{"ns": f"{shop}.items", "collectionUUID": bson.Binary(bytes(16), 4)}],
            }
        )
    assert _code(info) == 115 and "nsInfo" in str(info.value)
    assert client[shop].items.count_documents({"y": 1}) == 0


def test_map_reduce_into_a_collection_is_refused_inline_is_not(client: Client, shop: str) -> None:
    spec: dict[str, Any] = {
        "mapReduce": "items",
        "map": "function() { emit(this.x, 1); }",
        "reduce": "function(k, v) { return Array.sum(v); }",
    }
    with pytest.raises(OperationFailure) as info:
        client[shop].command({**spec, "out": "mr_out"})
    assert _code(info) == 115 and "mapReduce" in str(info.value)
    with pytest.raises(OperationFailure) as other_db:
        client[shop].command({**spec, "out": {"replace": "wal", "db": "__argon"}})
    assert _code(other_db) == 13
    assert client[shop].command({**spec, "out": {"inline": 1}})["ok"] == 1.0


@pytest.mark.parametrize(
    "command",
    [
        {"applyOps": [{"op": "i", "ns": "ns_shop.items", "o": {"_id": 60}}]},
        {"convertToCapped": "items", "size": 4096},
        {"cloneCollectionAsCapped": "items", "toCollection": "capped", "size": 4096},
        {"emptycapped": "items"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_other_wal_bypasses_are_refused_on_main(
    client: Client, shop: str, command: dict[str, Any]
) -> None:
    db = "admin" if "applyOps" in command else shop
    with pytest.raises(OperationFailure) as info:
        client[db].command(command)
    assert _code(info) == 115 and next(iter(command)) in str(info.value)
    assert client[shop].items.count_documents({}) == 3


# -- other branches' overlays are invisible from main -------------------------------


def test_find_and_count_cannot_read_an_overlay_from_main(
    client: Client, shop: str, overlay: str
) -> None:
    for read in (
        lambda: list(client[shop][overlay].find()),
        lambda: client[shop][overlay].count_documents({}),
        lambda: client[shop].command({"count": overlay}),
        lambda: client[shop][overlay].distinct("x"),
        lambda: list(client[shop][overlay].list_indexes()),
        lambda: client[shop].command({"explain": {"find": overlay}}),
        lambda: client[shop].command({"dataSize": f"{shop}.{overlay}"}),
    ):
        with pytest.raises(OperationFailure) as info:
            read()
        assert _code(info) == 73 and overlay in str(info.value)


def _stages(overlay: str) -> list[list[dict[str, Any]]]:
    return [
        [{"$lookup": {"from": overlay, "pipeline": [], "as": "o"}}],
        [{"$lookup": {"from": overlay, "localField": "x", "foreignField": "x", "as": "o"}}],
        [{"$unionWith": overlay}],
        [{"$unionWith": {"coll": overlay, "pipeline": []}}],
        [
            {
                "$graphLookup": {
                    "from": overlay,
                    "startWith": "$x",
                    "connectFromField": "x",
                    "connectToField": "x",
                    "as": "o",
                }
            }
        ],
        [{"$facet": {"f": [{"$unionWith": {"coll": overlay}}]}}],
        [
            {
                "$lookup": {
                    "from": "items",
                    "pipeline": [{"$unionWith": overlay}],
                    "as": "o",
                }
            }
        ],
        [{"$unionWith": {"coll": "items", "pipeline": [{"$unionWith": overlay}]}}],
    ]


def test_aggregate_stages_cannot_read_an_overlay_from_main(
    client: Client, shop: str, overlay: str
) -> None:
    for pipeline in _stages(overlay):
        with pytest.raises(OperationFailure) as info:
            list(client[shop].items.aggregate(pipeline))
        assert _code(info) == 73 and overlay in str(info.value), pipeline


def test_a_view_cannot_be_defined_on_an_overlay(client: Client, shop: str, overlay: str) -> None:
    with pytest.raises(OperationFailure) as info:
        client[shop].command({"create": "peek", "viewOn": overlay, "pipeline": []})
    assert _code(info) == 73
    with pytest.raises(OperationFailure) as lookup:
        client[shop].command(
            {
                "create": "peek2",
                "viewOn": "items",
                "pipeline": [{"$lookup": {"from": overlay, "pipeline": [], "as": "o"}}],
            }
        )
    assert _code(lookup) == 73


def test_internal_data_is_invisible_from_a_branch_too(
    client: Client, shop: str, overlay: str
) -> None:
    on_branch = client[f"{shop}@private"]
    with pytest.raises(OperationFailure) as info:
        list(on_branch.items.aggregate([{"$unionWith": overlay}]))
    assert _code(info) == 73
    with pytest.raises(OperationFailure) as wal:
        list(
            on_branch.items.aggregate(
                [{"$lookup": {"from": {"db": "__argon", "coll": "wal"}, "pipeline": [], "as": "w"}}]
            )
        )
    assert _code(wal) == 13


def test_merge_and_out_cannot_write_internal_data(
    client: Client, direct: Client, shop: str
) -> None:
    wal = _wal_count(direct)
    for last in (
        {"$merge": {"into": {"db": "__argon", "coll": "wal"}}},
        {"$out": {"db": "__argon", "coll": "wal"}},
        {"$out": "__argon.b0000000000.items"},
    ):
        with pytest.raises(OperationFailure) as info:
            list(client[shop].items.aggregate([last]))
        assert _code(info) in (13, 73)
    assert _wal_count(direct) == wal


# -- malformed requests -----------------------------------------------------------


def _raw_document(items: list[tuple[str, Any]]) -> bytes:
    body = b"".join(bson.encode({k: v})[4:-1] for k, v in items)
    return struct.pack("<i", len(body) + 5) + body + b"\x00"


def _exchange(proxy: Process, message: bytes) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as sock:
        sock.sendall(message)
        header = recv_exact(sock, 16)
        length = struct.unpack("<i", header[:4])[0]
        reply = wire.decode_op_msg(recv_exact(sock, length - 16))
        doc: dict[str, Any] = bson.decode(reply.body)
        # The connection stays usable after the refusal.
        sock.sendall(wire.encode_op_msg(OpMsg(0, bson.encode({"ping": 1, "$db": "admin"})), 2))
        header = recv_exact(sock, 16)
        length = struct.unpack("<i", header[:4])[0]
        assert bson.decode(wire.decode_op_msg(recv_exact(sock, length - 16)).body)["ok"] == 1.0
        return doc


@pytest.mark.parametrize(
    "items",
    [
        [("find", "wal"), ("$db", "ns_shop"), ("$db", "__argon")],
        [("find", "wal"), ("filter", {}), ("$db", "__argon"), ("$db", "ns_shop")],
        [("delete", "wal"), ("$db", "ns_shop"), ("deletes", []), ("$db", "__argon")],
        [("find", "items"), ("filter", {"x": 1}), ("filter", {}), ("$db", "ns_shop")],
    ],
    ids=["db-then-internal", "internal-then-db", "delete-wal", "repeated-filter"],
)
def test_duplicate_top_level_fields_are_refused(
    stack: tuple[Process, Process], direct: Client, items: list[tuple[str, Any]]
) -> None:
    wal = _wal_count(direct)
    reply = _exchange(stack[1], wire.encode_op_msg(OpMsg(0, _raw_document(items)), 5))
    assert reply["ok"] == 0.0 and reply["code"] == 40413, reply
    assert "duplicate" in str(reply["errmsg"])
    assert _wal_count(direct) == wal


def test_a_sequence_repeating_a_body_field_is_refused(
    stack: tuple[Process, Process], direct: Client
) -> None:
    body = bson.encode({"insert": "items", "documents": [{"_id": 70}], "$db": "ns_shop"})
    seq = DocumentSequence("documents", (bson.encode({"_id": 71}),))
    reply = _exchange(stack[1], wire.encode_op_msg(OpMsg(0, body, (seq,)), 6))
    assert reply["ok"] == 0.0 and reply["code"] == 40413
    assert direct.ns_shop.items.count_documents({"_id": {"$in": [70, 71]}}) == 0


# -- branch addresses and names -----------------------------------------------------


def test_an_empty_database_before_the_branch_is_refused(client: Client, direct: Client) -> None:
    argon(client, "createBranch", name="secret")
    try:
        with pytest.raises(OperationFailure) as info:
            client["@secret"].x.insert_one({"a": 1})
        assert _code(info) == 73
        assert "" not in direct.list_database_names()
    finally:
        argon(client, "deleteBranch", name="secret")


def test_an_empty_point_is_not_the_writable_branch(client: Client, shop: str) -> None:
    argon(client, "createBranch", name="secret")
    try:
        with pytest.raises(OperationFailure) as info:
            client[f"{shop}@secret@"].items.insert_one({"_id": "w"})
        assert _code(info) == 2 and "point" in str(info.value)
        assert client[f"{shop}@secret"].items.find_one({"_id": "w"}) is None
    finally:
        argon(client, "deleteBranch", name="secret")


@pytest.mark.parametrize(
    "name", ["__argon", "-rf", "--help", ".hidden", "_tmp", "a/-x", "a/.x", "a..b", "a.", ""]
)
def test_names_that_collide_or_look_like_options_are_refused(client: Client, name: str) -> None:
    with pytest.raises(OperationFailure) as info:
        argon(client, "createBranch", name=name)
    assert _code(info) == 2 and "invalid branch name" in str(info.value)


def test_usual_branch_names_stay_valid(client: Client) -> None:
    for name in ("customer-churn/alice", "model-v2-experiment", "etl.v2", "a_b", "2026/q4"):
        argon(client, "createBranch", name=name)
        argon(client, "deleteBranch", name=name)


@pytest.mark.parametrize("app", ["argon:", "argon:../x", "argon:-rf"])
def test_a_bad_branch_in_app_name_is_an_error_not_a_closed_connection(
    stack: tuple[Process, Process], app: str
) -> None:
    c: Client = MongoClient(stack[1].uri, appname=app, serverSelectionTimeoutMS=10000)
    try:
        attempt: Callable[[], object]
        for attempt in (lambda: c.ns_shop.items.find_one(), lambda: c.admin.command("ping")):
            with pytest.raises(OperationFailure) as info:
                attempt()
            # A name no branch may have is BadValue naming the appName; a name that
            # is only not allowed for new branches is simply not found.
            assert (_code(info), repr(app) in str(info.value)) in ((2, True), (2001, False))
            assert app[len("argon:") :] in str(info.value)
    finally:
        c.close()


def test_collection_change_streams_work_on_main(client: Client, shop: str) -> None:
    with client[shop].items.watch(max_await_time_ms=100) as stream:  # one collection: fine
        client[shop].items.insert_one({"_id": "seen"})
        event = None
        for _ in range(100):  # bounded: each try waits at most max_await_time_ms
            event = stream.try_next()
            if event is not None:
                break
        assert event is not None and event["documentKey"] == {"_id": "seen"}


def test_a_sequence_cannot_stand_in_for_db(stack: tuple[Process, Process], direct: Client) -> None:
    body = bson.encode({"insert": "items"})
    seqs = (
        DocumentSequence("documents", (bson.encode({"_id": 72}),)),
        DocumentSequence("$db", (bson.encode({"db": "ns_shop"}),)),
    )
    reply = _exchange(stack[1], wire.encode_op_msg(OpMsg(0, body, seqs), 8))
    assert reply["ok"] == 0.0 and reply["code"] == 73
    assert direct.ns_shop.items.count_documents({"_id": 72}) == 0
    assert all("{" not in name for name in direct.list_database_names())


@pytest.mark.parametrize("db", ["__ARGON", "__Argon", "__argon\x00", "ns_shop\x00x"])
def test_internal_database_spellings_are_refused(
    stack: tuple[Process, Process], direct: Client, db: str
) -> None:
    wal = _wal_count(direct)
    body = bson.encode({"delete": "wal", "deletes": [{"q": {}, "limit": 0}], "$db": db})
    reply = _exchange(stack[1], wire.encode_op_msg(OpMsg(0, body), 9))
    assert reply["ok"] == 0.0 and reply["code"] in (13, 73)
    body = bson.encode({"find": "wal", "$db": db})
    reply = _exchange(stack[1], wire.encode_op_msg(OpMsg(0, body), 10))
    assert reply["ok"] == 0.0 and reply["code"] in (13, 73)
    assert _wal_count(direct) == wal


def test_the_oplog_is_out_of_reach(client: Client, shop: str, overlay: str) -> None:
    for read in (
        lambda: list(client.local["oplog.rs"].find({"ns": f"{shop}.{overlay}"})),
        lambda: client.local["oplog.rs"].count_documents({}),
        lambda: list(
            client[shop].items.aggregate(
                [
                    {
                        "$lookup": {
                            "from": {"db": "local", "coll": "oplog.rs"},
                            "pipeline": [],
                            "as": "o",
                        }
                    }
                ]
            )
        ),
    ):
        with pytest.raises(OperationFailure) as info:
            read()
        assert _code(info) == 13 and "oplog" in str(info.value)


def test_a_branch_named_before_the_stricter_rule_stays_reachable(
    client: Client, direct: Client, shop: str
) -> None:
    argon(client, "createBranch", name="legacy-source")
    try:
        doc = direct["__argon"].branches.find_one({"_id": "legacy-source"})
        assert doc is not None
        direct["__argon"].branches.insert_one({**doc, "_id": "_legacy", "id": "b00legacy00"})
        assert client[f"{shop}@_legacy"].items.count_documents({}) == 3
        argon(client, "deleteBranch", name="_legacy")
    finally:
        argon(client, "deleteBranch", name="legacy-source")


def test_pymongo_client_bulk_write_matches_the_upstream(
    client: Client, direct: Client, shop: str
) -> None:
    def ops(db: str) -> list[Any]:
        items, other = f"{db}.items", f"{db}.other"
        return [
            InsertOne({"_id": 10, "x": 10}, namespace=items),
            UpdateMany({"x": {"$lt": 2}}, {"$inc": {"x": 100}}, namespace=items),
            ReplaceOne({"_id": "r"}, {"v": 1}, namespace=other, upsert=True),
            UpdateOne({"_id": 2}, {"$set": {"y": [1, 2]}}, namespace=items),
            DeleteOne({"_id": 10}, namespace=items),
            InsertOne({"_id": 11}, namespace=other),
            DeleteMany({"x": {"$gte": 100}}, namespace=items),
        ]

    direct_db = f"{shop}_direct"
    direct[direct_db].items.drop()
    direct[direct_db].other.drop()
    direct[direct_db].items.insert_many([{"_id": i, "x": i} for i in range(3)])
    client[shop].other.drop()
    wal = _wal_count(direct)
    through = client.bulk_write(ops(shop), verbose_results=True)
    plain = direct.bulk_write(ops(direct_db), verbose_results=True)
    for field in ("inserted_count", "matched_count", "modified_count", "upserted_count"):
        assert getattr(through, field) == getattr(plain, field), field
    assert through.deleted_count == plain.deleted_count
    for coll in ("items", "other"):
        assert list(client[shop][coll].find().sort("_id", 1)) == list(
            direct[direct_db][coll].find().sort("_id", 1)
        )
    assert _wal_count(direct) > wal
