"""Write path as users run it: direct vs Argon on main vs Argon on a branch.

Workloads, each timed side by side in one run (round-robin, best of a few
rounds): a ``bulk_write`` of 300 ``UpdateOne``; a batch pipeline of 1,000
items written back one by one; ``insert_many`` of 10,000 and
of 100,000 documents (time per document, and the 100k figure over the 10k
one: throughput must not fall as the batch grows); eight concurrent writers
doing ``insert_one`` for a fixed count (ops/s and p99 latency). Then the WAL's
bytes per changed document byte for a workload of inserts, updates and
deletes, from the upstream's own collection stats before and after it.
Targets (see the write-path issue): bulk_write >= 0.3 of direct; the batch
pipeline on a branch within 5x of direct; 100k per-doc
time within 1.3x of 10k; WAL bytes per changed byte <= 2.5.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bson import encode
from pymongo import MongoClient, UpdateOne
from pymongo.database import Database

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.processes import start_proxy, start_upstream

Client = MongoClient[dict[str, object]]
Db = Database[dict[str, object]]
ROUNDS = 3
WRITERS = 8
PER_WRITER = 100


def _bulk_updates(db: Db) -> Callable[[], None]:
    coll = db["bulk"]

    def run() -> None:
        coll.bulk_write([UpdateOne({"_id": i}, {"$inc": {"n": 1}}) for i in range(300)])

    return run


def _inserts(db: Db, count: int) -> Callable[[], None]:
    def run() -> None:
        coll = db[f"many{count}"]
        coll.drop()
        docs = [{"i": i, "payload": "x" * 100} for i in range(count)]
        for start in range(0, count, 10_000):  # as a driver splits a large batch
            coll.insert_many(docs[start : start + 10_000])

    return run


def _batch_pipeline(db: Db) -> Callable[[], None]:
    """The batch pattern of the project's source documents: 1,000 items partitioned
    into batches of 100, each item processed and its result written back on its
    own (two in a hundred fail), each batch and then the whole run summed up."""

    def run() -> None:
        coll = db["items"]
        coll.drop()
        for b in range(10):
            coll.insert_many(
                [{"_id": b * 100 + i, "batch": b, "value": i, "status": "new"} for i in range(100)]
            )
        for b in range(10):
            for item in coll.find({"batch": b}):
                number, value = item["_id"], item["value"]
                assert isinstance(number, int) and isinstance(value, int)
                status = "failed" if number % 50 == 0 else "done"
                result = {"status": status, "result": value * 2}
                coll.update_one({"_id": item["_id"]}, {"$set": result})
            list(coll.aggregate([{"$match": {"batch": b}}, _BY_STATUS]))
        list(coll.aggregate([_BY_STATUS]))

    return run


_BY_STATUS = {"$group": {"_id": "$status", "n": {"$sum": 1}}}


def _best(fn: Callable[[], None], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def _concurrent(uri: str, db_name: str) -> tuple[float, float]:
    """ops/s and p99 latency (ms) of ``WRITERS`` threads inserting ``PER_WRITER`` each."""
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(WRITERS)

    def worker(n: int) -> None:
        client: Client = MongoClient(uri, maxPoolSize=1)
        coll = client[db_name]["concurrent"]
        mine = []
        barrier.wait(60)
        for i in range(PER_WRITER):
            started = time.perf_counter()
            coll.insert_one({"w": n, "i": i})
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)
        client.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(WRITERS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    elapsed = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else 0.0
    return len(latencies) / elapsed, p99 * 1000


def _wal_held(direct: Client) -> int:
    """Bytes the WAL holds, data and indexes, by the upstream's own stats."""
    stats = direct["__argon"].command("collStats", "wal")
    return int(stats.get("size", 0)) + int(stats.get("totalIndexSize", 0))


def _wal_ratio(direct: Client, db: Db) -> float:
    """WAL bytes per changed document byte for a workload of its own on ``db``:
    10,000 inserts, 1,000 updates of one field, 100 deletes. Every change counts
    its document: the new one for inserts and updates, the removed one for deletes."""
    coll = db["walsize"]
    doc = {"_id": 0, "i": 0, "payload": "x" * 100}
    before = _wal_held(direct)
    coll.insert_many([{**doc, "_id": i, "i": i} for i in range(10_000)])
    coll.bulk_write([UpdateOne({"_id": i}, {"$set": {"n": 1}}) for i in range(1_000)])
    coll.delete_many({"_id": {"$gte": 9_900}})
    changed = len(encode(doc)) * (10_000 + 100) + len(encode({**doc, "n": 1})) * 1_000
    return (_wal_held(direct) - before) / changed


def main() -> None:
    print("== write path: direct vs Argon on main vs Argon on a branch ==")
    upstream = start_upstream()
    argon = start_proxy(f"mongodb://127.0.0.1:{upstream.port}", "--log-level", "WARNING")
    direct: Client = MongoClient(upstream.uri)
    proxied: Client = MongoClient(argon.uri)
    try:
        direct.wb.bulk.insert_many([{"_id": i, "n": 0} for i in range(300)])
        direct.wbd.bulk.insert_many([{"_id": i, "n": 0} for i in range(300)])
        proxied.admin.command({"argon": "createBranch", "name": "bench"})
        targets = {"direct": direct.wbd, "main": proxied.wb, "branch": proxied["wb@bench"]}
        print(
            f"{'workload':<30}{'direct s':>10}{'main s':>10}{'branch s':>10}"
            f"{'main/direct':>13}{'branch/direct':>15}"
        )
        rows = {
            "bulk_write 300 UpdateOne": {t: _bulk_updates(db) for t, db in targets.items()},
            "batch pipeline 1,000 items": {t: _batch_pipeline(db) for t, db in targets.items()},
            "insert_many 10,000": {t: _inserts(db, 10_000) for t, db in targets.items()},
            "insert_many 100,000": {t: _inserts(db, 100_000) for t, db in targets.items()},
        }
        seconds: dict[str, dict[str, float]] = {}
        for name, fns in rows.items():
            rounds = 1 if "100,000" in name else ROUNDS
            seconds[name] = {t: _best(fn, rounds) for t, fn in fns.items()}
            got = seconds[name]
            print(
                f"{name:<30}{got['direct']:>10.3f}{got['main']:>10.3f}{got['branch']:>10.3f}"
                f"{got['direct'] / got['main']:>13.3f}{got['direct'] / got['branch']:>15.3f}"
            )
        for target in ("direct", "main", "branch"):
            small = seconds["insert_many 10,000"][target] / 10_000
            large = seconds["insert_many 100,000"][target] / 100_000
            print(f"insert_many per document, 100k over 10k, {target}: {large / small:.2f}")
        for target in ("main", "branch"):
            ratio = _wal_ratio(direct, targets[target])
            print(f"WAL bytes per changed document byte, {target}: {ratio:.2f} (target <= 2.5)")
        for target, uri in {"direct": upstream.uri, "main": argon.uri}.items():
            rate, p99 = _concurrent(uri, "wbc")
            print(f"{WRITERS} concurrent writers, {target}: {rate:.0f} ops/s, p99 {p99:.1f} ms")
    finally:
        direct.close()
        proxied.close()
        argon.stop()
        upstream.stop()
