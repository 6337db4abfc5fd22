"""Projects: named sets of databases that branches version together.

Theory of operation: a project names the databases its branches cover; it
lives in ``__argon.projects`` and in the catalog's cache. A branch belongs to
at most one project, inherited from its parent. A branch outside any project
(main, and every branch made without one) covers every database, like the
implicit project ``default``. Through a branch of a project, a database
outside the project is refused (2018 NotInProject): the branch does not
version it, and handing the operation to main's live data instead would
break the branch's isolation. ``admin``, ``config`` and ``local`` stay
reachable, as drivers talk to them on every connection.
"""

from __future__ import annotations

from typing import Any

from .catalog import Branch, Catalog, now
from .dbclient import DbClient
from .errors import (
    BAD_VALUE,
    NOT_IN_PROJECT,
    PROJECT_EXISTS,
    PROJECT_IN_USE,
    PROJECT_NOT_FOUND,
    ArgonError,
)
from .naming import INTERNAL_DB, MAIN, validate_branch_name

DEFAULT = "default"
_SYSTEM_DBS = frozenset({"admin", "config", "local"})


def project_of(catalog: Catalog, name: Any) -> str | None:
    """The stored project ``name`` names (None: the default project), or an error."""
    if name is None or name == DEFAULT:
        return None
    if not isinstance(name, str) or name not in catalog.projects:
        raise ArgonError(
            PROJECT_NOT_FOUND,
            f"project {name!r} does not exist; create it with `argon projects create {name}`",
        )
    return name


def belongs(catalog: Catalog, branch: Branch, project: Any) -> bool:
    """Whether ``branch`` is one of ``project``'s (main, the root, is in every one)."""
    wanted = project_of(catalog, project)
    return branch.name == MAIN or branch.project == wanted


def check(catalog: Catalog, branch: Branch, db: str) -> None:
    """Refuse ``db`` through ``branch`` when the branch's project does not cover it."""
    if branch.project is None or db in _SYSTEM_DBS or not db:
        return
    databases = catalog.projects.get(branch.project, {}).get("databases")
    if databases is not None and db not in databases:
        raise ArgonError(
            NOT_IN_PROJECT,
            f"database {db!r} is not in project {branch.project!r} of branch {branch.name!r} "
            f"(it covers {', '.join(databases)}); use a branch outside the project, or add "
            "the database to the project",
        )


def covers(catalog: Catalog, branch: Branch, db: str) -> bool:
    try:
        check(catalog, branch, db)
    except ArgonError:
        return False
    return True


def _describe(catalog: Catalog, name: str, doc: dict[str, Any] | None) -> dict[str, Any]:
    owner = None if doc is None else name
    members = [b.name for b in catalog.branches.values() if b.project == owner]
    return {
        "name": name,
        "databases": None if doc is None else doc.get("databases"),
        "description": None if doc is None else doc.get("description"),
        "created": None if doc is None else doc.get("created"),
        "branches": sorted(n for n in members if "@" not in n),
    }


async def create_action(db: DbClient, catalog: Catalog, cmd: dict[str, Any]) -> dict[str, Any]:
    """``createProject``: ``name``, optional ``databases`` (default: every database)."""
    name = cmd.get("name")
    if not isinstance(name, str) or name == DEFAULT:
        raise ArgonError(BAD_VALUE, "createProject: 'name' must be a name other than 'default'")
    validate_branch_name(name)  # the same spelling rules keep names usable in URIs
    databases = cmd.get("databases")
    if databases is not None:
        if not isinstance(databases, list) or not all(
            isinstance(d, str) and d and "@" not in d and d != INTERNAL_DB for d in databases
        ):
            raise ArgonError(BAD_VALUE, "createProject: 'databases' is a list of database names")
        databases = sorted(set(databases))
    await catalog.reload()
    if name in catalog.projects:
        raise ArgonError(PROJECT_EXISTS, f"project {name!r} already exists")
    doc = {
        "_id": name,
        "databases": databases,
        "description": cmd.get("description"),
        "created": now(),
    }
    exists = ArgonError(PROJECT_EXISTS, f"project {name!r} already exists")
    since = catalog.loads
    await db.insert_new(INTERNAL_DB, "projects", doc, exists)
    await catalog.changed(since=since)
    catalog.projects[name] = doc
    return {"project": _describe(catalog, name, doc)}


async def list_action(catalog: Catalog, cmd: dict[str, Any]) -> dict[str, Any]:
    """``listProjects``: the default project first, then the others by name."""
    await catalog.reload()
    stored = catalog.projects
    listed = [_describe(catalog, DEFAULT, None)]
    listed += [_describe(catalog, n, stored[n]) for n in sorted(stored)]
    return {"projects": listed}


async def delete_action(db: DbClient, catalog: Catalog, cmd: dict[str, Any]) -> dict[str, Any]:
    """``deleteProject``: only once no branch belongs to it."""
    await catalog.reload()
    name = project_of(catalog, cmd.get("name"))
    if name is None:
        raise ArgonError(BAD_VALUE, "deleteProject: the default project cannot be deleted")
    members = sorted(b.name for b in catalog.branches.values() if b.project == name)
    if members:
        raise ArgonError(
            PROJECT_IN_USE,
            f"project {name!r} still has branches {members[:5]}; delete or merge them first",
        )
    since = catalog.loads
    await db.command(
        INTERNAL_DB, {"delete": "projects", "deletes": [{"q": {"_id": name}, "limit": 1}]}
    )
    await catalog.changed(since=since)
    catalog.projects.pop(name, None)
    return {"deleted": name}
