"""The REST API: one table of endpoints, each a thin layer over one admin action.

Theory of operation: an ``Endpoint`` names the HTTP method and path, the
``argon`` action it runs, and where the action's fields come from: the path,
the query string (typed, so ``?limit=5`` arrives as a number) and the JSON
body (MongoDB Extended JSON, passed through as the action's fields). The same
table builds the routes (``web.py``) and the OpenAPI document (``openapi``),
so the two cannot disagree. The action answers exactly as it does over the
wire: same fields, same error codes and names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

VERSION = "v1"
PREFIX = f"/api/{VERSION}"

Kind = Literal["string", "integer", "boolean", "json"]  # json: Extended JSON, e.g. "a" or 5


@dataclass(frozen=True, slots=True)
class Param:
    """A query parameter and the action field it fills."""

    name: str
    kind: Kind = "string"
    description: str = ""
    field: str = ""  # the action's field; empty: the same as ``name``

    @property
    def target(self) -> str:
        return self.field or self.name


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One REST endpoint: ``method`` ``path`` runs admin action ``action``."""

    method: Literal["GET", "POST", "PUT", "DELETE"]
    path: str  # below PREFIX; ``{name}`` segments fill the fields in ``path_fields``
    action: str
    summary: str
    path_fields: Mapping[str, str] = field(default_factory=dict)
    query: tuple[Param, ...] = ()
    body: tuple[str, ...] = ()  # the fields the JSON body may carry (documented)
    fixed: Mapping[str, Any] = field(default_factory=dict)  # fields the endpoint sets

    @property
    def operation_id(self) -> str:
        return f"{self.action}_{self.method.lower()}"


_LIMIT = Param("limit", "integer", "At most this many entries")
_BRANCH = {"name": "name"}

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/status", "status", "The proxy's status: branches, LSN, upstream"),
    Endpoint(
        "GET",
        "/branches",
        "listBranches",
        "Every branch with its parent, fork point, activity, changes, size and state",
        query=(
            Param("project", description="Only this project's branches"),
            Param("all", "boolean", "Archived branches and snapshots too"),
            Param("stats", "boolean", "With each branch's changes and overlay size"),
        ),
    ),
    Endpoint(
        "POST",
        "/branches",
        "createBranch",
        "Create a branch",
        body=("name", "from", "description", "project", "ttl", "expires", "lsn", "time"),
    ),
    Endpoint("GET", "/branches/{name}", "getBranch", "One branch", _BRANCH),
    Endpoint("DELETE", "/branches/{name}", "deleteBranch", "Delete a branch", _BRANCH),
    Endpoint(
        "POST", "/branches/{name}/archive", "archiveBranch", "Archive a branch (read-only)", _BRANCH
    ),
    Endpoint(
        "PUT",
        "/branches/{name}/protection",
        "protectBranch",
        "Protect a branch from writes and deletion, or lift it",
        _BRANCH,
        body=("protected",),
    ),
    Endpoint(
        "PUT",
        "/branches/{name}/expiry",
        "setBranchExpiry",
        "Set or clear when a branch expires",
        _BRANCH,
        body=("ttl", "expires"),
    ),
    Endpoint(
        "GET",
        "/branches/{branch}/log",
        "log",
        "A branch's changes, newest first, with the document before and after each",
        {"branch": "branch"},
        query=(
            Param("db", description="Only this database"),
            Param("collection", description="Only this collection (with db)"),
            Param("docId", "json", "Only this document: its _id as JSON (with db and collection)"),
            Param("user", description="Only changes by this authenticated user"),
            Param("app", description="Only changes by clients with this appName"),
            Param("sinceLsn", "integer", "From this LSN"),
            Param("untilLsn", "integer", "Up to this LSN"),
            _LIMIT,
        ),
        fixed={"images": True},
    ),
    Endpoint(
        "GET",
        "/branches/{branch}/timetravel",
        "timeTravelInfo",
        "How far back a branch can be read",
        {"branch": "name"},
    ),
    Endpoint(
        "GET",
        "/diff",
        "diff",
        "Field-level differences between two refs (branch, tag, branch@lsn-N, branch@time)",
        query=(
            Param("from", description="The ref compared from"),
            Param("to", description="The ref compared to"),
            Param("db", description="Only this database"),
            Param("collection", description="Only this collection"),
            _LIMIT,
        ),
    ),
    Endpoint(
        "POST",
        "/merges",
        "merge",
        "Merge a branch into another; dryRun: true records a preview to apply later",
        body=("source", "into", "strategy", "dryRun"),
    ),
    Endpoint(
        "GET",
        "/merges/{id}/conflicts",
        "mergeConflicts",
        "A merge's conflicts: base, ours and theirs of each document",
        {"id": "id"},
    ),
    Endpoint(
        "POST",
        "/merges/{id}/resolutions",
        "resolveConflict",
        "Resolve one conflict: take ours, theirs, or an edited document",
        {"id": "id"},
        body=("ns", "docId", "take", "document"),
    ),
    Endpoint(
        "POST",
        "/merges/{id}/apply",
        "applyMerge",
        "Apply a preview or a merge whose conflicts are resolved (refused once stale)",
        {"id": "id"},
    ),
    Endpoint(
        "GET",
        "/tags",
        "listTags",
        "Tags, each naming a branch at an LSN",
        query=(Param("branch", description="Only this branch's tags"),),
    ),
    Endpoint(
        "POST",
        "/tags",
        "createTag",
        "Tag a branch now or at a point",
        body=("name", "branch", "lsn", "time", "message"),
    ),
    Endpoint("DELETE", "/tags/{name}", "deleteTag", "Delete a tag", _BRANCH),
    Endpoint(
        "POST",
        "/snapshots",
        "createSnapshot",
        "A read-only branch of another's state now or at a point",
        body=("name", "branch", "description"),
    ),
)


def find(method: str, path: str) -> Endpoint | None:
    """The endpoint for ``method`` and route ``path`` (as written in the table)."""
    return next((e for e in ENDPOINTS if e.method == method and e.path == path), None)
