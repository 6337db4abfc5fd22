"""Branch engine costs, each as a ratio measured side by side in one run.

1. Branch creation on a 1,000,000-document database vs a 1,000-document one
   (target <= 1.2: creation is O(1)).
2. find-by-_id and an indexed 200-document range on a branch with 1% of a
   100,000-document collection overridden, vs the same on main (targets <= 1.5
   and <= 2.0), with the read path that answered.
3. Time travel 10 changes back vs 10,000 changes back on the 1,000,000-document
   collection (the cost follows changes, not size).
4. insert_many and update_many throughput on main through Argon (WAL) vs a
   byte relay (pass-through without WAL) (target >= 0.5).
"""

from __future__ import annotations

import random
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from pymongo import MongoClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.proxy_bench import _start_relay
from tests.processes import Process, start_proxy, start_upstream

Client = MongoClient[dict[str, object]]


def _argon(c: Client, action: str, **args: object) -> dict[str, object]:
    return c.admin.command({"argon": action, **args})


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _median(fn: Callable[[], object], n: int) -> float:
    return statistics.median(_timed(fn) for _ in range(n))


def _fill(client: Client, db: str, n: int, batch: int = 10_000) -> None:
    coll = client[db].data
    coll.drop()
    for start in range(0, n, batch):
        coll.insert_many(
            [{"_id": i, "k": i, "pad": "p" * 64} for i in range(start, min(n, start + batch))],
            ordered=False,
        )
    coll.create_index("k")


