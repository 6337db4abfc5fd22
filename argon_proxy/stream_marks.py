"""Markers of a branch's changes that its WAL does not record, for its change streams.

Theory of operation: a branch's change streams are made from what changes in
Argon's database (see ``branch_streams.py``). Most of a branch's changes are
WAL entries; a dropped database, a renamed collection, and the changes only
``showExpandedEvents`` shows (a created collection, created or dropped
indexes, ``collMod``) are not. For each of those the branch inserts a marker
into ``MARKS`` and removes it at once: the collection stays empty, and the
insert, with its kind, database, collection and description, reaches every
stream. The documents and the drop a rename moves carry ``MOVED``, so that
the streams report the rename alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import bson

from .catalog import Branch
from .dbclient import DbClient
from .naming import INTERNAL_DB

MARKS = "stream_marks"
MOVED = "moved"  # on the WAL entries and drop of a rename: reported as the rename alone


async def mark(
    db: DbClient,
    branch: Branch,
    kind: str,
    name: str,
    coll: str | None = None,
    description: Mapping[str, Any] | None = None,
    uuid: Any = None,
) -> None:
    """Tell the branch's change streams of a change the WAL does not record (``kind``
    an event's operation type, of database ``name`` or its collection ``coll``): a
    marker inserted and removed at once, whose insert they see. ``uuid``: the
    collection's, when the streams could no longer look it up (it was renamed)."""
    mark: dict[str, Any] = {"_id": bson.ObjectId(), "branch_id": branch.id, "kind": kind}
    mark["db"] = name
    if coll is not None:
        mark["coll"] = coll
    if description:
        mark["description"] = dict(description)
    if uuid is not None:
        mark["uuid"] = uuid
    await db.command(INTERNAL_DB, {"insert": MARKS, "documents": [mark]})
    gone = {"q": {"_id": mark["_id"]}, "limit": 1}
    await db.command(INTERNAL_DB, {"delete": MARKS, "deletes": [gone]})
