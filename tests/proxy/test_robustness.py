"""Bad input, limits, outages and shutdown: Argon stays up and says what happened."""

from __future__ import annotations

import json
import signal
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import bson
import pytest
from pymongo import MongoClient
from pymongo.errors import AutoReconnect, NetworkTimeout, OperationFailure, PyMongoError

from ..processes import Process, free_port, start_upstream

Client = MongoClient[dict[str, object]]


def _op_msg(command: dict[str, object], request_id: int = 1) -> bytes:
    body = bson.encode(command)
    payload = struct.pack("<I", 0) + b"\x00" + body
    return struct.pack("<iiii", 16 + len(payload), request_id, 0, 2013) + payload


def _read_reply(sock: socket.socket) -> dict[str, object]:
    header = _recv_exact(sock, 16)
    length = struct.unpack("<i", header[:4])[0]
    payload = _recv_exact(sock, length - 16)
    return bson.decode(payload[5:])


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def _closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_raw_socket_ping(proxy: Process) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(_op_msg({"ping": 1, "$db": "admin"}))
        assert _read_reply(sock)["ok"] == 1.0


@pytest.mark.parametrize(
    "garbage",
    [
        struct.pack("<iiii", 8, 1, 0, 2013),  # length shorter than a header
        struct.pack("<iiii", 60_000_000, 1, 0, 2013),  # over 48 MB
        struct.pack("<iiii", 26, 1, 0, 9999) + b"\x00" * 10,  # unknown opcode
        struct.pack("<iiii", 26, 1, 0, 2013) + b"\x00\x00\x00\x00\x00" + b"\x05\x00\x00\x00\x01",
    ],
    ids=["short-length", "oversize", "unknown-opcode", "invalid-bson"],
)
def test_malformed_frame_closes_only_that_connection(proxy: Process, garbage: bytes) -> None:
    c: Client = MongoClient(proxy.uri)
    try:
        c.admin.command("ping")
        with socket.create_connection(("127.0.0.1", proxy.port)) as bad:
            bad.sendall(garbage)
            assert _closed_by_peer(bad, 5)
        assert c.admin.command("ping")["ok"] == 1.0  # the other client is undisturbed
    finally:
        c.close()
    assert proxy.proc.poll() is None


def test_partial_frame_times_out(proxy_factory: Callable[..., Process]) -> None:
    proxy = proxy_factory(ARGON_FRAME_TIMEOUT="1")
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(_op_msg({"ping": 1, "$db": "admin"})[:10])
        assert _closed_by_peer(sock, 60)  # generous: the log says why it closed
    assert "partial frame" in proxy.log()


def test_connection_limit_gives_a_clear_error(proxy_factory: Callable[..., Process]) -> None:
    proxy = proxy_factory("--max-connections", "2")
    holders = [socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(2)]
    try:
        for h in holders:  # an answered ping: the proxy has counted this connection
            h.sendall(_op_msg({"ping": 1, "$db": "admin"}))
            assert _read_reply(h)["ok"] == 1.0
        with socket.create_connection(("127.0.0.1", proxy.port)) as extra:
            extra.sendall(_op_msg({"ping": 1, "$db": "admin"}))
            reply = _read_reply(extra)
            assert reply["ok"] == 0.0
            assert "limit of 2 client connections" in str(reply["errmsg"])
    finally:
        for h in holders:
            h.close()
    # The proxy frees the slots once it sees the closes; the client retries until then.
    c: Client = MongoClient(proxy.uri, serverSelectionTimeoutMS=60000)
    try:
        assert c.admin.command("ping")["ok"] == 1.0  # room again once others left
    finally:
        c.close()


def test_upstream_outage_is_reported_promptly_and_recovered(
    proxy_factory: Callable[..., Process],
) -> None:
    up_port = free_port()
    up = start_upstream(up_port)
    proxy = proxy_factory(upstream_uri=f"mongodb://127.0.0.1:{up_port}")
    # A proxy that hung would end in the client's own socket timeout (NetworkTimeout):
    # the answer must come from the proxy instead, whatever the machine's load.
    c: Client = MongoClient(
        proxy.uri, serverSelectionTimeoutMS=3000, socketTimeoutMS=60000, retryReads=False
    )
    try:
        c.outage_db.t.insert_one({"x": 1})
        up.stop(signal.SIGKILL)
        with pytest.raises((OperationFailure, AutoReconnect)) as info:
            c.outage_db.t.find_one()
        assert not isinstance(info.value, NetworkTimeout), info.value
        assert "upstream" in str(info.value).lower()
        health = _healthz(proxy)
        up = start_upstream(up_port)
        deadline = time.monotonic() + 20
        while True:
            try:
                c.outage_db.t.insert_one({"x": 2})
                break
            except PyMongoError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert health[0] in {200, 503}
    finally:
        c.close()
        up.stop()


def _healthz(proxy: Process) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{proxy.extra['metrics']}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _bytes_received(proxy: Process) -> float:
    url = f"http://127.0.0.1:{proxy.extra['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=30) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith("argon_bytes_received_total "):
            return float(line.split()[1])
    raise AssertionError("argon_bytes_received_total is missing from /metrics")


def test_healthz_and_metrics(proxy: Process) -> None:
    c: Client = MongoClient(proxy.uri)
    try:
        c.metrics_db.t.insert_one({"a": 1})
    finally:
        c.close()
    deadline = time.monotonic() + 60  # a bound, not an expectation: checks run every 5 s
    status, body = _healthz(proxy)
    while status != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
        status, body = _healthz(proxy)
    assert status == 200 and body["upstream_ok"] is True
    url = f"http://127.0.0.1:{proxy.extra['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    assert 'argon_requests_total{branch="main",command="insert"}' in text
    assert "argon_request_duration_seconds_bucket" in text
    assert "argon_client_connections" in text
    assert "argon_upstream_pool_in_use" in text
    assert "argon_bytes_received_total" in text


def test_graceful_shutdown_drains_in_flight_request(proxy_factory: Callable[..., Process]) -> None:
    proxy = proxy_factory()
    # No monitoring traffic: the only bytes this client sends next are the getMore.
    c: Client = MongoClient(proxy.uri, heartbeatFrequencyMS=3_600_000)
    coll = c.drain_db.t
    coll.insert_one({"x": 1})
    result: dict[str, object] = {}
    with coll.watch(max_await_time_ms=3000) as stream:

        def in_flight() -> None:
            try:
                result["change"] = stream.try_next()  # a getMore the upstream holds ~3 s
            except PyMongoError as exc:
                result["error"] = exc

        received = _bytes_received(proxy)
        t = threading.Thread(target=in_flight)
        t.start()
        deadline = time.monotonic() + 60
        while _bytes_received(proxy) == received and time.monotonic() < deadline:
            time.sleep(0.05)  # until the proxy has the getMore: then it is in flight
        proxy.proc.send_signal(signal.SIGTERM)
        t.join(60)
    # Cut short, the getMore would have failed; drained, it ran to its end.
    assert result == {"change": None}, result
    assert proxy.proc.wait(20) == 0
    assert "draining" in proxy.log()
    c.close()
