"""``client.branches``: create, list, inspect, switch, merge, archive and delete branches."""

from __future__ import annotations

import builtins
import datetime as dt
from typing import TYPE_CHECKING, Literal

from .models import BranchInfo, Deleted, Merge

if TYPE_CHECKING:
    from .client import Client

Strategy = Literal["fail", "manual", "ours", "theirs"]


class Branches:
    """The branch actions of one ``Client``."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        name: str,
        from_branch: str = "main",
        lsn: int | None = None,
        time: dt.datetime | None = None,
        description: str | None = None,
        project: str | None = None,
    ) -> BranchInfo:
        """A new branch of ``from_branch`` (a branch, tag or snapshot), as it is now
        or as it was at ``lsn`` or ``time``, in ``project`` (default: the parent's).
        Nothing is copied."""
        args = {
            "name": name,
            "from": from_branch,
            "lsn": lsn,
            "time": time,
            "description": description,
            "project": project,
        }
        return BranchInfo.from_doc(self._client.result("createBranch", "branch", args))

    def list(self, all: bool = False, project: str | None = None) -> builtins.list[BranchInfo]:
        """The branches, main first; with ``all`` also archived ones and snapshots;
        with ``project`` only that project's (and main)."""
        reply = self._client.command("listBranches", {"all": all, "project": project})
        return [BranchInfo.from_doc(d) for d in reply.get("branches", [])]

    def get(self, name: str) -> BranchInfo:
        """One branch, with ``stats``. Raises ``BranchNotFound``."""
        return BranchInfo.from_doc(self._client.result("getBranch", "branch", {"name": name}))

    def delete(self, name: str) -> Deleted:
        """Delete a branch and its overlay collections. Main cannot be deleted."""
        return Deleted.from_doc(self._client.command("deleteBranch", {"name": name}))

    def switch(self, name: str) -> str:
        """Make ``name`` the proxy's default branch: the one every connection that
        names no branch uses. Returns the new default."""
        return str(self._client.result("switchBranch", "default_branch", {"name": name}))

    def merge(
        self,
        source: str,
        into: str | None = None,
        strategy: Strategy = "fail",
        dry_run: bool = False,
    ) -> Merge:
        """Merge ``source`` into ``into`` (default: the source's parent).

        Strategy ``fail`` (and ``manual``, which the proxy treats alike) raises
        ``MergeConflictError`` on conflicts, with the merge on the error so the
        conflicts can be resolved through ``client.merges``; ``ours`` keeps the
        target's side of each conflict, ``theirs`` the source's. ``dry_run``
        computes a preview that ``client.merges.apply`` can apply later.
        """
        args = {"source": source, "into": into, "strategy": strategy, "dryRun": dry_run}
        return Merge.from_doc(self._client.result("merge", "merge", args))

    def protect(self, name: str, protected: bool = True) -> BranchInfo:
        """Refuse direct changes to a branch (it then changes only through merges), or
        allow them again."""
        args = {"name": name, "protected": protected}
        return BranchInfo.from_doc(self._client.result("protectBranch", "branch", args))

    def archive(self, name: str) -> BranchInfo:
        """Make a branch read-only and hide it from ``list`` (``list(all=True)`` shows it)."""
        reply = self._client.result("archiveBranch", "branch", {"name": name})
        return BranchInfo.from_doc(reply)
