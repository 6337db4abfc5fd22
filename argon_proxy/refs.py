"""Refs: the names users give to states of the data.

Theory of operation: a ref is a branch (``exp/alice``), a tag (``validated``:
a branch at an LSN, kept in ``__argon.tags``) or a branch at a point
(``main@lsn-120``, ``main@2026-11-23T06:00:00Z``). Tags and branches share one
namespace, so a name is never both. Reading a tag or a point goes through
the read-only time-travel snapshot of that branch at that LSN, which is built
once (cost: the changes since that point) and then kept current for free by
the copy-on-write freeze.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import history, timetravel
from .catalog import Branch, BranchError, Catalog, now
from .dbclient import DbClient
from .errors import BAD_VALUE, BRANCH_NOT_FOUND, TAG_EXISTS, TAG_NOT_FOUND, ArgonError
from .naming import INTERNAL_DB, validate_branch_name


@dataclass(frozen=True, slots=True)
class Point:
    """A branch at an LSN (``lsn`` None: the branch as it is now)."""

    branch: Branch
    lsn: int | None


async def find_tag(db: DbClient, name: str) -> dict[str, Any] | None:
    found = await db.find(INTERNAL_DB, "tags", {"_id": name})
    return found[0] if found else None


async def point(db: DbClient, catalog: Catalog, ref: Any) -> Point:
    """What ``ref`` names, without building anything."""
    if not isinstance(ref, str) or not ref:
        raise ArgonError(BAD_VALUE, f"{ref!r} is not a ref: name a branch, a tag or branch@point")
    name, _, at = ref.partition("@")
    try:
        branch = await catalog.get(name)
    except BranchError as exc:
        if exc.code != BRANCH_NOT_FOUND:
            raise
        return await _tag_point(db, catalog, name, at)
    if not at:
        return Point(branch, None)
    return Point(branch, await timetravel.resolve_point(db, catalog, branch, at))


async def _tag_point(db: DbClient, catalog: Catalog, name: str, at: str) -> Point:
    tag = await find_tag(db, name)
    if tag is None:
        raise BranchError(
            BRANCH_NOT_FOUND,
            f"branch {name!r} does not exist (nor a tag of that name). See `argon branch "
            f"list` and `argon tag list`, or create it with `argon branch create {name}`.",
        )
    if at:
        raise ArgonError(BAD_VALUE, f"{name}@{at}: a tag is a point already; drop '@{at}'")
    return Point(await catalog.get(tag["branch"]), int(tag["lsn"]))


async def resolve(
    db: DbClient, catalog: Catalog, snapshots: timetravel.Snapshots, ref: Any
) -> Branch:
    """The branch to read ``ref`` through (a snapshot for tags and points)."""
    if isinstance(ref, str) and "@" in ref:
        name, _, at = ref.partition("@")
        if at and name in catalog.branches:
            # ``Snapshots.get`` resolves the point itself, and only once per point.
            return await snapshots.get(await catalog.get(name), at)
    p = await point(db, catalog, ref)
    if p.lsn is None:
        return p.branch
    return await snapshots.get(p.branch, f"lsn-{p.lsn}")


async def create_tag(db: DbClient, catalog: Catalog, cmd: dict[str, Any]) -> dict[str, Any]:
    name = validate_branch_name(cmd.get("name"))  # type: ignore[arg-type]
    branch = await catalog.get(str(cmd.get("branch") or ""))
    if name in catalog.branches or await find_tag(db, name) is not None:
        raise ArgonError(TAG_EXISTS, f"a branch or tag named {name!r} exists already")
    if cmd.get("lsn") is not None:
        lsn = await timetravel.resolve_point(db, catalog, branch, f"lsn-{int(cmd['lsn'])}")
    elif cmd.get("time") is not None:
        when = cmd["time"]
        lsn = await timetravel.resolve_point(
            db, catalog, branch, when.isoformat() if hasattr(when, "isoformat") else str(when)
        )
    else:
        lsn = await history.head(catalog, branch)
    tag = {
        "_id": name,
        "branch": branch.name,
        "lsn": lsn,
        "created": now(),
        "message": cmd.get("message"),
    }
    exists = ArgonError(TAG_EXISTS, f"tag {name!r} exists already")
    await db.insert_new(INTERNAL_DB, "tags", tag, exists)
    return {"tag": show(tag)}


def show(tag: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": tag["_id"],
        "branch": tag["branch"],
        "lsn": int(tag["lsn"]),
        "created": tag.get("created"),
        "message": tag.get("message"),
    }


async def list_tags(db: DbClient, catalog: Catalog, cmd: dict[str, Any]) -> dict[str, Any]:
    flt = {"branch": cmd["branch"]} if cmd.get("branch") else {}
    if cmd.get("branch"):
        await catalog.get(cmd["branch"])
    docs = await db.find(INTERNAL_DB, "tags", flt, sort={"lsn": 1, "_id": 1})
    return {"tags": [show(t) for t in docs]}


async def tags_of(db: DbClient, branch: str) -> list[str]:
    docs = await db.find(INTERNAL_DB, "tags", {"branch": branch}, sort={"lsn": 1})
    return [d["_id"] for d in docs]


async def tags_by_branch(db: DbClient) -> dict[str, list[str]]:
    """Every branch's tags, oldest first, in one query."""
    out: dict[str, list[str]] = {}
    for doc in await db.find(INTERNAL_DB, "tags", {}, sort={"lsn": 1}):
        out.setdefault(doc["branch"], []).append(doc["_id"])
    return out


async def delete_tag(db: DbClient, cmd: dict[str, Any]) -> dict[str, Any]:
    name = cmd.get("name")
    reply = await db.command(
        INTERNAL_DB, {"delete": "tags", "deletes": [{"q": {"_id": name}, "limit": 1}]}
    )
    if not reply.get("n"):
        raise ArgonError(TAG_NOT_FOUND, f"no tag {name!r}; see `argon tag list`")
    return {"deleted": name}
