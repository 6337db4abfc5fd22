"""What command handlers receive and return.

A command resolved to its database and branch travels as one ``Call``; a
handler answers with a reply document Argon made, or a ``Forward``: the
command to send upstream in place of the client's, whose reply then travels
back as raw bytes. ``Route`` says which handler answers a command on main and
on any other branch (``Engine.routes`` holds the table).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .catalog import Branch
from .naming import MAIN
from .txn import Runner
from .wal import ClientIdentity


@dataclass(frozen=True, slots=True)
class Forward:
    """Forward this command upstream instead of the client's; ``after`` runs once
    its reply has come back (whatever it says)."""

    command: dict[str, Any]
    after: Callable[[], Awaitable[None]] | None = None


@dataclass
class Request:
    """A command and what the connection knows about its sender."""

    command: dict[str, Any]
    app_name: str | None
    connection_id: int
    joined: Runner | None = None  # the client's own transaction, if it is in one
    branch: str = MAIN  # set by the engine once resolved, for metrics
    user: str | None = None  # who the connection authenticated as
    checked: bool = False  # access control applies (auth is on): see access.py
    # The branch's caches were brought up to date before the command; else its
    # first transaction checks them (a write on a branch: see Engine._route).
    synced: bool = True


@dataclass(frozen=True, slots=True)
class Call:
    """A command resolved to its database and branch: what a handler receives."""

    name: str
    db: str
    branch: Branch
    cmd: dict[str, Any]
    req: Request

    @property
    def joined(self) -> Runner | None:
        """The client's own transaction, if the command runs in one."""
        return self.req.joined

    @property
    def client(self) -> ClientIdentity:
        """Who sent it, as the WAL records it."""
        return ClientIdentity(self.req.app_name, self.req.user, self.req.connection_id)

    def forward(self) -> Forward:
        """The command to the upstream as the client sent it, on its plain database."""
        return Forward({**self.cmd, "$db": self.db})


Reply = dict[str, Any] | Forward
Handler = Callable[[Call], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class Route:
    """Who answers a command on main, and on any other branch. None on main: the
    upstream, as sent; None on a branch: the upstream if the command names no
    collection (``NAMESPACE_FREE``), else refused as not supported there."""

    main: Handler | None = None
    branch: Handler | None = None


UPSTREAM = Route()  # forwarded on main, refused on branches unless it names no collection
