"""Argon's admin commands, reached as ``db.command({"argon": "<action>", ...})``.

Theory of operation: the CLI, the SDK and mongosh all send these through the
wire protocol, so every operation exists once, here. Each action takes plain
arguments and answers a plain document with ``ok: 1``; failures are raised as
``ArgonError`` with a code and a message that says what to do.

Actions: ``status``, ``createBranch`` (``name``, ``from``), ``listBranches``,
``getBranch`` (``name``), ``deleteBranch`` (``name``), ``switchBranch``
(``name``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import __version__, timetravel
from .catalog import Branch
from .errors import BAD_VALUE, COMMAND_NOT_FOUND, ArgonError
from .naming import INTERNAL_DB, MAIN, validate_branch_name

if TYPE_CHECKING:
    from .engine import Engine


async def handle(engine: Engine, cmd: dict[str, Any]) -> dict[str, Any]:
    action = cmd.get("argon")
    handler = _ACTIONS.get(str(action))
    if handler is None:
        raise ArgonError(
            COMMAND_NOT_FOUND,
            f"unknown argon action {action!r}; one of: {', '.join(sorted(_ACTIONS))}",
        )
    reply = await handler(engine, cmd)
    reply["ok"] = 1.0
    return reply


def _arg(cmd: dict[str, Any], key: str, default: Any = None, *, required: bool = False) -> Any:
    value = cmd.get(key, default)
    if required and value is None:
        raise ArgonError(BAD_VALUE, f"argon {cmd.get('argon')}: the {key!r} argument is required")
    return value


async def describe(engine: Engine, branch: Branch, *, stats: bool = False) -> dict[str, Any]:
    """A branch as the CLI and SDK show it."""
    head = await engine.db.find(
        INTERNAL_DB,
        "wal",
        {"branch": branch.name},
        sort={"_id": -1},
        limit=1,
        projection={"_id": 1, "ts": 1},
    )
    info: dict[str, Any] = {
        "name": branch.name,
        "parent": branch.parent,
        "base_lsn": branch.base_lsn,
        "head_lsn": int(head[0]["_id"]) if head else branch.base_lsn,
        "created": branch.created,
        "last_activity": head[0]["ts"] if head else branch.created,
        "read_only": branch.read_only,
        "default": engine.catalog.default_branch == branch.name,
    }
    if stats:
        info["stats"] = await _stats(engine, branch)
    return info


async def _stats(engine: Engine, branch: Branch) -> dict[str, Any]:
    changed = await engine.db.command(
        INTERNAL_DB, {"count": "wal", "query": {"branch": branch.name}}
    )
    collections, docs, size = [], 0, 0
    for ov in engine.catalog.overlays.values():
        if ov.branch_id != branch.id:
            continue
        try:
            st = await engine.db.command(ov.db, {"collStats": ov.name})
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


async def _status(engine: Engine, cmd: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": __version__,
        "default_branch": engine.catalog.default_branch,
        "branches": len(engine.catalog.branches),
        "lsn": await engine.catalog.current_lsn(),
        "upstream": str(engine.pool.address),
    }


async def _create(engine: Engine, cmd: dict[str, Any]) -> dict[str, Any]:
    """A new branch from ``from`` (default main), as it is now or at ``lsn`` / ``time``."""
    name = _arg(cmd, "name", required=True)
    parent = await engine.catalog.get(_arg(cmd, "from", MAIN))
    point = None
    if cmd.get("lsn") is not None:
        point = f"lsn-{int(cmd['lsn'])}"
    elif cmd.get("time") is not None:
        when = cmd["time"]
        point = when.isoformat() if hasattr(when, "isoformat") else str(when)
    if point is None:
        branch = await engine.catalog.create_branch(name, parent.name)
    else:
        validate_branch_name(name)
        lsn = await timetravel.resolve_point(engine, parent, point)
        branch = await timetravel.build_at(
            engine, parent, lsn, name, read_only=False, point=f"lsn-{lsn}"
        )
    return {"branch": await describe(engine, branch)}


async def _time_travel_info(engine: Engine, cmd: dict[str, Any]) -> dict[str, Any]:
    """Earliest and latest reachable LSN and time of a branch (all branches if no name)."""
    names = [cmd["name"]] if cmd.get("name") else sorted(engine.catalog.branches)
    infos = []
    for name in names:
        branch = await engine.catalog.get(name)
        if "@" not in branch.name:
            infos.append(await timetravel.reachable(engine, branch))
    return {"branches": infos}


async def _list(engine: Engine, cmd: dict[str, Any]) -> dict[str, Any]:
    await engine.catalog.reload()
    branches = sorted(engine.catalog.branches.values(), key=lambda b: (b.name != MAIN, b.name))
    return {"branches": [await describe(engine, b) for b in branches]}


async def _get(engine: Engine, cmd: dict[str, Any]) -> dict[str, Any]:
    branch = await engine.catalog.get(_arg(cmd, "name", required=True))
    return {"branch": await describe(engine, branch, stats=True)}


async def _delete(engine: Engine, cmd: dict[str, Any]) -> dict[str, Any]:
    name = _arg(cmd, "name", required=True)
    await engine.catalog.get(name)
    for snapshot in engine.catalog.children(name):
        if "@" in snapshot.name:  # snapshots made for time-travel addresses go with it
            await _delete(engine, {"name": snapshot.name})
    gone = await engine.catalog.delete_branch(name)
    for ov in gone:
        try:
            await engine.db.command(ov.db, {"drop": ov.name})
        except ArgonError as exc:
            if exc.code != 26:  # already gone
                raise
    return {"deleted": name, "overlays_dropped": len(gone)}


async def _switch(engine: Engine, cmd: dict[str, Any]) -> dict[str, Any]:
    name = _arg(cmd, "name", required=True)
    await engine.catalog.set_default(name)
    return {"default_branch": name}


_ACTIONS = {
    "status": _status,
    "createBranch": _create,
    "listBranches": _list,
    "getBranch": _get,
    "deleteBranch": _delete,
    "switchBranch": _switch,
    "timeTravelInfo": _time_travel_info,
}
