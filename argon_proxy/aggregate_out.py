"""``aggregate`` ending in ``$out``, on any branch, through the write path.

Theory of operation: ``$out`` replaces the target collection with the
pipeline's results. Letting mongod write them would bypass the WAL and, on a
branch, write into the wrong collection. So the pipeline without its
``$out`` runs as a read of the branch (rewritten like any aggregate), and
the target is then made to hold exactly those documents with
``Writer.put_many``: one statement, one transaction, one WAL entry per
document that changes, frozen into children like every write. Readers see
the old target or the new one, never a mix. Replacements larger than one
transaction should hold are refused rather than done in parts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import bson

from . import projects
from .catalog import Branch, hashable_id
from .errors import BAD_VALUE, ArgonError
from .naming import INTERNAL_DB, is_internal
from .reads import unsupported
from .wal import ClientIdentity
from .writes import WriteContext, duplicate_key

if TYPE_CHECKING:
    from .engine import Engine

MAX_DOCUMENTS = 10_000  # target before + results: what one transaction carries safely
_PASSED = ("aggregate", "pipeline", "collation", "let", "allowDiskUse", "hint", "comment")


def ends_in_out(cmd: dict[str, Any]) -> bool:
    pipeline = cmd.get("pipeline")
    return (
        isinstance(pipeline, list)
        and bool(pipeline)
        and isinstance(pipeline[-1], dict)
        and "$out" in pipeline[-1]
    )


def _target(db: str, spec: Any) -> tuple[str, str]:
    if isinstance(spec, str):
        return db, spec
    if isinstance(spec, dict) and set(spec) <= {"db", "coll"} and isinstance(spec.get("coll"), str):
        return str(spec.get("db", db)), spec["coll"]
    raise ArgonError(BAD_VALUE, "$out takes a collection name or {db, coll}")


async def run(
    engine: Engine, branch: Branch, db: str, cmd: dict[str, Any], client: ClientIdentity
) -> dict[str, Any]:
    """Run ``cmd`` (an aggregate ending in ``$out``) on ``branch``."""
    if branch.read_only:
        raise unsupported("aggregate with $out", branch.name, "the branch is read-only")
    pipeline = list(cmd["pipeline"])
    target_db, target = _target(db, pipeline.pop()["$out"])
    if is_internal(target) or target_db == INTERNAL_DB or not target:
        raise ArgonError(73, f"Invalid $out namespace '{target_db}.{target}'")
    projects.check(engine, branch, target_db)
    read = {k: v for k, v in cmd.items() if k in _PASSED}
    read.update(pipeline=pipeline, cursor={})
    rewritten = await engine.reader.aggregate(branch, db, read)
    results = [d async for d in engine.db.cursor(db, rewritten or read)]
    before = await _ids(engine, branch, target_db, target)
    if len(before) + len(results) > MAX_DOCUMENTS:
        raise unsupported(
            f"aggregate with $out of {len(results)} documents over {len(before)}",
            branch.name,
            f"Argon replaces the target in one transaction, up to {MAX_DOCUMENTS} documents",
        )
    wanted: dict[Any, tuple[Any, dict[str, Any] | None]] = {}
    for doc in results:
        doc = doc if "_id" in doc else {"_id": bson.ObjectId(), **doc}
        key = hashable_id(doc["_id"])
        if key in wanted:
            raise duplicate_key(f"{target_db}.{target}", doc["_id"])
        wanted[key] = (doc["_id"], doc)
    for key, raw in before.items():
        wanted.setdefault(key, (raw, None))
    ctx = WriteContext(branch, target_db, target, client)
    await engine.writer.put_many(ctx, list(wanted.values()))
    if not results and not before:
        await _create(engine, branch, target_db, target)
    ns = f"{db}.{cmd['aggregate']}" if isinstance(cmd.get("aggregate"), str) else f"{db}.$cmd"
    return {"cursor": {"id": bson.Int64(0), "ns": ns, "firstBatch": []}, "ok": 1.0}


async def _ids(engine: Engine, branch: Branch, db: str, coll: str) -> dict[Any, Any]:
    """Every ``_id`` of the target as the branch sees it."""
    read = {"aggregate": coll, "pipeline": [{"$project": {"_id": 1}}], "cursor": {}}
    rewritten = await engine.reader.aggregate(branch, db, read)
    return {hashable_id(d["_id"]): d["_id"] async for d in engine.db.cursor(db, rewritten or read)}


async def _create(engine: Engine, branch: Branch, db: str, coll: str) -> None:
    """An empty result still leaves the target existing, as on mongod."""
    listed = await engine.reader.list_collections(branch, db, {"filter": {"name": coll}})
    if listed["cursor"]["firstBatch"]:
        return
    await engine.route_create(branch, db, coll)
