"""Argon's admin commands, reached as ``db.command({"argon": "<action>", ...})``.

Theory of operation: the CLI, the SDK and mongosh all send these through the
wire protocol, so every operation exists once, here. Each action takes plain
arguments and answers a plain document with ``ok: 1``; failures are raised as
``ArgonError`` with a code and a message that says what to do.

The actions and their arguments are listed in ``docs/admin-commands.md``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from . import (
    __version__,
    access,
    audit,
    diff,
    gc,
    history,
    merge,
    projects,
    refs,
    reset,
    timetravel,
    wal,
)
from .access import AccessControl
from .calls import Request
from .catalog import Branch, Catalog, now, protected
from .dbclient import DbClient
from .errors import BAD_VALUE, COMMAND_NOT_FOUND, ILLEGAL_OPERATION, TAG_EXISTS, ArgonError
from .indexes import Indexes
from .naming import INTERNAL_DB, MAIN, validate_branch_name
from .users import UserStore
from .writes import Writer


def _arg(cmd: dict[str, Any], key: str, default: Any = None, *, required: bool = False) -> Any:
    value = cmd.get(key, default)
    if required and value is None:
        raise ArgonError(BAD_VALUE, f"argon {cmd.get('argon')}: the {key!r} argument is required")
    return value


def _point_arg(cmd: dict[str, Any]) -> str:
    """``lsn`` or ``time`` of a command as a point (``lsn-N`` or an ISO time)."""
    if cmd.get("lsn") is not None:
        return f"lsn-{int(cmd['lsn'])}"
    when = cmd["time"]
    return str(when.isoformat() if hasattr(when, "isoformat") else when)


Action = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

# Who may run which action when access control applies (see access.py); any other
# action is for administrators.
_LISTINGS = frozenset({"status", "listProjects", "listBranches", "timeTravelInfo", "listTags"})
_READS = {"getBranch": "name", "log": "branch", "blame": "branch"}  # read on that branch
_LIFECYCLE = {  # admin on the branch the argument names
    "createBranch": "name",
    "createSnapshot": "name",
    "deleteBranch": "name",
    "archiveBranch": "name",
    "setBranchExpiry": "name",
    "resetBranch": "name",
    "undo": "branch",
    "createTag": "branch",
}


class Admin:
    """The admin actions, with the services they use."""

    def __init__(
        self,
        db: DbClient,
        catalog: Catalog,
        writer: Writer,
        indexes: Indexes,
        snapshots: timetravel.Snapshots,
        users: UserStore,
        access: AccessControl,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.writer = writer
        self.access = access
        self.actions: dict[str, Action] = {
            "status": self._status,
            "createBranch": self._create,
            "createProject": lambda cmd: projects.create_action(db, catalog, cmd),
            "listProjects": lambda cmd: projects.list_action(catalog, cmd),
            "deleteProject": lambda cmd: projects.delete_action(db, catalog, cmd),
            "listBranches": self._list,
            "getBranch": self._get,
            "deleteBranch": self._delete,
            "switchBranch": self._switch,
            "timeTravelInfo": self._time_travel_info,
            "archiveBranch": self._archive,
            "createSnapshot": self._snapshot,
            "createTag": lambda cmd: refs.create_tag(db, catalog, cmd),
            "listTags": lambda cmd: refs.list_tags(db, catalog, cmd),
            "deleteTag": lambda cmd: refs.delete_tag(db, cmd),
            "merge": lambda cmd: merge.merge_action(db, catalog, writer, indexes, cmd),
            "applyMerge": lambda cmd: merge.apply_action(db, catalog, writer, cmd),
            "mergeConflicts": lambda cmd: merge.conflicts_action(db, cmd),
            "resolveConflict": lambda cmd: merge.resolve_action(db, cmd),
            "setMergeGranularity": lambda cmd: merge.granularity_action(db, cmd),
            "diff": lambda cmd: diff.diff_action(db, catalog, snapshots, cmd),
            "log": lambda cmd: audit.log_action(db, catalog, cmd),
            "blame": lambda cmd: audit.blame_action(db, catalog, cmd),
            "resetBranch": lambda cmd: reset.reset_action(db, catalog, writer, cmd),
            "undo": lambda cmd: reset.undo_action(db, catalog, writer, cmd),
            "gc": lambda cmd: gc.gc_action(db, catalog, cmd),
            "setBranchExpiry": self._expiry,
            "createUser": users.create_action,
            "updateUser": users.update_action,
            "dropUser": users.drop_action,
            "listUsers": users.list_action,
            "grantAccess": access.grant_action,
            "revokeAccess": access.revoke_action,
            "listAccess": access.list_action,
            "protectBranch": self._protect,
        }

    async def handle(self, cmd: dict[str, Any], req: Request | None = None) -> dict[str, Any]:
        """Run one action; ``req`` says who asks, when access control applies."""
        action = cmd.get("argon")
        handler = self.actions.get(str(action))
        if handler is None:
            raise ArgonError(
                COMMAND_NOT_FOUND,
                f"unknown argon action {action!r}; one of: {', '.join(sorted(self.actions))}",
            )
        checked = req is not None and req.checked
        user = req.user if req is not None else None
        if checked:
            await self._authorize(str(action), cmd, user)
        if action in ("grantAccess", "revokeAccess") and not checked:
            raise ArgonError(
                ILLEGAL_OPERATION,
                f"argon {action}: per-branch access control needs authentication, and this "
                "proxy runs without it (every client may do everything): start `argon serve` "
                "with auth = true (ARGON_AUTH) and connect as an administrator",
            )
        if action in ("resetBranch", "undo", "deleteBranch"):  # not on a protected branch
            name = cmd.get("branch" if action == "undo" else "name")
            branch = self.catalog.branches.get(str(name))
            if branch is not None and branch.protected:
                raise protected(branch, str(action))
        reply = await handler(cmd)
        if checked and not await self.access.is_admin(user):
            await self._only_readable(str(action), reply, user)
        reply["ok"] = 1.0
        return reply

    async def _authorize(self, action: str, cmd: dict[str, Any], user: str | None) -> None:
        """Refuse the action unless the user's rights cover it (see access.py)."""
        check = self.access.check
        if action in _LISTINGS:
            return  # answered, filtered to what the user may read
        if action in _READS:
            name = cmd.get(_READS[action]) or self.catalog.default_branch
            await check(user, access.READ, str(name), action)
        elif action in _LIFECYCLE:
            await check(user, access.ADMIN, str(cmd.get(_LIFECYCLE[action])), action)
            source = {"createBranch": "from", "createSnapshot": "branch"}.get(action)
            if source is not None:
                await check(user, access.READ, str(cmd.get(source) or MAIN), action)
        elif action == "diff":
            for side in ("from", "to"):
                await check(user, access.READ, str(cmd.get(side)), action)
        elif action == "merge":
            merged = await self.catalog.get(str(cmd.get("source")))
            into = cmd.get("into") or merged.parent or MAIN
            await check(user, access.READ, merged.name, action)
            await check(user, access.MERGE, str(into), action)
        elif action in ("applyMerge", "mergeConflicts", "resolveConflict"):
            found = await self.db.find(INTERNAL_DB, "merges", {"_id": cmd.get("id")}, limit=1)
            if found:  # an unknown id is answered as such by the action
                await check(user, access.MERGE, str(found[0].get("target")), action)
        else:
            await check(user, access.ADMIN, "*", action)

    async def _only_readable(self, action: str, reply: dict[str, Any], user: str | None) -> None:
        """Leave out of a listing the branches the user may not read."""
        key = {"listBranches": "branches", "timeTravelInfo": "branches", "listTags": "tags"}
        field = {"listBranches": "name", "timeTravelInfo": "branch", "listTags": "branch"}
        if action not in key:
            return
        kept = []
        for item in reply.get(key[action], []):
            name = item.get(field[action]) if isinstance(item, dict) else None
            if name is None or await self.access.allows(user, access.READ, str(name)):
                kept.append(item)
        reply[key[action]] = kept

    async def _protect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """``protectBranch``: direct changes refused (merges only), or allowed again."""
        branch = await self.catalog.get(str(_arg(cmd, "name", required=True)))
        await self.catalog.update(branch, protected=bool(cmd.get("protected", True)))
        return {"branch": await self.describe(branch)}

    async def describe(self, branch: Branch, *, stats: bool = False) -> dict[str, Any]:
        """A branch as the CLI and SDK show it."""
        info = (await self.describe_all([branch]))[0]
        if stats:
            info["stats"] = await self._stats(branch)
        return info

    async def describe_all(self, branches: list[Branch]) -> list[dict[str, Any]]:
        """Branches as the CLI and SDK show them, with a few queries for them all:
        the LSN head and the tags once, and the newest WAL entry of each branch
        that has one to find. A branch writes only into its overlays, so one
        without any has no entry (its head is its fork)."""
        upto = await self.catalog.current_lsn()
        tags = await refs.tags_by_branch(self.db)
        overlaid = {ov.branch_id for ov in self.catalog.overlays.values()}
        find = history.wal_finder(self.db, wal.TIME_FIELDS)
        out = []
        for branch in branches:
            head = None
            if branch.name == MAIN or branch.id in overlaid:
                head = await history.newest(find, branch.id, above=branch.base_lsn, upto=upto)
            out.append(self._info(branch, head, tags.get(branch.name, [])))
        return out

    def _info(self, branch: Branch, head: dict[str, Any] | None, tags: list[str]) -> dict[str, Any]:
        return {
            "name": branch.name,
            "parent": branch.parent,
            "base_lsn": branch.base_lsn,
            "head_lsn": int(head["_id"]) if head else branch.base_lsn,
            "created": branch.created,
            "last_activity": (wal.time_of(head) if head else None) or branch.created,
            "read_only": branch.read_only,
            "protected": branch.protected,
            "archived": branch.archived,
            "snapshot": branch.snapshot,
            "description": branch.description,
            "project": branch.project or projects.DEFAULT,
            "expires": branch.expires,
            "default": self.catalog.default_branch == branch.name,
            "tags": tags,
        }

    async def _stats(self, branch: Branch) -> dict[str, Any]:
        changed = await self.db.command(
            INTERNAL_DB, {"count": "wal", "query": {"branch_id": branch.id}}
        )
        collections, docs, size = [], 0, 0
        for ov in self.catalog.overlays.values():
            if ov.branch_id != branch.id:
                continue
            try:
                st = await self.db.command(ov.db, {"collStats": ov.name})
            except ArgonError:
                continue
            docs += int(st.get("count", 0))
            size += int(st.get("size", 0))
            collections.append(f"{ov.db}.{ov.coll}")
        return {
            "changes": int(changed["n"]),
            "overlay_documents": docs,
            "overlay_bytes": size,
            "collections": sorted(collections),
        }

    async def _status(self, cmd: dict[str, Any]) -> dict[str, Any]:
        return {
            "version": __version__,
            "default_branch": self.catalog.default_branch,
            # the hidden snapshots behind time-travel addresses are not branches of anyone's
            "branches": sum(
                not b.time_travel and b.name not in self.catalog.pending
                for b in self.catalog.branches.values()
            ),
            "lsn": await self.catalog.current_lsn(),
            "upstream": str(self.db.pool.address),  # the primary, once found
        }

    async def _create(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """A new branch from ``from`` (a branch, tag or branch@point; default main), as it
        is now or at ``lsn`` / ``time``."""
        name = validate_branch_name(_arg(cmd, "name", required=True))
        if await refs.find_tag(self.db, name) is not None:
            raise ArgonError(
                TAG_EXISTS, f"a tag named {name!r} exists; branch names and tags differ"
            )
        start = await refs.point(self.db, self.catalog, _arg(cmd, "from", MAIN))
        parent, lsn = start.branch, start.lsn
        project = (
            projects.project_of(self.catalog, cmd.get("project"))
            if "project" in cmd
            else parent.project
        )
        if parent.project is not None and project != parent.project:
            raise ArgonError(
                BAD_VALUE,
                f"createBranch: {parent.name!r} is in project {parent.project!r}; its branches "
                "stay in it",
            )
        if cmd.get("lsn") is not None or cmd.get("time") is not None:
            if lsn is not None:
                raise ArgonError(BAD_VALUE, "createBranch: 'from' names a point already")
            point = _point_arg(cmd)
            lsn = await timetravel.resolve_point(self.db, self.catalog, parent, point)
        description = cmd.get("description")
        if lsn is None:
            branch = await self.catalog.create_branch(
                name, parent.name, description=description, project=project
            )
        else:
            # stored once complete: nobody reads it half-built, and a concurrent
            # creator of the same name wins or loses as a whole
            branch = await timetravel.build_at(
                self.db,
                self.catalog,
                self.writer,
                parent,
                lsn,
                name,
                read_only=False,
                point=f"lsn-{lsn}",
                store_last=True,
            )
            await self.catalog.update(branch, description=description, project=project)
        if cmd.get("ttl") is not None or cmd.get("expires") is not None:
            await self._expiry({"name": name, "ttl": cmd.get("ttl"), "expires": cmd.get("expires")})
        return {"branch": await self.describe(branch)}

    async def _expiry(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Set (``expires``: a time, or ``ttl``: seconds from now) or clear a branch's expiry."""
        branch = await self.catalog.get(_arg(cmd, "name", required=True))
        if branch.name == MAIN:
            raise ArgonError(BAD_VALUE, "the main branch cannot expire")
        expires = cmd.get("expires")
        if cmd.get("ttl") is not None:
            expires = now() + dt.timedelta(seconds=float(cmd["ttl"]))
        if expires is not None and not isinstance(expires, dt.datetime):
            raise ArgonError(BAD_VALUE, "setBranchExpiry: 'expires' is a date, 'ttl' seconds")
        await self.catalog.update(branch, expires=expires)
        return {"branch": await self.describe(branch)}

    async def _snapshot(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """An immutable, named branch: ``branch`` as it is now. O(1) like any branch."""
        name = validate_branch_name(_arg(cmd, "name", required=True))
        if await refs.find_tag(self.db, name) is not None:
            raise ArgonError(
                TAG_EXISTS, f"a tag named {name!r} exists; snapshot names and tags differ"
            )
        source = await self.catalog.get(_arg(cmd, "branch", MAIN))
        lsn = await history.head(self.catalog, source)
        branch = await self.catalog.create_branch(
            name,
            source.name,
            read_only=True,
            point=f"lsn-{lsn}",
            snapshot=True,
            description=cmd.get("description"),
        )
        return {"branch": await self.describe(branch)}

    async def _archive(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Keep a branch readable but frozen, and out of the default listing."""
        branch = await self.catalog.get(_arg(cmd, "name", required=True))
        if branch.name == MAIN:
            raise ArgonError(BAD_VALUE, "the main branch cannot be archived")
        await self.catalog.update(branch, archived=True, read_only=True)
        if self.catalog.default_branch == branch.name:
            await self.catalog.set_default(MAIN)
        return {"branch": await self.describe(branch)}

    async def _time_travel_info(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Earliest and latest reachable LSN and time of a branch (all branches if no name)."""
        names = [cmd["name"]] if cmd.get("name") else sorted(self.catalog.branches)
        project = cmd.get("project")
        infos = []
        for name in names:
            branch = await self.catalog.get(name)
            if project is not None and not projects.belongs(self.catalog, branch, project):
                if cmd.get("name"):
                    raise ArgonError(
                        BAD_VALUE, f"branch {branch.name!r} is not in project {project!r}"
                    )
                continue
            if "@" not in branch.name:
                infos.append(await timetravel.reachable(self.db, self.catalog, branch))
        return {"branches": infos}

    async def _list(self, cmd: dict[str, Any]) -> dict[str, Any]:
        await self.catalog.refresh()  # other proxies' changes; a full reload only then
        stored = [b for b in self.catalog.branches.values() if b.name not in self.catalog.pending]
        branches = sorted(stored, key=lambda b: (b.name != MAIN, b.name))
        if not cmd.get("all"):
            branches = [b for b in branches if "@" not in b.name and not b.archived]
        if cmd.get("project") is not None:
            branches = [b for b in branches if projects.belongs(self.catalog, b, cmd["project"])]
        described = await self.describe_all(branches)
        if cmd.get("stats"):  # changes and overlay sizes: a few queries per branch
            for branch, info in zip(branches, described, strict=True):
                info["stats"] = await self._stats(branch)
        return {"branches": described}

    async def _get(self, cmd: dict[str, Any]) -> dict[str, Any]:
        branch = await self.catalog.get(_arg(cmd, "name", required=True))
        return {"branch": await self.describe(branch, stats=True)}

    async def _delete(self, cmd: dict[str, Any]) -> dict[str, Any]:
        return await delete_branch(self.db, self.catalog, _arg(cmd, "name", required=True))

    async def _switch(self, cmd: dict[str, Any]) -> dict[str, Any]:
        name = _arg(cmd, "name", required=True)
        await self.catalog.set_default(name)
        return {"default_branch": name}


async def delete_branch(db: DbClient, catalog: Catalog, name: str) -> dict[str, Any]:
    """Delete a branch, its time-travel snapshots, overlays and tags."""
    await catalog.get(name)
    for snapshot in catalog.children(name):
        if "@" in snapshot.name:  # snapshots made for time-travel addresses go with it
            await delete_branch(db, catalog, snapshot.name)
    gone = await catalog.delete_branch(name)
    tags = await refs.tags_of(db, name)
    await db.command(
        INTERNAL_DB, {"delete": "tags", "deletes": [{"q": {"branch": name}, "limit": 0}]}
    )
    await catalog.drop_overlays(gone)
    return {"deleted": name, "overlays_dropped": len(gone), "tags_deleted": tags}
