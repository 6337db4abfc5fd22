"""Costs that must not grow with the number of branches, side by side in one run.

1. insert_one and update_one on main with 3,000 live branches vs with none
   (target <= 1.2: main's writes freeze into a few bundles, not each child).
2. createBranch with 3,000 branches vs with 20 (target <= 1.2).
3. listBranches of 3,000 vs of 30 (target <= 10).

The 3,000 branches are children of main created one after another, as a
branch per experiment or per pull request would be.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pymongo import MongoClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.processes import start_proxy, start_upstream

Client = MongoClient[dict[str, object]]
MANY = 3_000


def _median_ms(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    print("== costs with many branches ==")
    up = start_upstream()
    proxy = start_proxy(f"mongodb://127.0.0.1:{up.port}", "--log-level", "WARNING")
    try:
        _run(MongoClient(proxy.uri))
    finally:
        proxy.stop()
        up.stop()


def _run(client: Client) -> None:
    def argon(action: str, **args: object) -> dict[str, object]:
        return client.admin.command({"argon": action, **args})

    coll = client.scale.items
    coll.insert_many([{"_id": i, "v": 0} for i in range(1_000)])
    turn = iter(range(10**9))
    made = 0

    def grow(to: int) -> None:
        nonlocal made
        while made < to:
            argon("createBranch", name=f"exp-{made}")
            made += 1

    def writes() -> tuple[float, float]:
        coll.insert_one({"warm": True})
        insert = _median_ms(lambda: coll.insert_one({"n": next(turn)}), 200)
        bump = {"$inc": {"v": 1}}
        update = _median_ms(lambda: coll.update_one({"_id": next(turn) % 1000}, bump), 200)
        return insert, update

    def create() -> float:
        def one() -> None:
            name = f"probe-{next(turn)}"
            argon("createBranch", name=name)
            probes.append(name)

        probes: list[str] = []
        taken = _median_ms(one, 10)
        for name in probes:
            argon("deleteBranch", name=name)
        return taken

    insert_0, update_0 = writes()
    grow(1)
    insert_1, update_1 = writes()
    grow(20)
    create_20 = create()
    grow(30)
    list_30 = _median_ms(lambda: argon("listBranches"), 10)
    started = time.perf_counter()
    grow(MANY)
    print(f"(created {MANY:,} branches in {time.perf_counter() - started:.0f} s)")
    insert_n, update_n = writes()
    create_n = create()
    list_n = _median_ms(lambda: argon("listBranches"), 5)
    for label, few, many, target in (
        ("insert_one on main, 3,000 branches vs none", insert_0, insert_n, 1.2),
        ("update_one on main, 3,000 branches vs none", update_0, update_n, 1.2),
        # with one child or more, each write also freezes into a child or a bundle
        ("insert_one on main, 3,000 branches vs 1", insert_1, insert_n, 1.2),
        ("update_one on main, 3,000 branches vs 1", update_1, update_n, 1.2),
        ("createBranch, 3,000 branches vs 20", create_20, create_n, 1.2),
        ("listBranches, 3,000 vs 30", list_30, list_n, 10.0),
    ):
        print(
            f"{label}: {few:.1f} ms vs {many:.1f} ms -> ratio {many / few:.2f} (target <= {target})"
        )
