"""A proxy with auth on for the console's tests, with users to log in as."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pymongo import MongoClient

from ..processes import Process, start_proxy, start_upstream

Client = MongoClient[dict[str, Any]]
ROOT = ("root", "root-pw")  # the administrator
ANA = ("ana", "ana-pw")  # reads the branches exp-*, nothing else


@contextmanager
def guarded_stack() -> Iterator[Process]:
    """An upstream and a proxy with auth on: ``ROOT``, ``ANA``, branches ``exp-a``
    and ``other``, and one document in ``shop.items``."""
    upstream = start_upstream()
    proxy = start_proxy(upstream.uri, env={"ARGON_AUTH": "true"})
    try:
        with Client(proxy.uri) as anonymous:  # the localhost exception: the first user
            anonymous.admin.command({"argon": "createUser", "name": ROOT[0], "password": ROOT[1]})
        uri = f"mongodb://{ROOT[0]}:{ROOT[1]}@127.0.0.1:{proxy.port}/?directConnection=true"
        with Client(uri) as root:
            root.shop.items.insert_one({"_id": 1})
            for name in ("exp-a", "other"):
                root.admin.command({"argon": "createBranch", "name": name})
            root.admin.command({"argon": "createUser", "name": ANA[0], "password": ANA[1]})
            grant = {"argon": "grantAccess", "user": ANA[0], "role": "read", "branches": "exp-*"}
            root.admin.command(grant)
        yield proxy
    finally:
        proxy.stop()
        upstream.stop()
