"""``client.merges``: conflicts of a merge, their resolution, and applying it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from .models import Conflict, Merge

if TYPE_CHECKING:
    from .client import Client

Take = Literal["ours", "theirs", "document"]


class Merges:
    """Follow-up actions on a merge started with ``client.branches.merge``."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def conflicts(self, merge_id: Any) -> list[Conflict]:
        """Every conflict of a merge (the merge itself lists at most 100)."""
        reply = self._client.command("mergeConflicts", {"id": merge_id})
        return [Conflict.from_doc(d) for d in reply.get("conflicts", [])]

    def resolve(
        self,
        merge_id: Any,
        ns: str,
        doc_id: Any,
        take: Take,
        document: dict[str, Any] | None = None,
    ) -> Merge:
        """Resolve the conflict on document ``doc_id`` of ``ns`` (``db.collection``).

        ``take`` is ``ours`` (the target's version), ``theirs`` (the source's)
        or ``document``, which writes ``document`` instead (``None`` deletes it).
        """
        args = {"id": merge_id, "ns": ns, "docId": doc_id, "take": take}
        if take == "document":
            args["document"] = document
        keep = ("document",) if take == "document" else ()
        return Merge.from_doc(self._client.result("resolveConflict", "merge", args, keep_none=keep))

    def apply(self, merge_id: Any) -> Merge:
        """Apply a preview, or a merge whose conflicts are all resolved.

        Raises ``StaleMergeError`` if either branch moved since it was computed.
        """
        return Merge.from_doc(self._client.result("applyMerge", "merge", {"id": merge_id}))
