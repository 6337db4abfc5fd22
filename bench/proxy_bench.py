"""Pass-through cost: direct vs a byte relay vs Argon, measured in one run.

Workloads: find-one by ``_id``, insert_one, insert_many of 1,000 documents and
a 10,000-document cursor scan, each timed round-robin over the three targets
(so drift on this shared machine hits all three alike), best of several
rounds. Then Argon's peak RSS while 100 concurrent clients work through it.
Targets: Argon >= 0.9 of the relay and >= 0.8 of direct; RSS <= 80 MB.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bson import ObjectId
from pymongo import MongoClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.processes import Process, free_port, start_proxy, start_upstream, wait_for_port

Client = MongoClient[dict[str, object]]
ROUNDS = 5


def _start_relay(upstream_port: int) -> Process:
    import subprocess
    import tempfile

    port = free_port()
    log = Path(tempfile.mkstemp(prefix="relay-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.relay", str(port), str(upstream_port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
        )
    wait_for_port(port, 30, proc)
    return Process(proc, port, log)


def _workloads(coll_name: str) -> dict[str, tuple[int, Callable[[Client], None]]]:
    """name -> (operations per timed run, function doing them)."""
    ids: list[ObjectId] = []

    def setup_ids(client: Client) -> None:
        if not ids:
            ids.extend(d["_id"] for d in client.bench.scan.find({}, {"_id": 1}).limit(200))

    def find_one(client: Client) -> None:
        setup_ids(client)
        coll = client.bench.scan
        for oid in ids:
            coll.find_one({"_id": oid})

    def insert_one(client: Client) -> None:
        coll = client.bench[coll_name]
        for i in range(200):
            coll.insert_one({"i": i, "payload": "x" * 100})

    def insert_many(client: Client) -> None:
        client.bench[coll_name].insert_many([{"i": i, "payload": "x" * 100} for i in range(1000)])

    def scan(client: Client) -> None:
        n = sum(1 for _ in client.bench.scan.find({}))
        assert n == 10_000, n

    return {
        "find_one by _id (x200)": (200, find_one),
        "insert_one (x200)": (200, insert_one),
        "insert_many 1,000 docs": (1, insert_many),
        "cursor scan 10,000 docs": (1, scan),
    }


def _time(fn: Callable[[Client], None], client: Client) -> float:
    started = time.perf_counter()
    fn(client)
    return time.perf_counter() - started


def _rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _rss_under_load(argon: Process, clients: int = 100, seconds: float = 5.0) -> tuple[int, int]:
    stop = threading.Event()
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)

    def worker() -> None:
        c: Client = MongoClient(argon.uri, maxPoolSize=1)
        try:
            barrier.wait(30)
            coll = c.bench.scan
            while not stop.is_set():
                coll.find_one({"i": 5})
        except BaseException as exc:
            errors.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait(30)
    peak = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, _rss_kb(argon.proc.pid, "VmRSS"))
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(30)
    if errors:
        print(f"  ({len(errors)} client errors during the RSS run: {errors[0]!r})")
    return peak, _rss_kb(argon.proc.pid, "VmHWM")


def main() -> None:
    print("== proxy pass-through: direct vs byte relay vs Argon ==")
    upstream = start_upstream()
    relay = _start_relay(upstream.port)
    argon = start_proxy(f"mongodb://127.0.0.1:{upstream.port}", "--log-level", "WARNING")
    targets = {
        "direct": f"mongodb://127.0.0.1:{upstream.port}/?directConnection=true",
        "relay": f"mongodb://127.0.0.1:{relay.port}/?directConnection=true",
        "argon": argon.uri,
    }
    clients = {name: MongoClient(uri) for name, uri in targets.items()}
    try:
        seed = clients["direct"].bench.scan
        seed.drop()
        seed.insert_many([{"i": i, "payload": "y" * 200} for i in range(10_000)])
        print(f"upstream SecantusDB on :{upstream.port}; {ROUNDS} rounds, best round counts")
        print(
            f"{'workload':<26}{'direct ops/s':>14}{'relay ops/s':>14}{'argon ops/s':>14}"
            f"{'argon/relay':>13}{'argon/direct':>14}"
        )
        for name, (ops, fn) in _workloads("ins").items():
            timings: dict[str, list[float]] = {t: [] for t in targets}
            for _ in range(ROUNDS):
                for target, client in clients.items():
                    timings[target].append(_time(fn, client))
            rate = {t: ops / min(v) for t, v in timings.items()}
            print(
                f"{name:<26}{rate['direct']:>14.0f}{rate['relay']:>14.0f}{rate['argon']:>14.0f}"
                f"{rate['argon'] / rate['relay']:>13.2f}{rate['argon'] / rate['direct']:>14.2f}"
                f"   (median argon {statistics.median(timings['argon']) * 1000:.1f} ms)"
            )
            clients["direct"].bench.ins.drop()
        idle = _rss_kb(argon.proc.pid, "VmRSS")
        peak, hwm = _rss_under_load(argon)
        print(
            f"Argon RSS: idle {idle / 1024:.1f} MB, peak with 100 concurrent clients "
            f"{peak / 1024:.1f} MB (high-water mark {hwm / 1024:.1f} MB; target <= 80 MB)"
        )
    finally:
        for c in clients.values():
            c.close()
        argon.stop()
        relay.stop()
        upstream.stop()
