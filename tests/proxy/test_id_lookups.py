"""A write on a branch finds its documents by ``_id`` on each layer's ``_id``
index, and still sees exactly what a plain copy would.

The ids the branch's overlay holds must hide the same documents of main's
collection; sent upstream as a ``$nin`` beside the ``_id`` condition, that
makes the test upstream scan the whole collection for every single-document
write (docs/design.md, "Costs"). The upstream's own profiler shows which
filters reached it.
"""

from __future__ import annotations

from typing import Any

from pymongo import MongoClient, ReturnDocument

from ..stacks import argon, own_clients

Client = MongoClient[dict[str, Any]]
DB = "lookups"


def _base_filters(direct: Client, run: Any) -> list[dict[str, Any]]:
    """The filters of the queries of main's ``items`` that ``run()`` caused: of
    each ``find``, and each ``$match`` stage of each ``aggregate``."""
    direct[DB].command("profile", 2)
    try:
        run()
    finally:
        direct[DB].command("profile", 0)
    found = []
    for entry in direct[DB]["system.profile"].find():
        cmd = entry.get("command") or {}
        if cmd.get("find") == "items":
            found.append(cmd.get("filter") or {})
        if cmd.get("aggregate") == "items":
            found += [stage["$match"] for stage in cmd.get("pipeline") or [] if "$match" in stage]
    direct[DB]["system.profile"].drop()
    return found


def _id_ops(flt: dict[str, Any]) -> set[str]:
    cond = flt.get("_id")
    return set(cond) if isinstance(cond, dict) else set()


def _branch_with_overlay(proxy: Client) -> Any:
    """Branch ``exp``'s ``items`` of 20 documents; its overlay holds a changed
    document 1 and a tombstone of 2."""
    proxy[DB].items.insert_many([{"_id": i, "v": 0} for i in range(20)])
    argon(proxy, "createBranch", name="exp")
    branch = proxy[f"{DB}@exp"].items
    branch.update_one({"_id": 1}, {"$inc": {"v": 1}})
    branch.delete_one({"_id": 2})
    return branch


def test_writes_by_id_on_a_branch_keep_to_the_id_index() -> None:
    with own_clients() as (direct, proxy):
        branch = _branch_with_overlay(proxy)

        def writes() -> None:
            branch.update_one({"_id": 1}, {"$inc": {"v": 10}})  # held by the overlay
            branch.update_one({"_id": 3}, {"$inc": {"v": 1}})  # only in main's
            assert branch.update_one({"_id": 2}, {"$inc": {"v": 1}}).matched_count == 0
            assert branch.delete_one({"_id": 2}).deleted_count == 0
            branch.update_many({"_id": {"$in": [1, 2, 4]}}, {"$inc": {"v": 100}})
            got = branch.find_one_and_update(
                {"_id": 5}, {"$set": {"w": 1}}, return_document=ReturnDocument.AFTER
            )
            assert got == {"_id": 5, "v": 0, "w": 1}

        filters = _base_filters(direct, writes)
        assert filters  # main's documents were looked up
        assert all(not _id_ops(f) & {"$nin", "$ne"} for f in filters), filters
        assert {d["_id"]: d["v"] for d in branch.find({"_id": {"$lt": 6}})} == {
            0: 0,
            1: 111,
            3: 1,
            4: 100,
            5: 0,
        }
        assert proxy[DB].items.count_documents({"v": 0}) == 20  # main untouched


def test_reads_by_id_on_a_branch_keep_to_the_id_index() -> None:
    with own_clients() as (direct, proxy):
        branch = _branch_with_overlay(proxy)
        seen: dict[str, Any] = {}

        def reads() -> None:
            seen["held"] = branch.find_one({"_id": 1})
            seen["gone"] = branch.find_one({"_id": 2})
            seen["main's"] = branch.find_one({"_id": 3})
            seen["some"] = sorted(d["_id"] for d in branch.find({"_id": {"$in": [1, 2, 4]}}))
            seen["piped"] = list(branch.aggregate([{"$match": {"_id": 1}}, {"$project": {"v": 1}}]))
            with proxy.start_session() as session, session.start_transaction():
                seen["in txn"] = branch.find_one({"_id": 1}, session=session)

        filters = _base_filters(direct, reads)
        assert filters
        assert all(not (_id_ops(f) & {"$nin"} and _id_ops(f) & {"$eq", "$in"}) for f in filters), (
            filters
        )
        assert seen == {
            "held": {"_id": 1, "v": 1},
            "gone": None,
            "main's": {"_id": 3, "v": 0},
            "some": [1, 4],
            "piped": [{"_id": 1, "v": 1}],
            "in txn": {"_id": 1, "v": 1},
        }
