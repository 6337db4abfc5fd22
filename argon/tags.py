"""``client.tags`` and ``client.snapshots``: names for fixed states of a branch."""

from __future__ import annotations

import builtins
import datetime as dt
from typing import TYPE_CHECKING

from .models import BranchInfo, Tag

if TYPE_CHECKING:
    from .client import Client


class Tags:
    """Tags: a name for one LSN of a branch, readable as ``db@tag``."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        name: str,
        branch: str,
        *,
        lsn: int | None = None,
        time: dt.datetime | None = None,
        message: str | None = None,
    ) -> Tag:
        """Tag ``branch`` at its head, or at ``lsn`` or ``time``."""
        args = {"name": name, "branch": branch, "lsn": lsn, "time": time, "message": message}
        return Tag.from_doc(self._client.result("createTag", "tag", args))

    def list(self, branch: str | None = None) -> builtins.list[Tag]:
        """All tags, or those of ``branch``."""
        reply = self._client.command("listTags", {"branch": branch})
        return [Tag.from_doc(d) for d in reply.get("tags", [])]

    def delete(self, name: str) -> None:
        """Delete a tag. Raises ``TagNotFound``."""
        self._client.command("deleteTag", {"name": name})


class Snapshots:
    """Snapshots: immutable branches, readable as ``db@name`` and usable as ``from``."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(self, name: str, branch: str = "main") -> BranchInfo:
        """Freeze ``branch`` as it is now under ``name``. Delete it as a branch."""
        args = {"name": name, "branch": branch}
        return BranchInfo.from_doc(self._client.result("createSnapshot", "branch", args))
