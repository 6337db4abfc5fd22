"""Network faults: slow and idle clients, a frozen, restarted or dying upstream.

Every test starts its own processes on loopback, bounds its own waits (socket
timeouts, thread joins, loop counts) and stops what it started.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import socket
import struct
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError

from ..processes import Process, free_port, start_proxy, start_upstream
from ..rawwire import closed_by_peer, op_msg, read_reply
from ..stacks import argon

Client = MongoClient[dict[str, Any]]


def _client(proxy: Process, **options: Any) -> Client:
    options.setdefault("serverSelectionTimeoutMS", 10000)
    return MongoClient(proxy.uri, **options)


@contextmanager
def _stack(*args: str, storage: str = ":memory:", **env: str) -> Iterator[tuple[Process, Process]]:
    """A private upstream on a fixed port and a proxy with ``args``/``env``."""
    up = start_upstream(free_port(), storage)
    try:
        proxy = start_proxy(f"mongodb://127.0.0.1:{up.port}", *args, env=env)
        try:
            yield up, proxy
        finally:
            proxy.stop()
    finally:
        up.thaw()
        up.stop()


# -- slow and idle clients ------------------------------------------------------


def test_trickled_frame_is_dropped_at_its_first_byte_deadline(
    proxy_factory: Callable[..., Process],
) -> None:
    """One byte every 0.3 s must not keep a 2 s frame deadline alive."""
    proxy = proxy_factory(ARGON_FRAME_TIMEOUT="2")
    frame = op_msg({"ping": 1, "$db": "admin", "pad": "x" * 200})
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        closed = False
        for i in range(40):  # 12 s of trickle, far past the deadline
            try:
                sock.sendall(frame[i : i + 1])
            except OSError:
                closed = True
                break
            if closed_by_peer(sock, 0.3):
                closed = True
                break
        assert closed, "a trickling client kept its partial frame past frame_timeout"
    assert "frame_timeout" in proxy.log()


def test_partial_frames_share_one_byte_budget(proxy_factory: Callable[..., Process]) -> None:
    """Incomplete frames of all clients together stay under max_partial_bytes."""
    proxy = proxy_factory(ARGON_MAX_PARTIAL_BYTES=str(1_000_000), ARGON_FRAME_TIMEOUT="60")
    big = 4_000_000
    header = struct.pack("<iiii", big, 1, 0, 2013)
    chunk = b"\x00" * 400_000
    socks = [socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(4)]
    try:
        closed = []
        for sock in socks:
            try:
                sock.sendall(header + chunk)
            except OSError:
                closed.append(sock)
                continue
            time.sleep(0.3)
            if closed_by_peer(sock, 1.0):
                closed.append(sock)
        # 400 KB each: two fit in 1 MB, the third and fourth would go over.
        assert socks[0] not in closed and socks[1] not in closed
        assert socks[2] in closed and socks[3] in closed
        c = _client(proxy)
        try:
            assert c.admin.command("ping")["ok"] == 1.0  # small requests still served
        finally:
            c.close()
    finally:
        for sock in socks:
            sock.close()
    assert "max_partial_bytes" in proxy.log()


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_many_large_partial_frames_stay_within_the_memory_budget(
    proxy_factory: Callable[..., Process],
) -> None:
    """Eight clients each holding most of a 40 MiB message cost the budget, not 320 MiB."""
    budget = 64 << 20
    proxy = proxy_factory(ARGON_MAX_PARTIAL_BYTES=str(budget), ARGON_FRAME_TIMEOUT="120")
    baseline = _rss_bytes(proxy.proc.pid)
    size = 40 << 20
    chunk = b"\x00" * (1 << 20)
    socks = [socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(8)]
    try:
        for sock in socks:
            sock.settimeout(10)
            try:
                sock.sendall(struct.pack("<iiii", size, 1, 0, 2013))
                for _ in range(30):  # 30 MiB of the 40 MiB message
                    sock.sendall(chunk)
            except OSError:
                continue  # disconnected for going over the budget
        time.sleep(1.0)  # let the proxy read what the kernel still holds
        grown = _rss_bytes(proxy.proc.pid) - baseline
        assert grown < budget + (48 << 20), f"proxy grew by {grown >> 20} MiB"
        c = _client(proxy)
        try:
            assert c.admin.command("ping")["ok"] == 1.0
        finally:
            c.close()
    finally:
        for sock in socks:
            sock.close()
    assert "max_partial_bytes" in proxy.log()


def test_budget_is_given_back_when_a_frame_completes(
    proxy_factory: Callable[..., Process],
) -> None:
    """Whole frames leave the budget: many large requests in turn all succeed."""
    proxy = proxy_factory(ARGON_MAX_PARTIAL_BYTES=str(1_500_000))
    c = _client(proxy)
    try:
        for i in range(5):  # each message about 1 MB, one at a time
            c.budget_db.t.insert_one({"_id": i, "blob": "x" * 1_000_000})
        assert c.budget_db.t.count_documents({}) == 5
    finally:
        c.close()


def test_idle_timeout_closes_idle_clients_and_drivers_carry_on(
    proxy_factory: Callable[..., Process],
) -> None:
    proxy = proxy_factory(ARGON_IDLE_TIMEOUT="1")
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(op_msg({"ping": 1, "$db": "admin"}))
        assert read_reply(sock)["ok"] == 1.0
        assert closed_by_peer(sock, 15), "an idle client was never closed"
    c = _client(proxy)
    try:
        assert c.admin.command("ping")["ok"] == 1.0
        time.sleep(2.5)  # the driver's pooled connection is closed meanwhile
        assert c.admin.command("ping")["ok"] == 1.0
    finally:
        c.close()
    assert "idle_timeout" in proxy.log()


def test_connection_limit_refusal_says_how_to_raise_it(
    proxy_factory: Callable[..., Process],
) -> None:
    proxy = proxy_factory("--max-connections", "1")
    holder = socket.create_connection(("127.0.0.1", proxy.port))
    for _ in range(20):  # the start-up probe's connection may still count for a moment
        holder.sendall(op_msg({"ping": 1, "$db": "admin"}))
        if read_reply(holder)["ok"] == 1.0:
            break
        holder.close()
        time.sleep(0.2)
        holder = socket.create_connection(("127.0.0.1", proxy.port))
    try:
        with socket.create_connection(("127.0.0.1", proxy.port)) as extra:
            extra.sendall(op_msg({"ping": 1, "$db": "admin"}))
            errmsg = str(read_reply(extra)["errmsg"])
        assert "--max-connections" in errmsg and "ARGON_MAX_CONNECTIONS" in errmsg
        assert "idle_timeout" in errmsg
    finally:
        holder.close()


# -- a frozen upstream ----------------------------------------------------------


def _expect_network_error(
    action: Callable[[], object], *, codes: tuple[int, ...], label: str | None
) -> OperationFailure:
    with pytest.raises(OperationFailure) as info:
        action()
    assert info.value.code in codes, info.value.details
    if label is not None:
        assert info.value.has_error_label(label), info.value.details
    return info.value


def _healthz_while(proxy: Process, wanted: int, timeout: float = 30.0) -> bool:
    """Whether /healthz answers ``wanted`` within ``timeout`` (it is checked every 5 s)."""
    url = f"http://127.0.0.1:{proxy.extra['metrics']}/healthz"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        if status == wanted:
            return True
        time.sleep(0.5)
    return False


def test_background_tasks_outlive_a_frozen_upstream() -> None:
    """The heartbeat, health check and catalog follower time out against a frozen
    upstream like any request; none of that may stop the proxy."""
    with _stack(ARGON_UPSTREAM_TIMEOUT="1") as (up, proxy):
        c = _client(proxy, socketTimeoutMS=40000)
        try:
            c.bg.t.insert_one({"_id": 0})
            up.freeze()
            try:
                # Long enough for every background task to run into the timeout
                # (heartbeats come every 5 s): a wait for time to pass, not a bound.
                time.sleep(12)
                assert proxy.proc.poll() is None, proxy.log()[-2000:]
            finally:
                up.thaw()
            assert proxy.proc.poll() is None, proxy.log()[-2000:]
            deadline = time.monotonic() + 60
            while True:
                try:
                    assert c.bg.t.find_one({"_id": 0}) == {"_id": 0}
                    break
                except PyMongoError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        finally:
            c.close()


def test_frozen_upstream_gives_a_retryable_network_error() -> None:
    with _stack(ARGON_UPSTREAM_TIMEOUT="2") as (up, proxy):
        # A hang shows up as the driver's own socket timeout, which fails the test.
        c = _client(proxy, socketTimeoutMS=40000, retryWrites=False, retryReads=False)
        try:
            c.frozen.t.insert_one({"_id": 0})
            argon(c, "createBranch", name="frozen-b")
            c["frozen@frozen-b"].t.insert_one({"_id": 1})
            up.freeze()
            try:
                # Its pooled sockets stay open: only a ping tells it does not answer.
                assert _healthz_while(proxy, 503), "/healthz kept saying ok while frozen"
                _expect_network_error(
                    lambda: c.frozen.t.insert_one({"_id": 2}),
                    codes=(6, 89),
                    label="RetryableWriteError",
                )
                _expect_network_error(
                    lambda: c["frozen@frozen-b"].t.insert_one({"_id": 3}),
                    codes=(6, 89),
                    label="RetryableWriteError",
                )
                _expect_network_error(lambda: c.frozen.t.find_one(), codes=(6, 89), label=None)
            finally:
                up.thaw()
            deadline = time.monotonic() + 30
            while True:  # served again once the upstream answers
                try:
                    c.frozen.t.insert_one({"_id": 4})
                    break
                except PyMongoError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            assert c.frozen.t.find_one({"_id": 4}) == {"_id": 4}
        finally:
            c.close()
    assert "Traceback" not in proxy.log()


def test_await_data_waits_are_not_cut_by_the_upstream_timeout(
    proxy_factory: Callable[..., Process],
) -> None:
    """A change stream's getMore waits maxAwaitTimeMS by design, past upstream_timeout."""
    proxy = proxy_factory(ARGON_UPSTREAM_TIMEOUT="1")
    c = _client(proxy, socketTimeoutMS=30000)
    try:
        c.await_db.t.insert_one({"x": 1})
        with c.await_db.t.watch(max_await_time_ms=2500) as stream:
            assert stream.try_next() is None  # no change, no error
        assert c.await_db.t.find_one({}, {"_id": 0}, max_time_ms=5000) == {"x": 1}
    finally:
        c.close()


