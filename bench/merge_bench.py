"""Merge and diff cost follows changes, not collection size.

A branch of a 10,000-document collection and a branch of a 1,000,000-document
collection each change the same 1,000 documents; diff (branch vs main),
merge preview and merge apply are timed on both, side by side in one run.
Target: big / small <= 1.5 for each.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from pymongo import MongoClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.branch_bench import _argon, _fill
from tests.processes import start_proxy, start_upstream

Client = MongoClient[dict[str, object]]
CHANGED = 1_000


def _prepare(argon: Client, db: str, branch: str, n: int) -> None:
    _argon(argon, "createBranch", name=branch)
    coll = argon[f"{db}@{branch}"].data
    step = n // CHANGED
    ids = [i * step for i in range(CHANGED)]
    coll.update_many({"_id": {"$in": ids}}, {"$set": {"changed": True}})


def _time(fn: Callable[[str, str], object], branch: str, db: str) -> float:
    started = time.perf_counter()
    fn(branch, db)
    return time.perf_counter() - started


def main() -> None:
    print("== merge and diff: 1,000 changed documents ==")
    up = start_upstream()
    proxy = start_proxy(f"mongodb://127.0.0.1:{up.port}", "--log-level", "WARNING")
    direct: Client = MongoClient(up.uri)
    argon: Client = MongoClient(proxy.uri)
    try:
        started = time.perf_counter()
        _fill(direct, "small", 10_000)
        _fill(direct, "big", 1_000_000)
        print(f"(loaded 10,000 + 1,000,000 documents in {time.perf_counter() - started:.0f} s)")
        _prepare(argon, "small", "ms", 10_000)
        _prepare(argon, "big", "mb", 1_000_000)
        rows = []
        for label, action in (
            (
                "diff branch vs main",
                lambda b, db: _argon(argon, "diff", **{"from": "main", "to": b, "db": db}),
            ),
            (
                "merge preview",
                lambda b, db: _argon(argon, "merge", source=b, into="main", dryRun=True),
            ),
            ("merge apply", lambda b, db: _argon(argon, "merge", source=b, into="main")),
        ):
            small = _time(action, "ms", "small")
            big = _time(action, "mb", "big")
            rows.append((label, small, big))
        for label, small, big in rows:
            print(
                f"{label:<22} 10k: {small * 1000:8.0f} ms   1M: {big * 1000:8.0f} ms   "
                f"ratio {big / small:5.2f} (target <= 1.5)"
            )
        changed = argon.big.data.count_documents({"changed": True})
        print(f"(merged into main: {changed} documents changed on the 1M collection)")
    finally:
        direct.close()
        argon.close()
        proxy.stop()
        up.stop()
