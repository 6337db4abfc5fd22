"""kill -9 in the middle of writes: data and WAL agree, no acknowledged write is lost."""

from __future__ import annotations

import signal
import threading
import time

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from ..processes import start_proxy, start_upstream


def test_kill_minus_nine_keeps_data_and_wal_in_step() -> None:
    up = start_upstream()
    proxy = start_proxy(f"mongodb://127.0.0.1:{up.port}", "--log-level", "WARNING")
    acknowledged: list[int] = []
    failures: list[str] = []  # before the kill, a write must not fail
    stop = threading.Event()
    killed = threading.Event()

    def writer(offset: int) -> None:
        c: MongoClient[dict[str, object]] = MongoClient(
            proxy.uri, serverSelectionTimeoutMS=2000, retryWrites=False
        )
        i = offset
        try:
            while not stop.is_set():
                try:
                    c.crash.docs.insert_one({"_id": i, "n": i})
                    c.crash.docs.update_one({"_id": i}, {"$set": {"updated": True}})
                    acknowledged.append(i)
                except PyMongoError as exc:
                    if not killed.is_set():
                        failures.append(f"{type(exc).__name__}: {exc}")
                    return
                i += 2
        finally:
            c.close()

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) <= 10 and time.monotonic() < deadline:
            time.sleep(0.1)  # kill it while writes are flowing, however slow the machine
        killed.set()
        proxy.stop(signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join(10)
        assert not failures, f"{failures}\n{proxy.log()}"
        assert len(acknowledged) > 10
        proxy = start_proxy(f"mongodb://127.0.0.1:{up.port}", "--log-level", "WARNING")
        direct: MongoClient[dict[str, object]] = MongoClient(up.uri)
        docs = {d["_id"]: d for d in direct.crash.docs.find()}
        wal = list(direct["__argon"].wal.find({"ns": "crash.docs"}))
        direct.close()
        inserted = {e["doc_id"] for e in wal if e["op"] == "i"}
        updated = {e["doc_id"] for e in wal if e["op"] == "u"}
        assert set(acknowledged) <= set(docs)  # nothing acknowledged is missing
        assert inserted == set(docs)  # every document has its insert in the WAL, and only those
        assert updated == {i for i, d in docs.items() if d.get("updated")}
        # and the restarted proxy serves the data
        c: MongoClient[dict[str, object]] = MongoClient(proxy.uri)
        assert c.crash.docs.count_documents({}) == len(docs)
        c.close()
    finally:
        stop.set()
        proxy.stop()
        up.stop()
