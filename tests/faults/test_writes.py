"""Writes under faults: a small pool, concurrency, killed proxies and upstreams.

Every test starts its own upstream and proxies on loopback ports, bounds its
own time (client socket timeouts, thread joins with a timeout: a hang fails
the test instead of hanging it) and stops only what it started.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pymongo import MongoClient, ReturnDocument

from ..processes import Process, start_proxy, start_upstream
from ..stacks import Client, argon

# A hang must fail a test, not hang it: no single request may take longer.
SOCKET_TIMEOUT_MS = 30_000
JOIN_TIMEOUT = 90.0


def _client(proxy: Process, **options: Any) -> Client:
    options.setdefault("socketTimeoutMS", SOCKET_TIMEOUT_MS)
    options.setdefault("serverSelectionTimeoutMS", 10_000)
    return MongoClient(proxy.uri, **options)


@contextmanager
def _stack(*proxy_args: str, storage: str = ":memory:") -> Iterator[tuple[Process, Process]]:
    up = start_upstream(storage=storage)
    try:
        proxy = start_proxy(f"mongodb://127.0.0.1:{up.port}", "--log-level", "WARNING", *proxy_args)
        try:
            yield up, proxy
        finally:
            proxy.stop()
    finally:
        up.stop()


def _run_threads(targets: list[Callable[[], None]]) -> list[BaseException]:
    """Run every target in its own thread; the errors they raised (a thread still
    running after ``JOIN_TIMEOUT`` counts as one)."""
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # collected and asserted on by the test
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,), daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    hung = [t for t in threads if t.is_alive()]
    if hung:
        errors.append(TimeoutError(f"{len(hung)} thread(s) still running: a request hung"))
    return errors


# -- one connection for everything ------------------------------------------------


def _writer(proxy: Process, db: str, coll: str, rounds: int, app: str | None = None) -> None:
    c = _client(proxy, appname=app) if app else _client(proxy)
    try:
        docs = c[db][coll]
        for i in range(rounds):
            docs.insert_one({"_id": i, "n": i})
            docs.insert_many([{"_id": f"{i}-a"}, {"_id": f"{i}-b"}])
            docs.update_one({"_id": i}, {"$inc": {"n": 100}})
            docs.find_one_and_update(
                {"_id": i}, {"$set": {"seen": True}}, return_document=ReturnDocument.AFTER
            )
            docs.delete_one({"_id": f"{i}-b"})
    finally:
        c.close()


def _transaction(proxy: Process, rounds: int) -> None:
    c = _client(proxy)
    try:
        for i in range(rounds):
            with c.start_session() as session:

                def body(s: Any, i: int = i) -> None:
                    c.pool1.txn.insert_one({"_id": i}, session=s)
                    c.pool1.txn.update_one({"_id": i}, {"$set": {"in_txn": True}}, session=s)

                session.with_transaction(body)
    finally:
        c.close()


def _pinger(proxy: Process, rounds: int) -> None:
    c = _client(proxy)
    try:
        for _ in range(rounds):
            c.admin.command("ping")
    finally:
        c.close()


def test_pool_of_one_serves_concurrent_writers_on_main_and_a_branch() -> None:
    """A request never needs a second pooled connection, so one is enough for all."""
    rounds = 4
    with _stack("--pool-size", "1") as (_up, proxy):
        admin = _client(proxy)
        argon(admin, "createBranch", name="feature")
        targets: list[Callable[[], None]] = [
            lambda: _writer(proxy, "pool1", "a", rounds),
            lambda: _writer(proxy, "pool1", "b", rounds),
            lambda: _writer(proxy, "pool1@feature", "a", rounds),
            lambda: _writer(proxy, "pool1", "c", rounds, app="argon:feature"),
            lambda: _transaction(proxy, rounds),
            lambda: _pinger(proxy, 20),
        ]
        errors = _run_threads(targets)
        assert not errors, errors
        expected = {i: {"_id": i, "n": i + 100, "seen": True} for i in range(rounds)}
        for db, coll in [("pool1", "a"), ("pool1", "b"), ("pool1@feature", "a")]:
            got = {d["_id"]: d for d in admin[db][coll].find({"_id": {"$type": "number"}})}
            assert got == expected, (db, coll)
            assert admin[db][coll].count_documents({}) == 2 * rounds
        feature = _client(proxy, appname="argon:feature")
        assert feature.pool1.c.count_documents({}) == 2 * rounds
        assert admin.pool1.c.count_documents({}) == 0  # the branch's writes stay on it
        feature.close()
        assert admin.pool1.txn.count_documents({"in_txn": True}) == rounds
        admin.close()


# -- LSN order is commit order --------------------------------------------------------


def test_a_visible_lsn_has_its_entry_committed() -> None:
    """Whenever the LSN counter shows N, every WAL entry up to N is there: LSNs are
    allocated in the transaction that writes their entries."""
    stop = threading.Event()
    violations: list[str] = []
    with _stack() as (up, proxy):
        direct: Client = MongoClient(up.uri)
        argon_db = direct["__argon"]

        def write(k: int) -> None:
            c = _client(proxy)
            try:
                i = 0
                while not stop.is_set() and i < 60:
                    c.order[f"c{k}"].insert_one({"_id": i})
                    c.order[f"c{k}"].update_one({"_id": i}, {"$set": {"x": 1}})
                    i += 1
            finally:
                c.close()

        def watch() -> None:
            while not stop.is_set():
                found = argon_db.counters.find_one({"_id": "lsn"})
                head = int(found["value"]) if found else 0
                lsns = {d["_id"] for d in argon_db.wal.find({"_id": {"$lte": head}}, {"_id": 1})}
                missing = set(range(1, head + 1)) - lsns
                if missing:
                    violations.append(f"counter at {head}, entries {sorted(missing)[:5]} missing")
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        errors = _run_threads([lambda k=k: write(k) for k in range(4)])  # type: ignore[misc]
        stop.set()
        watcher.join(JOIN_TIMEOUT)
        assert not errors, errors
        assert not violations, violations
        head = int(argon_db.counters.find_one({"_id": "lsn"})["value"])  # type: ignore[index]
        assert head == 4 * 60 * 2
        direct.close()
