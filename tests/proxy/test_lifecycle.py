"""Branch lifecycle and metadata: creation races, catalog reloads, points, identity.

Every test runs against a real SecantusDB and real Argon processes over
loopback sockets, through pymongo. The upstream is shared by the module; each
test uses its own names, and starts (and stops) the proxies it needs.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from argon_proxy.wal import image

from ..processes import Process, start_proxy, start_upstream
from ..stacks import argon

Client = MongoClient[dict[str, Any]]
CREATORS = 10


@pytest.fixture(scope="module")
def upstream() -> Iterator[Process]:
    up = start_upstream()
    yield up
    up.stop()


@contextmanager
def proxy_client(up: Process) -> Iterator[tuple[Process, Client]]:
    """A new proxy on ``up`` and a client of it, both closed on exit."""
    proxy = start_proxy(f"mongodb://127.0.0.1:{up.port}", "--log-level", "WARNING")
    client: Client = MongoClient(proxy.uri, serverSelectionTimeoutMS=20000, maxPoolSize=CREATORS)
    try:
        yield proxy, client
    finally:
        client.close()
        proxy.stop()


def race(clients: list[Client], action: Callable[[Client], Any]) -> list[int]:
    """Run ``action`` ``CREATORS`` times at once, spread over ``clients``.

    Returns the outcome of each call: 0 for ok, else the error code.
    """
    start = threading.Barrier(CREATORS)

    def one(i: int) -> int:
        c = clients[i % len(clients)]
        start.wait(timeout=60)
        try:
            action(c)
        except OperationFailure as exc:
            return int(exc.code or -1)
        return 0

    with ThreadPoolExecutor(CREATORS) as pool:
        return list(pool.map(one, range(CREATORS)))


def warm(clients: list[Client]) -> None:
    """Open enough connections in each client that the racers start together."""
    for c in clients:
        for _ in range(3):
            c.admin.command("ping")


def direct_client(up: Process) -> Client:
    """A client straight to the upstream, past every proxy."""
    return MongoClient(up.uri)


def stored_branch(up: Process, name: str) -> dict[str, Any]:
    with direct_client(up) as direct:
        found = direct["__argon"].branches.find_one({"_id": name})
    assert found is not None
    return found


def check_one_winner(outcomes: list[int], loser_code: int) -> None:
    assert outcomes.count(0) == 1, outcomes
    assert sorted(set(outcomes) - {0}) == [loser_code], outcomes


@pytest.mark.parametrize("proxies", [1, 2])
def test_concurrent_create_branch_has_one_winner_and_keeps_its_writes(
    upstream: Process, proxies: int
) -> None:
    name = f"race{proxies}"
    with proxy_client(upstream) as (_pa, ca), proxy_client(upstream) as (_pb, cb):
        clients = [ca, cb][:proxies]
        warm(clients)
        outcomes = race(clients, lambda c: argon(c, "createBranch", name=name))
        check_one_winner(outcomes, 2002)  # BranchExists
        stored_id = stored_branch(upstream, name)["id"]
        for c in clients:  # every proxy agrees with the stored branch
            db = c[f"life@{name}"]
            db.items.insert_one({"_id": f"from-{clients.index(c)}"})
    # After a restart every acknowledged write is there, and nothing moved.
    with proxy_client(upstream) as (_p, c):
        got = sorted(d["_id"] for d in c[f"life@{name}"].items.find())
        assert got == [f"from-{i}" for i in range(proxies)]
    assert stored_branch(upstream, name)["id"] == stored_id


def test_concurrent_create_tag_and_project_have_one_winner(upstream: Process) -> None:
    with proxy_client(upstream) as (_pa, ca), proxy_client(upstream) as (_pb, cb):
        warm([ca, cb])
        ca.tagdb.items.insert_one({"_id": 1})
        tags = race([ca, cb], lambda c: argon(c, "createTag", name="race-tag", branch="main"))
        check_one_winner(tags, 2014)  # TagExists
        made = race([ca, cb], lambda c: argon(c, "createProject", name="race-project"))
        check_one_winner(made, 2017)  # ProjectExists


def reload_catalog(how: str, up: Process, proxy: Process, c: Client) -> tuple[Process, Client]:
    """Make the proxy read its catalog back from the upstream, as ``how`` does."""
    if how == "list":
        argon(c, "listBranches")
    elif how == "gc":
        argon(c, "gc", dryRun=True)
    else:  # a restart
        c.close()
        proxy.stop()
        proxy = start_proxy(f"mongodb://127.0.0.1:{up.port}", "--log-level", "WARNING")
        c = MongoClient(proxy.uri, serverSelectionTimeoutMS=20000)
    return proxy, c


@pytest.mark.parametrize("how", ["list", "gc", "restart", "legacy"])
def test_merge_after_catalog_reload_when_main_created_a_collection(
    upstream: Process, how: str
) -> None:
    db, name = f"reload_{how}", f"rl-{how}"
    proxy = start_proxy(f"mongodb://127.0.0.1:{upstream.port}", "--log-level", "WARNING")
    c: Client = MongoClient(proxy.uri, serverSelectionTimeoutMS=20000)
    try:
        c[db].kept.insert_one({"_id": 1, "v": "main"})
        argon(c, "createBranch", name=name)
        c[db].fresh.insert_one({"_id": 1, "v": "main only"})  # new while the branch lives
        c[f"{db}@{name}"].kept.update_one({"_id": 1}, {"$set": {"v": "branch"}})
        if how == "legacy":  # overlay entries stored before the 'dropped' flag was
            with direct_client(upstream) as direct:
                direct["__argon"].overlays.update_many({}, {"$unset": {"dropped": ""}})
        proxy, c = reload_catalog("restart" if how == "legacy" else how, upstream, proxy, c)
        assert c[f"{db}@{name}"].list_collection_names() == ["kept"]
        argon(c, "merge", source=name, into="main")
        assert c[db].kept.find_one({"_id": 1}) == {"_id": 1, "v": "branch"}
        assert c[db].fresh.find_one({"_id": 1}) == {"_id": 1, "v": "main only"}
    finally:
        c.close()
        proxy.stop()


def test_a_real_drop_survives_a_restart(upstream: Process) -> None:
    proxy = start_proxy(f"mongodb://127.0.0.1:{upstream.port}", "--log-level", "WARNING")
    c: Client = MongoClient(proxy.uri, serverSelectionTimeoutMS=20000)
    try:
        c.realdrop.gone.insert_one({"_id": 1})
        argon(c, "createBranch", name="rd")
        c["realdrop@rd"].gone.drop()
        proxy, c = reload_catalog("restart", upstream, proxy, c)
        assert c["realdrop@rd"].list_collection_names() == []
        with pytest.raises(OperationFailure) as err:
            argon(c, "merge", source="rd", into="main")
        assert err.value.code == 115 and "dropped collection realdrop.gone" in str(err.value)
    finally:
        c.close()
        proxy.stop()


def test_points_not_yet_in_the_past_are_refused(upstream: Process) -> None:
    with proxy_client(upstream) as (_p, c):
        c.future.items.insert_one({"_id": 1, "v": 0})
        head = int(argon(c, "status")["lsn"])
        ahead = head + 3
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        attempts: list[Callable[[], Any]] = [
            lambda: argon(c, "createBranch", name="fut-lsn", lsn=ahead + 1000),
            lambda: argon(c, "createBranch", name="fut-time", time=later),
            lambda: argon(c, "createBranch", name="fut-from", **{"from": f"main@lsn-{ahead}"}),
            lambda: argon(c, "createTag", name="fut-tag", branch="main", lsn=ahead),
            lambda: argon(c, "resetBranch", name="main", lsn=ahead),
            lambda: argon(c, "diff", **{"from": "main", "to": f"main@lsn-{ahead}"}),
            lambda: c[f"future@main@lsn-{ahead}"].items.find_one({"_id": 1}),
            lambda: c[f"future@main@{later:%Y-%m-%dT%H:%M:%SZ}"].items.find_one({"_id": 1}),
        ]
        for attempt in attempts:
            with pytest.raises(OperationFailure) as err:
                attempt()
            assert err.value.code == 2005, err.value
            assert f"current LSN {head}" in str(err.value), err.value
        names = [b["name"] for b in argon(c, "listBranches", all=True)["branches"]]
        assert not [n for n in names if n.startswith("fut-") or "@" in n]
        # Once main has passed the point, it reads as it was there.
        for v in range(1, 6):
            c.future.items.update_one({"_id": 1}, {"$set": {"v": v}})
        assert c[f"future@main@lsn-{ahead}"].items.find_one({"_id": 1}) == {"_id": 1, "v": 3}


def history_of(c: Client, branch: str) -> tuple[list[int], int, dict[str, Any]]:
    """``log`` LSNs, ``stats.changes`` and ``blame`` rows (by path) of doc 1 on ``branch``."""
    log = [e["lsn"] for e in argon(c, "log", branch=branch)["entries"]]
    changes = int(argon(c, "getBranch", name=branch)["branch"]["stats"]["changes"])
    blame = argon(c, "blame", branch=branch, db="ident", collection="items", docId=1)
    return log, changes, {row["path"]: row for row in blame["fields"]}


def test_history_follows_the_branch_not_its_name(upstream: Process) -> None:
    proxy = start_proxy(f"mongodb://127.0.0.1:{upstream.port}", "--log-level", "WARNING")
    c: Client = MongoClient(proxy.uri, serverSelectionTimeoutMS=20000)
    try:
        c.ident.items.insert_one({"_id": 1, "a": 0})
        fork = int(argon(c, "status")["lsn"])
        argon(c, "createBranch", name="again")
        c["ident@again"].items.update_one({"_id": 1}, {"$set": {"a": "old"}})
        c["ident@again"].items.insert_one({"_id": 2})
        argon(c, "deleteBranch", name="again")
        # The same name again, from the same point: a new branch with no history.
        argon(c, "createBranch", name="again", lsn=fork)
        log, changes, blame = history_of(c, "again")
        assert (log, changes) == ([], 0)
        assert blame["a"]["lsn"] == fork and blame["a"]["branch"] == "main"
        c["ident@again"].items.update_one({"_id": 1}, {"$set": {"a": "new"}})
        log, changes, blame = history_of(c, "again")
        assert len(log) == 1 and changes == 1 and blame["a"]["lsn"] == log[0]

        # Entries stored before they carried the branch id are adopted on start-up
        # by the branch of their name that existed when they were written.
        with direct_client(upstream) as direct:
            meta = direct["__argon"]
            # Such entries named their branch (main, or one of the two "again").
            meta.wal.update_many({"branch_id": "main"}, {"$set": {"branch": "main"}})
            meta.wal.update_many({"branch_id": {"$ne": "main"}}, {"$set": {"branch": "again"}})
            meta.wal.update_many({}, {"$unset": {"branch_id": ""}})
            meta.index_log.update_many({}, {"$unset": {"branch_id": ""}})
            meta.settings.delete_one({"_id": "entries_have_branch_ids"})
        proxy, c = reload_catalog("restart", upstream, proxy, c)
        assert history_of(c, "again") == (log, changes, blame)
        assert int(argon(c, "getBranch", name="main")["branch"]["stats"]["changes"]) >= 1
    finally:
        c.close()
        proxy.stop()


def stored_snapshots(up: Process) -> list[str]:
    """The hidden time-travel snapshots stored in the upstream."""
    with direct_client(up) as direct:
        names = [d["_id"] for d in direct["__argon"].branches.find({}, {"_id": 1})]
    return sorted(n for n in names if "@" in n)


def test_time_travel_snapshots_are_reused_bounded_and_collected(upstream: Process) -> None:
    env = {"ARGON_SNAPSHOTS_KEPT": "3", "ARGON_SNAPSHOT_GRACE": "0"}
    proxy = start_proxy(f"mongodb://127.0.0.1:{upstream.port}", "--log-level", "WARNING", env=env)
    c: Client = MongoClient(proxy.uri, serverSelectionTimeoutMS=20000)
    try:
        real = int(argon(c, "status")["branches"])
        before = stored_snapshots(upstream)
        c.tt.items.insert_one({"_id": 1, "v": 0})
        states = [int(argon(c, "status")["lsn"])]
        argon(c, "createBranch", name="tt-side")
        for i in range(4):  # other branches' writes do not change main's state
            c["tt@tt-side"].items.insert_one({"_id": 100 + i})
        quiet = int(argon(c, "status")["lsn"])
        for lsn in range(states[0], quiet + 1):
            assert c[f"tt@main@lsn-{lsn}"].items.find_one({"_id": 1}) == {"_id": 1, "v": 0}
        assert len(stored_snapshots(upstream)) - len(before) <= 1
        assert int(argon(c, "status")["branches"]) == real + 1  # tt-side only

        for v in range(1, 7):  # six more states of main: only three snapshots stay
            c.tt.items.update_one({"_id": 1}, {"$set": {"v": v}})
            states.append(int(argon(c, "status")["lsn"]))
        for rounds in range(2):  # evicted ones are rebuilt, right, when read again
            for v, lsn in enumerate(states):
                got = c[f"tt@main@lsn-{lsn}"].items.find_one({"_id": 1})
                assert got == {"_id": 1, "v": v}, (rounds, lsn, got)
            assert len(stored_snapshots(upstream)) <= 3
        names = [b["name"] for b in argon(c, "listBranches")["branches"]]
        assert not [n for n in names if "@" in n]
        assert int(argon(c, "status")["branches"]) == real + 1

        out = argon(c, "gc", snapshotSeconds=0)["gc"]
        assert out["snapshots_removed"] and stored_snapshots(upstream) == []
    finally:
        c.close()
        proxy.stop()


def test_concurrent_reads_of_a_new_point_share_one_snapshot(upstream: Process) -> None:
    with proxy_client(upstream) as (_pa, ca), proxy_client(upstream) as (_pb, cb):
        warm([ca, cb])
        ca.shared.items.insert_many([{"_id": i, "v": 0} for i in range(5)])
        point = int(argon(ca, "status")["lsn"])
        ca.shared.items.update_many({}, {"$set": {"v": 1}})
        seen: list[list[dict[str, Any]]] = []

        def read(c: Client) -> None:
            seen.append(list(c[f"shared@main@lsn-{point}"].items.find({}, sort=[("_id", 1)])))

        assert race([ca, cb], read) == [0] * CREATORS
        assert seen == [[{"_id": i, "v": 0} for i in range(5)]] * CREATORS
        assert f"main@lsn-{point}" in stored_snapshots(upstream)
        with direct_client(upstream) as direct:
            meta = direct["__argon"]
            ids = {b["id"] for b in meta.branches.find()}
            orphans = [o["_id"] for o in meta.overlays.find() if o["branch_id"] not in ids]
            assert orphans == []


def test_a_branch_forked_under_concurrent_writes_shows_its_fork_point(upstream: Process) -> None:
    forks = 12
    with proxy_client(upstream) as (_p, c):
        c.forked.items.insert_many([{"_id": i, "n": 0} for i in range(4)])
        stop = threading.Event()

        def write() -> int:
            n = 0
            while not stop.is_set() and n < 5000:
                n += 1
                c.forked.items.update_one({"_id": n % 4}, {"$set": {"n": n}})
            return n

        with ThreadPoolExecutor(2) as pool:
            writers = [pool.submit(write) for _ in range(2)]
            try:
                for i in range(forks):
                    argon(c, "createBranch", name=f"forked-{i}")
            finally:
                stop.set()
            assert all(w.result() > 0 for w in writers)
        with direct_client(upstream) as direct:
            wal = list(direct["__argon"].wal.find({"branch_id": "main", "ns": "forked.items"}))
        for i in range(forks):
            base = int(argon(c, "getBranch", name=f"forked-{i}")["branch"]["base_lsn"])
            expected = {}
            for entry in sorted(wal, key=lambda e: int(e["_id"])):
                if int(entry["_id"]) <= base:
                    expected[entry["doc_id"]] = image(entry, "post")
            got = {d["_id"]: d for d in c[f"forked@forked-{i}"].items.find()}
            assert got == expected, (i, base)


def test_reads_at_the_newest_point_under_concurrent_writes(upstream: Process) -> None:
    reads = 12
    with proxy_client(upstream) as (_p, c):
        c.settled.items.insert_many([{"_id": i, "n": 0} for i in range(4)])
        stop = threading.Event()

        def write() -> None:
            n = 0
            while not stop.is_set() and n < 5000:
                n += 1
                c.settled.items.update_one({"_id": n % 4}, {"$set": {"n": n}})

        seen: list[tuple[int, dict[Any, Any]]] = []
        with ThreadPoolExecutor(2) as pool:
            writers = [pool.submit(write) for _ in range(2)]
            try:
                for _ in range(reads):
                    lsn = int(argon(c, "status")["lsn"])
                    docs = c[f"settled@main@lsn-{lsn}"].items.find()
                    seen.append((lsn, {d["_id"]: d for d in docs}))
            finally:
                stop.set()
            for w in writers:
                w.result()
        with direct_client(upstream) as direct:
            wal = list(direct["__argon"].wal.find({"branch_id": "main", "ns": "settled.items"}))
        wal.sort(key=lambda e: int(e["_id"]))
        for lsn, got in seen:
            expected = {e["doc_id"]: image(e, "post") for e in wal if int(e["_id"]) <= lsn}
            assert got == expected, lsn