# -- a restarted upstream: stale pooled connections -------------------------------


def _parallel(action: Callable[[int], object], n: int) -> list[BaseException]:
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            action(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a request hung"
    return errors


def test_connections_the_upstream_closed_are_not_reused() -> None:
    storage = tempfile.mkdtemp(prefix="secantus-stale-")
    with _stack(storage=storage) as (up, proxy):
        c = _client(proxy, retryWrites=False, retryReads=False, maxPoolSize=16)
        try:
            c.stale.t.insert_many([{"_id": i} for i in range(8)])
            # Fill Argon's pool with several idle upstream connections.
            assert not _parallel(lambda i: c.stale.t.find_one({"_id": i}), 8)
            up.stop()
            restarted = start_upstream(up.port, storage)
            up.proc = restarted.proc
            for i in range(8):  # each would land on a dead pooled connection
                assert c.stale.t.find_one({"_id": i}) == {"_id": i}
            assert not _parallel(lambda i: c.stale.t.insert_one({"_id": 100 + i}), 8)
            assert c.stale.t.count_documents({}) == 16
        finally:
            c.close()


# -- an upstream dying mid-request ----------------------------------------------


def test_upstream_dying_mid_request_gives_a_retryable_network_error() -> None:
    with _stack() as (up, proxy):
        c = _client(proxy, socketTimeoutMS=40000, retryWrites=False, retryReads=False)
        try:
            c.dying.t.insert_one({"_id": 0})
            argon(c, "createBranch", name="dying-b")
            c["dying@dying-b"].t.insert_one({"_id": 1})
            # Several pooled upstream connections, so the requests below are sent
            # (not refused at connect) before the upstream dies.
            assert not _parallel(lambda i: c.dying.t.find_one({"_id": i}), 8)
            results: dict[str, BaseException | None] = {}

            def attempt(key: str, action: Callable[[], object]) -> None:
                try:
                    action()
                    results[key] = None
                except BaseException as exc:
                    results[key] = exc

            up.freeze()  # requests in flight while it dies
            threads = [
                threading.Thread(
                    target=attempt, args=("main", lambda: c.dying.t.insert_one({"_id": 2}))
                ),
                threading.Thread(
                    target=attempt,
                    args=("branch", lambda: c["dying@dying-b"].t.insert_one({"_id": 3})),
                ),
                threading.Thread(target=attempt, args=("read", lambda: c.dying.t.find_one())),
            ]
            for t in threads:
                t.start()
            time.sleep(1.5)
            up.proc.send_signal(signal.SIGKILL)
            for t in threads:
                t.join(60)
            assert not any(t.is_alive() for t in threads), "a request hung"
        finally:
            c.close()
    for key in ("main", "branch", "read"):
        exc = results[key]
        assert isinstance(exc, OperationFailure), (key, exc)
        assert exc.code == 6, (key, exc.details)
        if key != "read":
            assert exc.has_error_label("RetryableWriteError"), (key, exc.details)
    assert "internal error" not in proxy.log()


def test_frozen_upstream_inside_a_client_transaction_is_transient() -> None:
    """Drivers retry a whole transaction on TransientTransactionError."""
    with _stack(ARGON_UPSTREAM_TIMEOUT="2") as (up, proxy):
        c = _client(proxy, socketTimeoutMS=40000, retryWrites=False, retryReads=False)
        try:
            c.txn_db.t.insert_one({"_id": 0})
            with c.start_session() as session:
                session.start_transaction()
                c.txn_db.t.insert_one({"_id": 1}, session=session)  # joined by the engine
                assert c.txn_db.t.find_one({"_id": 1}, session=session) == {"_id": 1}
                up.freeze()
                try:
                    _expect_network_error(
                        lambda: c.txn_db.t.insert_one({"_id": 2}, session=session),
                        codes=(6, 89),
                        label="TransientTransactionError",
                    )
                    _expect_network_error(
                        lambda: c.txn_db.t.find_one({"_id": 0}, session=session),
                        codes=(6, 89),
                        label="TransientTransactionError",
                    )
                finally:
                    up.thaw()
                with contextlib.suppress(PyMongoError):  # the upstream may have aborted it
                    session.abort_transaction()
            deadline = time.monotonic() + 30
            while True:
                try:
                    c.txn_db.t.insert_one({"_id": 3})
                    break
                except PyMongoError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            assert c.txn_db.t.find_one({"_id": 1}) is None  # never committed
        finally:
            c.close()


def test_upstream_gone_inside_a_client_transaction_is_transient() -> None:
    """Whether the pinned connection breaks or no new one can be made, drivers may retry."""
    with _stack() as (up, proxy):
        c = _client(proxy, socketTimeoutMS=40000, retryWrites=False, retryReads=False)
        try:
            with c.start_session() as session:
                session.start_transaction()
                c.gone_db.t.insert_one({"_id": 1}, session=session)
                up.proc.send_signal(signal.SIGKILL)
                up.proc.wait(10)

                def insert(_id: int) -> object:
                    return c.gone_db.t.insert_one({"_id": _id}, session=session)

                for _id in (2, 3):  # the pinned connection breaks, then none can be made
                    _expect_network_error(
                        functools.partial(insert, _id),
                        codes=(6,),
                        label="TransientTransactionError",
                    )
                _expect_network_error(
                    lambda: c.gone_db.t.find_one({}, session=session),
                    codes=(6,),
                    label="TransientTransactionError",
                )
        finally:
            c.close()
