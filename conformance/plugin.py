"""A pytest plugin for the driver's test process (loaded with ``-p conformance.plugin``).

It does four things, configured through environment variables the runner sets
(the first two only where ``CONFORMANCE_PORTS`` is set, so that importing the
module elsewhere changes nothing):

Loopback only
    Name resolution is refused for every host but ``localhost`` and loopback
    addresses. pymongo's suite resolves a few names of its own test
    infrastructure (``server``, SRV records, cloud endpoints); here those
    lookups fail at once instead of leaving the machine, and the tests that
    need them fail alike in every target.
One server
    Connections to loopback ports other than the target's (``CONFORMANCE_PORTS``)
    are refused as a closed port would refuse them, and connections off the
    machine are refused too. The suite probes neighbouring ports (a second
    mongos on port + 1) and defaults to 27017; on a shared machine those may
    be someone else's servers, which a run must neither use nor disturb.
Time budgets
    pytest-timeout bounds every test (``--timeout``); the tests named in
    ``SLOW_TESTS`` are known to take long even direct and get a larger budget.
    A test that runs out fails with pytest-timeout's message, like any failure.
Outcomes
    Each test's reports (setup, call, subtests, teardown) are appended to the
    JSON-lines file named by ``CONFORMANCE_OUTCOMES`` as they arrive, after a
    line listing every collected test. Written and flushed one at a time, the
    file still tells what finished if the process is killed, and the runner
    counts the collected tests without a report as not run.

It imports only the standard library and pytest: it runs inside the driver's
test process, next to the driver under test.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import socket
from typing import Any, TextIO

import pytest

OUTCOMES_ENV = "CONFORMANCE_OUTCOMES"
SLOW_BUDGET_ENV = "CONFORMANCE_SLOW_TIMEOUT"
PORTS_ENV = "CONFORMANCE_PORTS"

# Tests known to be slow on their own, by function name: test_numerous_inserts
# (in test_collection and test_bulk) inserts 100,000 documents.
SLOW_TESTS = frozenset({"test_numerous_inserts"})

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})

_out: TextIO | None = None


def _is_loopback(host: object) -> bool:
    if host is None:  # a listening socket's wildcard lookup: nothing leaves the machine
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if not isinstance(host, str):
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _refuse(host: object) -> socket.gaierror:
    return socket.gaierror(socket.EAI_NONAME, f"{host!r}: not resolved (loopback only)")


def _guard_resolution() -> None:
    """Make every non-loopback name lookup fail without asking a resolver."""
    real_getaddrinfo = socket.getaddrinfo
    real_gethostbyname = socket.gethostbyname
    real_gethostbyname_ex = socket.gethostbyname_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_loopback(host):
            raise _refuse(host)
        return real_getaddrinfo(host, *args, **kwargs)

    def gethostbyname(host: str) -> str:
        if not _is_loopback(host):
            raise _refuse(host)
        return real_gethostbyname(host)

    def gethostbyname_ex(host: str) -> tuple[str, list[str], list[str]]:
        if not _is_loopback(host):
            raise _refuse(host)
        return real_gethostbyname_ex(host)

    socket.getaddrinfo = getaddrinfo
    socket.gethostbyname = gethostbyname
    socket.gethostbyname_ex = gethostbyname_ex


def _guard_connections(allowed: frozenset[int]) -> None:
    """Refuse connections to anything but ``allowed`` loopback ports (Unix sockets pass)."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def permitted(sock: socket.socket, address: Any) -> bool:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return True
        return _is_loopback(address[0]) and int(address[1]) in allowed

    def connect(self: socket.socket, address: Any) -> None:
        if not permitted(self, address):
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused (conformance)")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not permitted(self, address):
            return errno.ECONNREFUSED
        return real_connect_ex(self, address)

    # setattr: the methods are replaced on the class, for every socket made from now on
    setattr(socket.socket, "connect", connect)  # noqa: B010
    setattr(socket.socket, "connect_ex", connect_ex)  # noqa: B010


# Applied on import, before pytest imports the driver's test package (its
# ClientContext resolves "server" when it is created at import time), and only
# where the runner asked for it: the runner imports this module for its names.
if os.environ.get(PORTS_ENV):
    _guard_resolution()
    _guard_connections(frozenset(int(p) for p in os.environ[PORTS_ENV].split(",")))


def _write(record: dict[str, Any]) -> None:
    if _out is not None:
        _out.write(json.dumps(record) + "\n")
        _out.flush()


def pytest_configure(config: pytest.Config) -> None:
    global _out
    path = os.environ.get(OUTCOMES_ENV)
    if path and _out is None:
        _out = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the whole session


def pytest_unconfigure(config: pytest.Config) -> None:
    global _out
    if _out is not None:
        _out.close()
        _out = None


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    budget = os.environ.get(SLOW_BUDGET_ENV)
    if budget:
        for item in items:
            if getattr(item, "originalname", item.name) in SLOW_TESTS:
                item.add_marker(pytest.mark.timeout(float(budget)))


def pytest_collection_finish(session: pytest.Session) -> None:
    _write({"collected": [item.nodeid for item in session.items]})


def _message(report: pytest.TestReport) -> str:
    """The first line of why a report did not pass ("" if it did)."""
    if report.passed:
        return ""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (path, line, reason)
        text = str(longrepr[2])
    else:
        crash = getattr(longrepr, "reprcrash", None)
        text = str(getattr(crash, "message", "")) if crash is not None else ""
        if not text:
            text = report.longreprtext
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    record: dict[str, Any] = {
        "nodeid": report.nodeid,
        "when": report.when,
        "outcome": report.outcome,
        "duration": round(report.duration, 3),
        "message": _message(report)[:500],
    }
    if hasattr(report, "wasxfail"):
        record["xfail"] = True
    if type(report).__name__ == "SubtestReport":
        record["subtest"] = True
    _write(record)
