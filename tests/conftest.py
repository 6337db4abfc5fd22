"""Shared fixtures: one SecantusDB and one Argon for the session, factories for more."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, settings
from pymongo import MongoClient

from .processes import Process, start_proxy, start_upstream

# Tests share two cores with other work: no example deadline and no health check
# (too slow, too much filtered data) may fail a run; tests that set their own
# settings inherit these.
settings.register_profile("argon", deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile("argon")


@pytest.fixture(scope="session")
def upstream() -> Iterator[Process]:
    proc = start_upstream()
    yield proc
    proc.stop()


@pytest.fixture
def own_upstream() -> Iterator[Process]:
    """A SecantusDB for this test alone (tests that freeze it, or count its sessions)."""
    proc = start_upstream()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def proxy(upstream: Process) -> Iterator[Process]:
    proc = start_proxy(f"mongodb://127.0.0.1:{upstream.port}")
    yield proc
    proc.stop()


@pytest.fixture
def proxy_factory(upstream: Process) -> Iterator[Callable[..., Process]]:
    """Start extra proxies with their own flags; all are stopped after the test."""
    started: list[Process] = []

    def factory(*args: str, upstream_uri: str | None = None, **env: str) -> Process:
        proc = start_proxy(upstream_uri or f"mongodb://127.0.0.1:{upstream.port}", *args, env=env)
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        proc.stop()


@pytest.fixture
def client(proxy: Process) -> Iterator[MongoClient[dict[str, object]]]:
    c: MongoClient[dict[str, object]] = MongoClient(proxy.uri, serverSelectionTimeoutMS=10000)
    yield c
    c.close()


@pytest.fixture
def direct(upstream: Process) -> Iterator[MongoClient[dict[str, object]]]:
    c: MongoClient[dict[str, object]] = MongoClient(upstream.uri, serverSelectionTimeoutMS=10000)
    yield c
    c.close()
