"""``argon.Branch``: a handle on one existing branch, for code that works on a branch."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pymongo.database import Database

from .branches import Strategy
from .client import Client
from .defaults import default_client
from .models import BranchInfo, BranchStats, Merge


class Branch:
    """An existing branch. ``Branch(name)`` looks it up (``BranchNotFound`` if absent).

    ``client`` defaults to the module's default client (``argon.default_client``).
    The attributes are those of the lookup; ``refresh`` reads them again.
    """

    def __init__(self, name: str, client: Client | None = None) -> None:
        self._client = client or default_client()
        self.info: BranchInfo = self._client.branches.get(name)

    @classmethod
    def from_info(cls, info: BranchInfo, client: Client | None = None) -> Branch:
        """A handle on the branch ``info`` describes, without looking it up again."""
        branch = cls.__new__(cls)
        branch._client = client or default_client()
        branch.info = info
        return branch

    @classmethod
    def create(
        cls,
        name: str,
        from_branch: str = "main",
        *,
        description: str | None = None,
        client: Client | None = None,
    ) -> Branch:
        """Create branch ``name`` from ``from_branch`` (a branch, tag or snapshot)."""
        client = client or default_client()
        info = client.branches.create(name, from_branch=from_branch, description=description)
        return cls.from_info(info, client)

    @property
    def name(self) -> str:
        """The branch's name."""
        return self.info.name

    @property
    def parent(self) -> str | None:
        """The branch it was created from (``None`` for main)."""
        return self.info.parent

    @property
    def created_at(self) -> dt.datetime | None:
        """When it was created (naive UTC unless the client is ``tz_aware``)."""
        return self.info.created_at

    @property
    def last_activity(self) -> dt.datetime | None:
        """When it was last written (its creation time if never)."""
        return self.info.last_activity

    def refresh(self) -> BranchInfo:
        """Read the branch's metadata again."""
        self.info = self._client.branches.get(self.name)
        return self.info

    def get_stats(self) -> BranchStats:
        """What the branch has changed so far: WAL entries, overlay documents and bytes,
        and the collections it touched (``db.collection``)."""
        stats = self.refresh().stats
        assert stats is not None  # getBranch always answers stats
        return stats

    def connect(self, db: str | None = None) -> Database[dict[str, Any]]:
        """Database ``db`` (default: the client's default database) on this branch."""
        return self._client.connect(self.name, db)

    def tags(self) -> list[str]:
        """The names of the tags on this branch."""
        return [t.name for t in self._client.tags.list(self.name)]

    def merge(self, into: str | None = None, strategy: Strategy = "fail") -> Merge:
        """Merge this branch into ``into`` (default: its parent)."""
        return self._client.branches.merge(self.name, into=into, strategy=strategy)

    def archive(self) -> None:
        """Make the branch read-only and hide it from default listings."""
        self.info = self._client.branches.archive(self.name)

    def delete(self) -> None:
        """Delete the branch and its overlay collections."""
        self._client.branches.delete(self.name)

    def grant_access(self, user: str, level: str) -> None:
        """Give ``user`` the role ``level`` (read, write, merge, admin) on this branch.

        Needs the proxy to run with ``auth`` (otherwise every client may do
        everything, and the grant is refused rather than silently ignored).
        """
        self._client.access.grant(user, level, self.name)

    def revoke_access(self, user: str, level: str) -> None:
        """Take back ``level`` on this branch from ``user``."""
        self._client.access.revoke(user, level, self.name)

    def protect(self, protected: bool = True) -> None:
        """Refuse direct changes to this branch: it then changes only through merges."""
        self.info = self._client.branches.protect(self.name, protected)

    def __repr__(self) -> str:
        return f"Branch({self.name!r})"