def _paths(proxy: Process) -> str:
    url = f"http://127.0.0.1:{proxy.extra['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    rows = [r for r in text.splitlines() if r.startswith("argon_branch_reads_total{")]
    return ", ".join(r.split('"')[1] + "=" + r.split()[-1].split(".")[0] for r in rows)


def main() -> None:
    print("== branch engine ==")
    big_up, small_up = start_upstream(), start_upstream()
    big = start_proxy(f"mongodb://127.0.0.1:{big_up.port}", "--log-level", "WARNING")
    small = start_proxy(f"mongodb://127.0.0.1:{small_up.port}", "--log-level", "WARNING")
    relay = _start_relay(small_up.port)
    try:
        _run(big_up, small_up, big, small, relay)
    finally:
        for p in (big, small, relay, big_up, small_up):
            p.stop()


def _run(big_up: Process, small_up: Process, big: Process, small: Process, relay: Process) -> None:
    direct_big: Client = MongoClient(big_up.uri)
    direct_small: Client = MongoClient(small_up.uri)
    a_big: Client = MongoClient(big.uri)
    a_small: Client = MongoClient(small.uri)
    started = time.perf_counter()
    _fill(direct_big, "bigdb", 1_000_000)
    _fill(direct_small, "smalldb", 1_000)
    print(f"(loaded 1,000,000 + 1,000 documents in {time.perf_counter() - started:.0f} s)")

    # 1. creation
    names = iter(range(10_000))
    t_big = _median(lambda: _argon(a_big, "createBranch", name=f"c{next(names)}"), 15)
    t_small = _median(lambda: _argon(a_small, "createBranch", name=f"c{next(names)}"), 15)
    print(
        f"1. branch creation: 1M-doc db {t_big * 1000:.2f} ms, 1k-doc db "
        f"{t_small * 1000:.2f} ms -> ratio {t_big / t_small:.2f} (target <= 1.2)"
    )

    # 2. reads on a branch with 1% overridden (100,000-document collection)
    _fill(direct_small, "readdb", 100_000)
    _argon(a_small, "createBranch", name="reads")
    branch = a_small["readdb@reads"].data
    branch.update_many({"_id": {"$mod": [100, 7]}}, {"$set": {"touched": True}})
    main = a_small.readdb.data
    rng = random.Random(7)
    ids = [rng.randrange(100_000) for _ in range(300)]
    starts = [rng.randrange(99_800) for _ in range(40)]

    def by_id(coll: object) -> Callable[[], object]:
        return lambda: [coll.find_one({"_id": i}) for i in ids]  # type: ignore[attr-defined]

    def ranges(coll: object) -> Callable[[], object]:
        def run() -> None:
            for s in starts:
                docs = list(coll.find({"k": {"$gte": s, "$lt": s + 200}}))  # type: ignore[attr-defined]
                assert len(docs) == 200

        return run

    for label, make, target in (
        ("find-by-_id x300", by_id, 1.5),
        ("indexed 200-doc range x40", ranges, 2.0),
    ):
        t_main = min(_timed(make(main)) for _ in range(5))
        t_branch = min(_timed(make(branch)) for _ in range(5))
        print(
            f"2. {label}: main {t_main * 1000:.0f} ms, branch {t_branch * 1000:.0f} ms -> "
            f"ratio {t_branch / t_main:.2f} (target <= {target})"
        )
    print(f"   branch read paths so far: {_paths(small)}")

    # 3. time travel on the 1,000,000-document collection
    coll = a_big.bigdb.data
    lsn_far = int(_argon(a_big, "status")["lsn"])  # type: ignore[arg-type]
    coll.update_many({"_id": {"$lt": 9_990}}, {"$set": {"v": 1}})
    lsn_near = int(_argon(a_big, "status")["lsn"])  # type: ignore[arg-type]
    for i in range(10):
        coll.update_one({"_id": 500_000 + i}, {"$set": {"v": 2}})
    t_near = _timed(lambda: a_big[f"bigdb@main@lsn-{lsn_near}"].data.find_one({"_id": 1}))
    t_far = _timed(lambda: a_big[f"bigdb@main@lsn-{lsn_far}"].data.find_one({"_id": 1}))
    print(
        f"3. time travel on 1M docs: 10 changes back {t_near * 1000:.0f} ms, 10,000 changes "
        f"back {t_far * 1000:.0f} ms -> ratio {t_far / t_near:.1f} (follows changes; "
        f"size alone would make both equal)"
    )

    # 4. write throughput on main: Argon (WAL) vs byte relay (no WAL). Every branch is a
    # child of main and main's writes freeze into each child, so the branches made
    # above go first; one child is measured apart.
    for name in [b["name"] for b in _argon(a_small, "listBranches")["branches"]]:  # type: ignore[index]
        if name != "main":
            _argon(a_small, "deleteBranch", name=name)
    r: Client = MongoClient(relay.uri)
    docs = [{"i": i, "pad": "w" * 100} for i in range(1000)]

    def insert(c: Client, db: str) -> Callable[[], object]:
        return lambda: c[db].w.insert_many([dict(d) for d in docs])

    def update(c: Client, db: str) -> Callable[[], object]:
        return lambda: c[db].w.update_many({}, {"$inc": {"i": 1}})

    for label, make in (("insert_many 1,000", insert), ("update_many 1,000", update)):
        t_relay = min(_timed(make(r, "wr")) for _ in range(3))
        t_argon = min(_timed(make(a_small, "wa")) for _ in range(3))
        print(
            f"4. {label}: relay {1000 / t_relay:.0f} docs/s, Argon with WAL "
            f"{1000 / t_argon:.0f} docs/s -> ratio {t_relay / t_argon:.2f} (target >= 0.5)"
        )
        if label.startswith("insert"):
            a_small.wa.w.delete_many({"i": {"$gte": 0}})
            r.wr.w.delete_many({})
            a_small.wa.w.insert_many([dict(d) for d in docs])
            r.wr.w.insert_many([dict(d) for d in docs])
    _argon(a_small, "createBranch", name="one-child")
    a_small.wa.w.delete_many({})
    t_child = min(_timed(insert(a_small, "wa")) for _ in range(3))
    t_relay = min(_timed(insert(r, "wr")) for _ in range(3))
    print(
        f"4. insert_many 1,000 with one child branch: Argon {1000 / t_child:.0f} docs/s "
        f"-> ratio {t_relay / t_child:.2f} of the relay (each child costs a freeze per write)"
    )
    for c in (direct_big, direct_small, a_big, a_small, r):
        c.close()
