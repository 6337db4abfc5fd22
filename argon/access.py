"""``client.access``: who may do what on which branches (when Argon runs with ``auth``)."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING

from .models import Grant

if TYPE_CHECKING:
    from .client import Client

ROLES = ("read", "write", "merge", "admin")


class Access:
    """Roles granted to users on branch name patterns (``exp/*``, ``main``, ``*``).

    ``read`` reads a branch; ``write`` also changes it; ``merge`` reads it and
    merges into it (the only way to change a protected branch); ``admin`` does
    all of these and the branch's lifecycle (create, delete, reset, tag...).
    Administrators grant and revoke; grants need the proxy to run with ``auth``.
    """

    def __init__(self, client: Client) -> None:
        self._client = client

    def grant(
        self, user: str, role: str, branches: str | None = None, *, project: str | None = None
    ) -> Grant:
        """Give ``user`` ``role`` on the branches matching ``branches``, or on the
        branches of ``project`` (main, which every project shares, is granted by name)."""
        args = {"user": user, "role": role, "branches": branches, "project": project}
        return Grant.from_doc(self._client.result("grantAccess", "grant", args))

    def revoke(
        self, user: str, role: str, branches: str | None = None, *, project: str | None = None
    ) -> int:
        """Take that grant back; returns how many grants went (0 or 1)."""
        args = {"user": user, "role": role, "branches": branches, "project": project}
        return int(self._client.command("revokeAccess", args).get("revoked", 0))

    def list(self, user: str | None = None) -> builtins.list[Grant]:
        """Every grant, or those of ``user``."""
        reply = self._client.command("listAccess", {"user": user})
        return [Grant.from_doc(d) for d in reply.get("grants", [])]
