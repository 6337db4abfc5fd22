"""``aggregate`` ending in ``$out`` or ``$merge``, on any branch, through the write path.

Theory of operation: ``$out`` replaces the target collection with the
pipeline's results. Letting mongod write them would bypass the WAL and, on a
branch, write into the wrong collection. So the pipeline without its
``$out`` runs as a read of the branch (rewritten like any aggregate), and
the target is then made to hold exactly those documents with
``Writer.put_many``: one statement, one transaction, one WAL entry per
document that changes, frozen into children like every write. ``$merge``
works the same way on the documents its results match by ``_id``
(``whenMatched`` replace, keepExisting, merge or fail; ``whenNotMatched``
insert, discard or fail), and on other ``on`` fields (``merge_on_fields.py``);
a pipeline ``whenMatched`` is refused. Readers see
the old target or the new one, never a mix. Replacements larger than one
transaction should hold are refused rather than done in parts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import bson

from . import projects
from .catalog import Branch, Catalog, hashable_id
from .dbclient import DbClient
from .errors import BAD_VALUE, INVALID_OPTIONS, ArgonError
from .merge_on_fields import on_fields, planned_writes
from .naming import INTERNAL_DB, is_internal
from .reads import Reader, unsupported
from .view import fetch
from .wal import ClientIdentity
from .write_context import Outcome, WriteContext, duplicate_key
from .writes import Writer

if TYPE_CHECKING:
    from .branch_collections import BranchCollections  # which builds on this module

MAX_DOCUMENTS = 10_000  # target before + results: what one transaction carries safely
_PASSED = ("aggregate", "pipeline", "collation", "let", "allowDiskUse", "hint", "comment")


def ends_in_write(cmd: dict[str, Any]) -> bool:
    """Whether ``cmd`` is an aggregate whose last stage is ``$out`` or ``$merge``."""
    pipeline = cmd.get("pipeline")
    return (
        isinstance(pipeline, list)
        and bool(pipeline)
        and isinstance(pipeline[-1], dict)
        and len(pipeline[-1]) == 1
        and next(iter(pipeline[-1])) in ("$out", "$merge")
    )


def _target(db: str, spec: Any) -> tuple[str, str]:
    if isinstance(spec, str):
        return db, spec
    if isinstance(spec, dict) and set(spec) <= {"db", "coll"} and isinstance(spec.get("coll"), str):
        return str(spec.get("db", db)), spec["coll"]
    raise ArgonError(BAD_VALUE, "$out and $merge name a collection or {db, coll}")


_MERGE_KEYS = {"into", "on", "whenMatched", "whenNotMatched", "let"}


def _merge_spec(spec: Any, branch: Branch) -> tuple[Any, str, str, tuple[str, ...]]:
    """``into``, ``whenMatched``, ``whenNotMatched`` and ``on`` of a ``$merge`` Argon
    can run."""
    if isinstance(spec, str):
        return spec, "merge", "insert", ("_id",)
    if not isinstance(spec, dict) or set(spec) - _MERGE_KEYS or "into" not in spec:
        raise ArgonError(BAD_VALUE, "$merge takes into, on, whenMatched, whenNotMatched, let")
    on = on_fields(spec)
    matched, not_matched = spec.get("whenMatched", "merge"), spec.get("whenNotMatched", "insert")
    if matched not in ("replace", "keepExisting", "merge", "fail"):
        raise unsupported(f"$merge with whenMatched {matched!r}", branch.name)
    if not_matched not in ("insert", "discard", "fail"):
        raise ArgonError(BAD_VALUE, f"$merge: unknown whenNotMatched {not_matched!r}")
    return spec["into"], matched, not_matched, on


class AggregateOut:
    """Aggregates ending in ``$out`` or ``$merge``, with the services they use."""

    def __init__(
        self,
        db: DbClient,
        catalog: Catalog,
        reader: Reader,
        writer: Writer,
        collections: BranchCollections,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.reader = reader
        self.writer = writer
        self.collections = collections

    async def run(
        self, branch: Branch, db: str, cmd: dict[str, Any], client: ClientIdentity
    ) -> dict[str, Any]:
        """Run ``cmd`` (an aggregate ending in ``$out``) on ``branch``."""
        if branch.read_only:
            raise unsupported("aggregate with $out", branch.name, "the branch is read-only")
        pipeline = list(cmd["pipeline"])
        stage, spec = next(iter(pipeline.pop().items()))
        modes = _merge_spec(spec, branch) if stage == "$merge" else None
        target_db, target = _target(db, modes[0] if modes else spec)
        if is_internal(target) or target_db == INTERNAL_DB or not target:
            raise ArgonError(73, f"Invalid {stage} namespace '{target_db}.{target}'")
        projects.check(self.catalog, branch, target_db)
        read_concern = cmd.get("readConcern")
        if (
            isinstance(read_concern, dict) and read_concern.get("level") == "linearizable"
        ):  # as mongod: a write stage reads no such thing
            raise ArgonError(
                INVALID_OPTIONS, f"{stage} cannot be used with a 'linearizable' read concern level"
            )
        read = {k: v for k, v in cmd.items() if k in _PASSED}
        read.update(pipeline=pipeline, cursor={})
        rewritten = await self.reader.aggregate(branch, db, read)
        results = [d async for d in self.db.cursor(db, rewritten or read)]
        concern = cmd.get("writeConcern")
        ctx = WriteContext(
            branch,
            target_db,
            target,
            client,
            write_concern=concern if isinstance(concern, dict) else None,
        )
        ns = f"{db}.{cmd['aggregate']}" if isinstance(cmd.get("aggregate"), str) else f"{db}.$cmd"
        reply = {"cursor": {"id": bson.Int64(0), "ns": ns, "firstBatch": []}, "ok": 1.0}
        if modes is not None:
            if modes[3] != ("_id",) and "collation" in cmd:
                raise unsupported(
                    "$merge on fields other than _id with a collation",
                    branch.name,
                    "Argon pairs results with the target's documents by exact BSON equality",
                )
            merged = await self._merge(ctx, results, modes[1:])
            return _with_concern_error(reply, merged)
        before = await self._ids(branch, target_db, target)
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
        outcome = await self.writer.put_many(ctx, list(wanted.values()))
        if not results and not before:
            await self._create(branch, target_db, target)
        return _with_concern_error(reply, outcome)

    async def _merge(
        self,
        ctx: WriteContext,
        results: list[dict[str, Any]],
        modes: tuple[str, str, tuple[str, ...]],
    ) -> Outcome | None:
        """Write ``results`` into the target as ``$merge`` does; ``modes``: its
        ``whenMatched``, ``whenNotMatched`` and ``on`` fields."""
        when_matched, when_not_matched, on = modes
        if len(results) > MAX_DOCUMENTS:
            raise unsupported(
                f"aggregate with $merge of {len(results)} documents",
                ctx.branch.name,
                f"Argon writes them in one transaction, up to {MAX_DOCUMENTS} documents",
            )
        if on != ("_id",):
            planned = await planned_writes(
                self.db,
                self.catalog,
                self.reader,
                ctx,
                results,
                on,
                (when_matched, when_not_matched),
            )
            return await self.writer.put_many(ctx, list(planned.values())) if planned else None
        results = [d if "_id" in d else {"_id": bson.ObjectId(), **d} for d in results]
        current = await fetch(
            self.db, self.catalog, ctx.branch, ctx.db, ctx.coll, [d["_id"] for d in results]
        )
        writes: dict[Any, tuple[Any, dict[str, Any] | None]] = {}
        for doc in results:
            key = hashable_id(doc["_id"])
            have = writes[key][1] if key in writes else current.get(key)
            if have is None:
                if when_not_matched == "fail":
                    raise ArgonError(
                        13113, f"$merge could not find a matching document for {doc['_id']!r}"
                    )
                if when_not_matched == "insert":
                    writes[key] = (doc["_id"], doc)
            elif when_matched == "fail":
                raise duplicate_key(ctx.ns, doc["_id"])
            elif when_matched == "replace":
                writes[key] = (doc["_id"], doc)
            elif when_matched == "merge":
                writes[key] = (doc["_id"], {**have, **doc})
        if not writes:  # nothing to write leaves even a missing target missing, as on mongod
            return None
        return await self.writer.put_many(ctx, list(writes.values()))

    async def _ids(self, branch: Branch, db: str, coll: str) -> dict[Any, Any]:
        """Every ``_id`` of the target as the branch sees it."""
        read = {"aggregate": coll, "pipeline": [{"$project": {"_id": 1}}], "cursor": {}}
        rewritten = await self.reader.aggregate(branch, db, read)
        return {
            hashable_id(d["_id"]): d["_id"] async for d in self.db.cursor(db, rewritten or read)
        }

    async def _create(self, branch: Branch, db: str, coll: str) -> None:
        """An empty result still leaves the target existing, as on mongod."""
        listed = await self.reader.list_collections(branch, db, {"filter": {"name": coll}})
        if listed["cursor"]["firstBatch"]:
            return
        await self.collections.create_on(branch, db, coll)


def _with_concern_error(reply: dict[str, Any], outcome: Outcome | None) -> dict[str, Any]:
    """The reply with what the commit said of the client's write concern."""
    if outcome is not None and outcome.write_concern_error:
        reply["writeConcernError"] = outcome.write_concern_error
    return reply
