"""Writes under faults: a small pool, concurrency, killed proxies and upstreams.

Every test starts its own upstream and proxies on loopback ports, bounds its
own time (client socket timeouts, thread joins with a timeout: a hang fails
the test instead of hanging it) and stops only what it started.
"""

from __future__ import annotations

import datetime as dt
import shutil
import signal
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pymongo import MongoClient, ReturnDocument
from pymongo.errors import BulkWriteError, PyMongoError, WriteConcernError
from pymongo.write_concern import WriteConcern

from argon_proxy.wal import time_of

from ..processes import Process, start_proxy, start_upstream
from ..stacks import Client, argon, branch_id

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
    """Whenever Argon reports the LSN head N, every WAL entry up to N that will ever
    exist is there: none at or below N commits later (an LSN whose transaction
    failed is never used). Writers go through two proxies sharing the upstream."""
    stop = threading.Event()
    violations: list[str] = []
    missing: set[int] = set()  # LSNs at or below a reported head, without an entry then
    with _stack() as (up, first):
        second = start_proxy(f"mongodb://127.0.0.1:{up.port}", "--log-level", "WARNING")
        direct: Client = MongoClient(up.uri)
        argon_db = direct["__argon"]

        def write(k: int) -> None:
            c = _client((first, second)[k % 2])
            try:
                i = 0
                while not stop.is_set() and i < 60:
                    c.order[f"c{k}"].insert_one({"_id": i})
                    c.order[f"c{k}"].update_one({"_id": i}, {"$set": {"x": 1}})
                    i += 1
            finally:
                c.close()

        def watch() -> None:
            c = _client(first)
            try:
                while not stop.is_set():
                    head = int(argon(c, "status")["lsn"])
                    wal = argon_db.wal.find({"_id": {"$lte": head}}, {"_id": 1})
                    missing.update(set(range(1, head + 1)) - {d["_id"] for d in wal})
            finally:
                c.close()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            errors = _run_threads([lambda k=k: write(k) for k in range(4)])  # type: ignore[misc]
        finally:
            stop.set()
            watcher.join(JOIN_TIMEOUT)
            second.stop()
        assert not errors, errors
        late = argon_db.wal.count_documents({"_id": {"$in": sorted(missing)}})
        if late:
            violations.append(f"{late} of the LSNs missing at a reported head committed later")
        assert not violations, violations
        # every write has exactly one entry
        assert argon_db.wal.count_documents({"ns": {"$regex": "^order[.]"}}) == 4 * 60 * 2
        for k in range(4):
            assert direct.order[f"c{k}"].count_documents({"x": 1}) == 60
        direct.close()


# -- kill -9 of the proxy ------------------------------------------------------------------


def _keep_writing(
    proxy: Process,
    db: str,
    offset: int,
    done: list[Any],
    trying: dict[int, Any],
    stop: threading.Event,
) -> None:
    """Insert, update and bump a shared document until the proxy goes away."""
    c = _client(proxy, retryWrites=False)
    docs = c[db].docs
    i = offset
    try:
        while not stop.is_set():
            trying[offset] = i
            docs.insert_one({"_id": i})
            docs.update_one({"_id": i}, {"$set": {"updated": True}})
            docs.update_one({"_id": "hot"}, {"$inc": {"n": 1}})
            done.append(i)
            i += 2
    except PyMongoError:
        return
    finally:
        c.close()


def _check_wal(direct: Client, branch: str, docs: dict[Any, dict[str, Any]]) -> None:
    """No WAL entry without its data and none missing."""
    wal = list(
        direct["__argon"].wal.find({"ns": "killed.docs", "branch_id": branch_id(direct, branch)})
    )
    inserted = {e["doc_id"] for e in wal if e["op"] == "i"}
    updated = {e["doc_id"] for e in wal if e["op"] == "u"}
    numbers = {k for k in docs if k != "hot"}
    assert inserted - {"hot"} == numbers, branch
    assert updated - {"hot"} == {k for k in numbers if docs[k].get("updated")}, branch
    bumps = [e for e in wal if e["doc_id"] == "hot" and e["op"] == "u"]
    assert len(bumps) == docs["hot"]["n"], branch  # one entry per bump that committed


