"""Module-level shortcuts (``argon.connect``, ``argon.merge_branch``, ...) on the default client.

Each is one call on ``argon.default_client()``; scripts that talk to several
proxies, or want to close connections early, use ``argon.Client`` instead.
"""

from __future__ import annotations

import os
from typing import Any

from bson import json_util
from pymongo.database import Database

from .branch import Branch
from .branches import Strategy
from .defaults import default_client
from .models import BranchInfo, Deleted, Merge, Tag


def connect(branch: str, db: str | None = None) -> Database[dict[str, Any]]:
    """Database ``db`` on ``branch``: every read and write through it goes to the branch.

    Without ``db``, the database named in the URI's path
    (``mongodb://host:27018/ml_database``), else ``test``, as mongosh does.
    """
    return default_client().connect(branch, db)


def create_branch(
    name: str,
    from_branch: str = "main",
    from_snapshot: BranchInfo | Branch | str | None = None,
) -> Branch:
    """Create branch ``name`` from ``from_snapshot`` if given (what ``create_snapshot``
    returned, or its name), else from ``from_branch``."""
    if from_snapshot is not None:
        from_branch = from_snapshot if isinstance(from_snapshot, str) else from_snapshot.name
    return Branch.create(name, from_branch, client=default_client())


def list_branches(all: bool = False) -> list[BranchInfo]:
    """The branches (``.name``, ``.parent``, ``.created_at``, ``.last_activity``, ...);
    with ``all`` also archived ones and snapshots."""
    return default_client().branches.list(all=all)


def delete_branch(name: str) -> Deleted:
    """Delete branch ``name`` and its overlay collections."""
    return default_client().branches.delete(name)


def archive_branch(name: str) -> BranchInfo:
    """Make branch ``name`` read-only and hide it from ``list_branches``."""
    return default_client().branches.archive(name)


def merge_branch(
    source: str, target: str | None = None, strategy: Strategy = "fail", dry_run: bool = False
) -> Merge:
    """Merge ``source`` into ``target`` (default: its parent). See ``Branches.merge``;
    with strategy ``fail`` or ``manual`` conflicts raise ``MergeConflictError``."""
    return default_client().branches.merge(source, target, strategy, dry_run)


def tag_branch(branch: str, tag: str, message: str | None = None) -> Tag:
    """Tag the current head of ``branch`` as ``tag``."""
    return default_client().tags.create(tag, branch, message=message)


def get_branch_tags(branch: str) -> list[str]:
    """The names of the tags on ``branch``."""
    return [t.name for t in default_client().tags.list(branch)]


def create_snapshot(branch: str = "main", *, name: str) -> BranchInfo:
    """Freeze ``branch`` as it is now under ``name``; pass the result to
    ``create_branch(..., from_snapshot=...)``."""
    return default_client().snapshots.create(name, branch)


def export_collection(
    branch: str,
    collection: str,
    output_file: str | os.PathLike[str],
    db: str | None = None,
    *,
    canonical: bool = False,
) -> int:
    """Write ``collection`` of ``db`` on ``branch`` to ``output_file``; return the count.

    The format is mongoexport's default: one document per line (JSON Lines),
    relaxed Extended JSON v2, or canonical (lossless types) with
    ``canonical``. Documents are in ``_id`` order, so two exports compare
    line by line. ``db`` defaults as in ``connect``.
    """
    options = json_util.CANONICAL_JSON_OPTIONS if canonical else json_util.RELAXED_JSON_OPTIONS
    count = 0
    with open(output_file, "w", encoding="utf-8") as out:
        for doc in connect(branch, db)[collection].find().sort("_id", 1):
            out.write(json_util.dumps(doc, json_options=options) + "\n")
            count += 1
    return count
