"""A private upstream and proxy for a test module.

SDK and CLI tests switch the proxy's default branch and create branches,
which would change what other modules sharing the session proxy see (and
branches forbid drops on main), so each of those modules gets its own pair.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from pymongo import MongoClient

from argon_proxy.catalog import Catalog
from argon_proxy.dbclient import DbClient
from argon_proxy.upstream import UpstreamPool
from argon_proxy.upstream_target import Address

from .processes import Process, start_proxy, start_upstream

Client = MongoClient[dict[str, Any]]


@contextmanager
def own_stack() -> Iterator[tuple[Process, Process]]:
    """``(upstream, proxy)``, both stopped on exit."""
    up = start_upstream()
    try:
        proxy = start_proxy(f"mongodb://127.0.0.1:{up.port}")
        try:
            yield up, proxy
        finally:
            proxy.stop()
    finally:
        up.stop()


@contextmanager
def own_clients() -> Iterator[tuple[Client, Client]]:
    """``(direct, through Argon)`` clients of a private upstream and proxy."""
    pair: tuple[Process, Process]
    with own_stack() as pair:
        direct: Client = MongoClient(pair[0].uri)
        proxy: Client = MongoClient(pair[1].uri)
        try:
            yield direct, proxy
        finally:
            direct.close()
            proxy.close()


@asynccontextmanager
async def in_process_catalog(
    up: Process, make_db: Callable[[UpstreamPool], DbClient] = DbClient
) -> AsyncIterator[Catalog]:
    """A loaded ``Catalog`` of this process on ``up``, over ``make_db(pool)``."""
    pool = UpstreamPool(Address("127.0.0.1", up.port), connect_timeout=5.0)
    try:
        catalog = Catalog(make_db(pool))
        await catalog.load()
        yield catalog
    finally:
        await pool.aclose()


@contextmanager
def own_client() -> Iterator[Client]:
    """A client of a private proxy (and upstream), all closed on exit."""
    with own_stack() as (_up, proxy):
        client: Client = MongoClient(proxy.uri)
        try:
            yield client
        finally:
            client.close()


@contextmanager
def side_by_side(branch: str) -> Iterator[dict[str, Client]]:
    """Clients of a private stack, to run one case three ways: ``direct`` to the
    upstream, through Argon on ``main``, and through Argon on ``branch`` (made
    from main, selected by appName); all closed on exit."""
    with own_stack() as (up, proxy):
        direct: Client = MongoClient(up.uri)
        main: Client = MongoClient(proxy.uri)
        argon(main, "createBranch", name=branch, **{"from": "main"})
        on_branch: Client = MongoClient(proxy.uri, appname=f"argon:{branch}")
        clients = {"direct": direct, "main": main, "branch": on_branch}
        try:
            yield clients
        finally:
            for c in clients.values():
                c.close()


def argon(c: MongoClient[Any], action: str, **args: Any) -> dict[str, Any]:
    """Send the admin action ``action`` through ``c``."""
    return c.admin.command({"argon": action, **args})


def branch_id(direct: MongoClient[Any], name: str) -> str:
    """The id of branch ``name``, which its WAL entries carry, read from the upstream."""
    stored = direct["__argon"].branches.find_one({"_id": name})
    assert stored is not None, name
    return str(stored["id"])