def test_killed_proxy_leaves_nothing_locked_or_lost() -> None:
    """kill -9 mid-write on main and on a branch: after a restart every acknowledged
    write is there with its WAL entry, and the documents the dead proxy was writing
    can be written again at once (its upstream transaction is ended)."""
    with _stack() as (up, proxy):
        setup = _client(proxy)
        setup.killed.docs.insert_one({"_id": "hot", "n": 0})
        argon(setup, "createBranch", name="doomed")
        setup.close()
        stop = threading.Event()
        done: dict[str, list[Any]] = {"killed": [], "killed@doomed": []}
        trying: dict[str, dict[int, Any]] = {"killed": {}, "killed@doomed": {}}
        threads = [
            threading.Thread(
                target=_keep_writing, args=(proxy, db, k, done[db], trying[db], stop), daemon=True
            )
            for db in done
            for k in range(2)
        ]
        for t in threads:
            t.start()
        while min(len(d) for d in done.values()) < 10 and all(t.is_alive() for t in threads):
            threading.Event().wait(0.05)
        proxy.stop(signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join(JOIN_TIMEOUT)
        assert not any(t.is_alive() for t in threads)
        proxy = start_proxy(f"mongodb://127.0.0.1:{up.port}", "--log-level", "WARNING")
        try:
            c = _client(proxy, retryWrites=False)
            direct: Client = MongoClient(up.uri)
            for db, branch in (("killed", "main"), ("killed@doomed", "doomed")):
                docs = {d["_id"]: d for d in c[db].docs.find()}
                assert set(done[db]) <= set(docs), db  # nothing acknowledged is missing
                _check_wal(direct, branch, docs)
            direct.close()
            for db in done:
                # Every document a writer was at: the dead transaction held one of them.
                for doc_id in [*trying[db].values(), "hot"]:
                    c[db].docs.update_one({"_id": doc_id}, {"$set": {"after": True}}, upsert=True)
                assert c[db].docs.count_documents({"after": True}) == 3
            c.close()
        finally:
            proxy.stop()


# -- kill -9 of the upstream ----------------------------------------------------------------


def test_journaled_writes_survive_a_killed_upstream() -> None:
    """Writes acknowledged with ``j: true`` are on disk: the upstream killed under
    them and started again on the same files has every one, with its WAL entry."""
    storage = tempfile.mkdtemp(prefix="argon-faults-")
    up = start_upstream(storage=storage)
    port = up.port
    proxy = start_proxy(f"mongodb://127.0.0.1:{port}", "--log-level", "WARNING")
    done: list[Any] = []
    stop = threading.Event()

    def write(offset: int) -> None:
        c = _client(proxy, retryWrites=False)
        docs = c.durable.get_collection("docs", write_concern=WriteConcern(j=True))
        i = offset
        try:
            while not stop.is_set():
                docs.insert_one({"_id": i, "pad": "x" * 200})
                done.append(i)
                i += 4
        except PyMongoError:
            return
        finally:
            c.close()

    threads = [threading.Thread(target=write, args=(k,), daemon=True) for k in range(4)]
    try:
        for t in threads:
            t.start()
        while len(done) < 200 and all(t.is_alive() for t in threads):
            threading.Event().wait(0.05)
        up.stop(signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join(JOIN_TIMEOUT)
        assert not any(t.is_alive() for t in threads)
        up = start_upstream(port, storage)
        direct: Client = MongoClient(up.uri)
        stored = {d["_id"] for d in direct.durable.docs.find({}, {"_id": 1})}
        logged = {e["doc_id"] for e in direct["__argon"].wal.find({"ns": "durable.docs"})}
        direct.close()
        lost = set(done) - stored
        assert not lost, f"{len(lost)} of {len(done)} acknowledged writes lost"
        assert logged == stored  # no WAL entry without its data and none missing
    finally:
        stop.set()
        proxy.stop()
        up.stop()
        shutil.rmtree(storage, ignore_errors=True)


# -- big batches -------------------------------------------------------------------------------


def test_a_big_insert_commits_in_bounded_transactions() -> None:
    """A batch runs as transactions of at most one insert command's worth of
    documents each, so none grows with the batch; write errors stay mongod's."""
    with _stack() as (up, proxy):
        c = _client(proxy)
        direct: Client = MongoClient(up.uri)
        setup = c.big.docs
        setup.insert_one({"_id": "seed"})
        argon(c, "createBranch", name="wide")
        for db in ("big", "big@wide"):
            docs = c[db].docs
            docs.insert_many([{"_id": i, "pad": "x" * 100} for i in range(2500)])
            assert docs.count_documents({}) == 2501
            branch = "wide" if "@" in db else "main"
            entries = list(
                direct["__argon"].wal.find(
                    {
                        "ns": "big.docs",
                        "branch_id": branch_id(direct, branch),
                        "op": "i",
                        "doc_id": {"$type": "int"},
                    }
                )
            )
            assert len(entries) == 2500
            # The entries of one transaction share its time: count them per transaction.
            parts = Counter(time_of(e) for e in entries)
            assert len(parts) >= 3 and max(parts.values()) <= 1000, db
        direct.close()

        # ordered: stops at the duplicate (in a later part), everything before it stays
        ordered = c.big.ordered
        ordered.insert_one({"_id": 1005})
        with pytest.raises(BulkWriteError) as err:
            ordered.insert_many([{"_id": i} for i in range(2100)])
        assert err.value.details["nInserted"] == 1005
        assert [e["index"] for e in err.value.details["writeErrors"]] == [1005]
        assert ordered.count_documents({}) == 1006
        # unordered: every other document goes in, each duplicate is reported where it is
        loose = c["big@wide"].loose
        loose.insert_many([{"_id": 2010}, {"_id": 2090}])
        with pytest.raises(BulkWriteError) as err:
            loose.insert_many([{"_id": i} for i in range(2100)], ordered=False)
        assert err.value.details["nInserted"] == 2098
        assert sorted(e["index"] for e in err.value.details["writeErrors"]) == [2010, 2090]
        assert loose.count_documents({}) == 2100
        c.close()


# -- write concern ---------------------------------------------------------------------------


def _every_write_path(docs: Any) -> list[Callable[[], object]]:
    return [
        lambda: docs.insert_one({"_id": 1}),
        lambda: docs.insert_many([{"_id": 2}, {"_id": 3}]),
        lambda: docs.update_one({"_id": 1}, {"$set": {"x": 1}}),
        lambda: docs.find_one_and_update({"_id": 2}, {"$set": {"x": 2}}),
        lambda: docs.delete_one({"_id": 3}),
        lambda: docs.aggregate([{"$match": {}}, {"$out": "copy"}]),
    ]


def _concern_error_code(write: Callable[[], object]) -> int | None:
    """The code of the write concern error ``write`` reported (None: none)."""
    try:
        write()
    except WriteConcernError as exc:
        return exc.code
    except BulkWriteError as exc:  # insert_many reports it with the batch
        return int(exc.details["writeConcernErrors"][0]["code"])
    return None


def test_the_clients_write_concern_reaches_the_commit() -> None:
    """A single node cannot satisfy ``w: 2``: through Argon every write path says so
    (``writeConcernError``, the write applied), as the upstream does directly."""
    with _stack() as (_up, proxy):
        c = _client(proxy)
        c.wc.docs.insert_one({"_id": 0})
        argon(c, "createBranch", name="concern")
        for db in ("wc", "wc@concern"):
            docs = c[db].get_collection("docs", write_concern=WriteConcern(w=2))
            writes = _every_write_path(docs)
            for write in writes:
                assert _concern_error_code(write) == 100, db
            assert sorted(d["_id"] for d in c[db].docs.find()) == [0, 1, 2]
            assert c[db].docs.find_one({"_id": 2}) == {"_id": 2, "x": 2}
            assert c[db].copy.count_documents({}) == 3
        c.close()


# -- conflicts ---------------------------------------------------------------------------------


def test_a_write_waits_out_a_conflicting_transaction() -> None:
    """A write that conflicts with an open transaction is retried by Argon until
    the transaction ends (mongod retries its own write conflicts), not failed."""
    with _stack() as (up, proxy):
        direct: Client = MongoClient(up.uri)
        direct.held.docs.insert_one({"_id": 1, "n": 0})
        c = _client(proxy, retryWrites=False)
        result: list[Any] = []
        with direct.start_session() as session:
            session.start_transaction()
            direct.held.docs.update_one({"_id": 1}, {"$inc": {"n": 10}}, session=session)
            writer = threading.Thread(
                target=lambda: result.append(
                    c.held.docs.update_one({"_id": 1}, {"$inc": {"n": 1}}).modified_count
                ),
                daemon=True,
            )
            writer.start()
            writer.join(1.0)  # still conflicting: the transaction holds the document
            session.commit_transaction()
        writer.join(JOIN_TIMEOUT)
        assert result == [1]
        assert direct.held.docs.find_one({"_id": 1}) == {"_id": 1, "n": 11}
        c.close()
        direct.close()


def test_a_restart_reclaims_only_dead_proxies() -> None:
    """The proxy started after a kill -9 ends the dead one's sessions, never those of
    a live proxy sharing the upstream."""
    with _stack() as (up, doomed):
        alive = start_proxy(f"mongodb://127.0.0.1:{up.port}", "--log-level", "WARNING")
        try:
            direct: Client = MongoClient(up.uri)
            proxies = direct["__argon"].proxies
            for p in (doomed, alive):  # each has run a transaction: it has a session
                c = _client(p)
                c.reclaim.docs.insert_one({})
                c.close()
            before = {r["pid"]: r for r in proxies.find()}
            assert {doomed.proc.pid, alive.proc.pid} <= set(before)
            assert all(before[p.proc.pid]["sessions"] >= 1 for p in (doomed, alive))
            doomed.stop(signal.SIGKILL)
            restarted = start_proxy(f"mongodb://127.0.0.1:{up.port}", "--log-level", "WARNING")
            try:
                after = {r["pid"] for r in proxies.find()}
                assert doomed.proc.pid not in after
                assert {alive.proc.pid, restarted.proc.pid} <= after
                c = _client(alive)
                c.reclaim.docs.insert_one({})  # the live one goes on undisturbed
                assert c.reclaim.docs.count_documents({}) == 3
                c.close()
            finally:
                restarted.stop()
            direct.close()
        finally:
            alive.stop()


def test_a_restart_ends_the_lsn_leases_of_dead_proxies() -> None:
    """LSNs a killed proxy leased will never commit: the proxy that ends its sessions
    ends its leases too, so readers of the LSN head need not wait for them to expire.
    A live proxy's leases stay."""
    with _stack() as (up, doomed):
        alive = start_proxy(f"mongodb://127.0.0.1:{up.port}", "--log-level", "WARNING")
        try:
            direct: Client = MongoClient(up.uri)
            argon_db = direct["__argon"]
            for p in (doomed, alive):
                c = _client(p)
                c.leases.docs.insert_one({})
                c.close()
            ids = {r["pid"]: r["_id"] for r in argon_db.proxies.find()}
            head = int(argon_db.counters.find_one({"_id": "lsn"})["value"])  # type: ignore[index]
            until = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)
            leases = [
                {"first": head, "until": until, "by": ids[doomed.proc.pid]},
                {"first": head + 1000, "until": until, "by": ids[alive.proc.pid]},
            ]
            argon_db.counters.update_one({"_id": "lsn"}, {"$push": {"inflight": {"$each": leases}}})
            doomed.stop(signal.SIGKILL)
            restarted = start_proxy(f"mongodb://127.0.0.1:{up.port}", "--log-level", "WARNING")
            try:
                counter = argon_db.counters.find_one({"_id": "lsn"})
                assert counter is not None
                assert [e["by"] for e in counter["inflight"]] == [ids[alive.proc.pid]]
                c = _client(restarted)
                assert int(argon(c, "status")["lsn"]) >= head  # not held up by the dead one
                c.close()
            finally:
                restarted.stop()
            direct.close()
        finally:
            alive.stop()


def test_a_client_transaction_writes_twice_beside_a_branch() -> None:
    """A client's transaction on main writing one collection twice, with a child
    branch to freeze into, commits: its own first write is not taken for another
    proxy's change."""
    with _stack() as (_up, proxy):
        c = _client(proxy)
        c.twice.docs.insert_one({"_id": 0})
        argon(c, "createBranch", name="child")
        with c.start_session() as session:
            session.start_transaction()
            c.twice.docs.insert_one({"_id": 1}, session=session)
            c.twice.docs.update_one({"_id": 0}, {"$set": {"x": 1}}, session=session)
            c.twice.docs.update_one({"_id": 1}, {"$set": {"x": 1}}, session=session)
            session.commit_transaction()
        assert c.twice.docs.count_documents({"x": 1}) == 2
        assert list(c["twice@child"].docs.find()) == [{"_id": 0}]  # the child is isolated
        c.close()
