"""Change streams on a branch: the branch's own changes, as mongod reports them.

Theory of operation: every change to a branch's view is a WAL entry of that
branch, inserted in the same upstream transaction as the change, and dropping
a collection on a branch turns its overlay's registration absent. So a change
stream on a branch is a change stream on Argon's own database that mongod
filters down to that branch's WAL inserts and overlay drops in the watched
namespaces; each of those events is reshaped here into the event mongod would
have reported for the branch's collection (operation type, namespace,
document key, full document and pre-image from the entry's images, an update
description worked out from them). What the WAL does not record, a branch's
dropped database, renamed collection and, for ``showExpandedEvents``, its
created collections, index changes and ``collMod``, it marks with a marker
document inserted and removed at once (``mark``); the documents and drop a
rename moves carry a flag that keeps them out. The upstream's resume tokens and cluster
times are kept, so ``resumeAfter``, ``startAfter``, ``startAtOperationTime``
and ``postBatchResumeToken`` behave as the upstream's do; the one token Argon
makes is an ``invalidate`` event's, which only ``startAfter`` accepts. The
client's own stages after ``$changeStream`` run on mongod over the reshaped
events (a ``$documents`` pipeline), never in Argon. The cursor id is the
upstream's; ``getMore`` and ``killCursors`` for it are answered here.
"""

from __future__ import annotations

import contextlib
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import bson

from . import update_description, wal
from .catalog import Branch, hashable_id, overlay_key
from .dbclient import DbClient
from .documents import view_docs
from .errors import BAD_VALUE, ILLEGAL_OPERATION, NOT_IN_TRANSACTION, ArgonError
from .naming import INTERNAL_DB
from .reads import Reader
from .stream_marks import MARKS, MOVED

# The collections of Argon's database whose changes make a branch's events: the WAL,
# the overlays' registrations (a drop turns one absent), and the markers (``mark``).
_WAL, _OVERLAYS = "wal", "overlays"
_ALWAYS_MARKED = ("dropDatabase", "rename")
_EXPANDED_MARKED = ("create", "createIndexes", "dropIndexes", "modify")
_UPSTREAM_NS = "$cmd.aggregate"  # a database-wide stream's cursor namespace
_FULL_DOCUMENT = frozenset({"default", "updateLookup", "whenAvailable", "required"})
_BEFORE_CHANGE = frozenset({"off", "whenAvailable", "required"})
# Stages mongod allows after $changeStream.
_ALLOWED_STAGES = frozenset(
    {
        "$match",
        "$project",
        "$addFields",
        "$set",
        "$unset",
        "$replaceRoot",
        "$replaceWith",
        "$redact",
        "$changeStreamSplitLargeEvent",
    }
)
# Other stages mongod knows (a change stream refuses them with IllegalOperation);
# a name it does not know is refused first, while the pipeline is parsed.
_OTHER_STAGES = frozenset(
    {
        "$bucket", "$bucketAuto", "$changeStream", "$collStats", "$count", "$currentOp",
        "$densify", "$documents", "$facet", "$fill", "$geoNear", "$graphLookup", "$group",
        "$indexStats", "$limit", "$listLocalSessions", "$listSampledQueries",
        "$listSearchIndexes", "$listSessions", "$lookup", "$merge", "$out",
        "$planCacheStats", "$querySettings", "$queryStats", "$sample", "$search",
        "$searchMeta", "$setWindowFields", "$shardedDataDistribution", "$skip", "$sort",
        "$sortByCount", "$unionWith", "$unwind", "$vectorSearch",
    }
)  # fmt: skip
UNRECOGNIZED_STAGE = 40324  # mongod: "Unrecognized pipeline stage name"
# mongod's order of an event's fields.
_FIELD_ORDER = (
    "_id",
    "operationType",
    "clusterTime",
    "wallTime",
    "fullDocument",
    "ns",
    "documentKey",
    "updateDescription",
    "fullDocumentBeforeChange",
)
_INVALIDATE_MARK = "argonInvalidate"  # in the token of an invalidate event Argon made
_MAX_STAGED_BYTES = 8 * 1024 * 1024  # events sent to mongod per $documents pipeline
NO_MATCHING_DOCUMENT, INVALID_RESUME_TOKEN, CHANGE_STREAM_FATAL = 47, 260, 280


def is_change_stream(cmd: Mapping[str, Any]) -> bool:
    """Whether ``cmd`` is an ``aggregate`` that opens a change stream."""
    pipeline = cmd.get("pipeline")
    return (
        isinstance(pipeline, list)
        and bool(pipeline)
        and isinstance(pipeline[0], Mapping)
        and "$changeStream" in pipeline[0]
    )


@dataclass(frozen=True, slots=True)
class Scope:
    """What a stream watches on its branch: one collection, one database (``coll``
    None) or every database (``db`` None too). ``suffix`` follows a database name as
    the client wrote it (``"@exp"`` or ``""``), so events name what it addressed."""

    branch: Branch
    db: str | None
    coll: str | None
    suffix: str
    expanded: bool = False  # showExpandedEvents: DDL events and collection UUIDs too

    def upstream_match(self) -> dict[str, Any]:
        """mongod's filter for this scope's events among Argon's database's changes."""
        if self.db is None:
            ns: Any = {"$regex": "."}
            key: Any = {"$regex": f"^{re.escape(self.branch.id)}\\|"}
        elif self.coll is None:
            ns = {"$regex": f"^{re.escape(self.db)}\\."}
            key = {"$regex": f"^{re.escape(overlay_key(self.branch.id, self.db, ''))}"}
        else:
            ns = f"{self.db}.{self.coll}"
            key = overlay_key(self.branch.id, self.db, self.coll)
        changes = {
            "ns.coll": _WAL,
            "operationType": "insert",
            "fullDocument.branch_id": self.branch.id,
            "fullDocument.ns": ns,
            f"fullDocument.{MOVED}": {"$exists": False},
        }
        drops = {
            "ns.coll": _OVERLAYS,
            "operationType": "update",
            "documentKey._id": key,
            "updateDescription.updatedFields.present": False,
            f"updateDescription.updatedFields.{MOVED}": {"$ne": True},
        }
        kinds = [*_ALWAYS_MARKED, *(_EXPANDED_MARKED if self.expanded else ())]
        if self.coll is not None:
            kinds.remove("dropDatabase")  # a collection's stream sees its drop instead
        marks: dict[str, Any] = {"ns.coll": MARKS, "operationType": "insert"}
        marks["fullDocument.branch_id"] = self.branch.id
        marks["fullDocument.kind"] = {"$in": kinds}
        if self.db is not None:
            marks["fullDocument.db"] = self.db
        if self.coll is not None:
            marks["fullDocument.coll"] = self.coll
        return {"$match": {"$or": [changes, drops, marks]}}


@dataclass
class _Stream:
    """An open stream: its scope and options, and what it has learnt."""

    scope: Scope
    ns: str  # the cursor's namespace, as the client named it
    full_document: str
    before_change: str
    stages: list[Any]
    collation: Any
    images: dict[str, bool] = field(default_factory=dict)  # ns -> pre/post images kept
    uuids: dict[str, Any] = field(default_factory=dict)  # ns -> UUID, once known


class BranchStreams:
    """Change streams open on branches, by cursor id."""

    def __init__(self, db: DbClient, reader: Reader, limit: int = 1000) -> None:
        self.db = db
        self.reader = reader
        self.limit = limit
        self._open: OrderedDict[int, _Stream] = OrderedDict()

    def __len__(self) -> int:
        return len(self._open)

    def __contains__(self, cursor_id: object) -> bool:
        return cursor_id in self._open

    async def open(
        self, branch: Branch, db: str, cmd: Mapping[str, Any], joined: bool
    ) -> dict[str, Any]:
        """Answer an ``aggregate`` opening a change stream on ``branch``."""
        if joined:
            raise ArgonError(
                NOT_IN_TRANSACTION,
                "Operation not permitted in transaction :: caused by :: $changeStream "
                "cannot run in a transaction",
            )
        pipeline = list(cmd["pipeline"])
        spec = pipeline[0]["$changeStream"]
        if not isinstance(spec, Mapping):
            raise ArgonError(
                6188500, f"$changeStream must take a nested object but found: {spec!r}"
            )
        stream = self._stream(branch, db, cmd, dict(spec), pipeline[1:])
        upstream_spec = _upstream_spec(spec)
        upstream: dict[str, Any] = {
            "aggregate": 1,
            "pipeline": [{"$changeStream": upstream_spec}, stream.scope.upstream_match()],
            "cursor": cmd.get("cursor", {}),
        }
        for key in ("maxTimeMS", "comment", "readConcern"):
            if key in cmd:
                upstream[key] = cmd[key]
        reply = await self.db.command(INTERNAL_DB, upstream)
        cursor = reply["cursor"]
        batch, token, closed = await self._events(stream, cursor.get("firstBatch", []))
        cursor_id = 0 if closed else int(cursor.get("id", 0))
        if closed and cursor.get("id"):
            await self._kill_upstream([cursor["id"]])
        if cursor_id:
            self._remember(cursor_id, stream)
        out = {"firstBatch": batch, "id": bson.Int64(cursor_id), "ns": stream.ns}
        out["postBatchResumeToken"] = token or cursor.get("postBatchResumeToken")
        return {"cursor": out, "ok": 1.0}

    async def get_more(self, cursor_id: int, cmd: Mapping[str, Any]) -> dict[str, Any]:
        """The next batch of an open stream (the client's ``getMore``)."""
        stream = self._open[cursor_id]
        self._open.move_to_end(cursor_id)
        upstream: dict[str, Any] = {"getMore": bson.Int64(cursor_id), "collection": _UPSTREAM_NS}
        for key in ("batchSize", "maxTimeMS", "comment"):
            if key in cmd:
                upstream[key] = cmd[key]
        try:
            reply = await self.db.command(INTERNAL_DB, upstream)
        except ArgonError:
            self._open.pop(cursor_id, None)  # mongod's cursor is gone after a failed getMore
            raise
        cursor = reply["cursor"]
        batch, token, closed = await self._events(stream, cursor.get("nextBatch", []))
        remaining = 0 if closed else int(cursor.get("id", 0))
        if closed and cursor.get("id"):
            await self._kill_upstream([cursor["id"]])
        if not remaining:
            self._open.pop(cursor_id, None)
        out = {"nextBatch": batch, "id": bson.Int64(remaining), "ns": stream.ns}
        out["postBatchResumeToken"] = token or cursor.get("postBatchResumeToken")
        return {"cursor": out, "ok": 1.0}

    async def kill(self, ids: list[Any]) -> list[Any]:
        """Close the streams among ``ids``; returns their ids."""
        mine = [i for i in ids if i in self._open]
        for i in mine:
            del self._open[i]
        if mine:
            await self._kill_upstream(mine)
        return mine

    # -- opening -----------------------------------------------------------------

    def _stream(
        self,
        branch: Branch,
        db: str,
        cmd: Mapping[str, Any],
        spec: dict[str, Any],
        stages: list[Any],
    ) -> _Stream:
        full = spec.get("fullDocument", "default")
        before = spec.get("fullDocumentBeforeChange", "off")
        for name, value, allowed in (
            ("fullDocument", full, _FULL_DOCUMENT),
            ("fullDocumentBeforeChange", before, _BEFORE_CHANGE),
        ):
            if value not in allowed:
                raise ArgonError(
                    BAD_VALUE,
                    f"Enumeration value '{value}' for field '$changeStream.{name}' is not a "
                    "valid value.",
                )
        for stage in stages:
            name = next(iter(stage), "") if isinstance(stage, Mapping) else ""
            if name not in _ALLOWED_STAGES | _OTHER_STAGES:
                raise ArgonError(UNRECOGNIZED_STAGE, f"Unrecognized pipeline stage name: '{name}'")
            if name not in _ALLOWED_STAGES:
                raise ArgonError(
                    ILLEGAL_OPERATION,
                    f"{name or 'a stage'} is not permitted in a $changeStream pipeline",
                )
        client_db = str(cmd["$db"]).split(".", 1)[0]
        suffix = client_db[len(db) :] if client_db.startswith(db) else ""
        coll = cmd["aggregate"] if isinstance(cmd["aggregate"], str) else None
        watched_db = None if coll is None and db == "admin" else db
        scope = Scope(branch, watched_db, coll, suffix, bool(spec.get("showExpandedEvents")))
        ns = f"{client_db}.{coll if coll is not None else _UPSTREAM_NS}"
        return _Stream(scope, ns, full, before, stages, cmd.get("collation"))

    def _remember(self, cursor_id: int, stream: _Stream) -> None:
        while len(self._open) >= self.limit:  # the upstream times the forgotten one out
            self._open.popitem(last=False)
        self._open[cursor_id] = stream

    async def _kill_upstream(self, ids: list[Any]) -> None:
        cursors = [bson.Int64(i) for i in ids]
        with contextlib.suppress(ArgonError):  # already gone: nothing left to free
            await self.db.command(INTERNAL_DB, {"killCursors": _UPSTREAM_NS, "cursors": cursors})

    # -- events ------------------------------------------------------------------

    async def _events(
        self, stream: _Stream, upstream: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], Any, bool]:
        """The client's events for a batch of upstream ones; the resume token to
        report if Argon ended the batch itself, and whether the stream is over."""
        events: list[dict[str, Any]] = []
        ending: dict[str, Any] | None = None
        lookups: list[dict[str, Any]] = []
        for raw in upstream:
            if raw.get("ns", {}).get("coll") == MARKS:
                event = _marked(stream, raw)
                uuid = raw["fullDocument"].get("uuid")
                if uuid is not None and "coll" in event["ns"]:  # before it was renamed
                    stream.uuids.setdefault(_real_ns(stream, event["ns"]), uuid)
                events.append(event)
                kind = event["operationType"]
                ends_db = kind == "dropDatabase" and stream.scope.coll is None
                ends_coll = kind == "rename" and stream.scope.coll is not None
                if (ends_db and stream.scope.db is not None) or ends_coll:
                    ending = _invalidate_event(raw)
                    break
                continue
            if raw.get("ns", {}).get("coll") == _OVERLAYS:
                events.append(self._drop_event(stream, raw))
                if stream.scope.coll is not None:  # a collection's stream ends there
                    ending = _invalidate_event(raw)
                    break
                continue
            event, lookup = await self._change_event(stream, raw)
            events.append(event)
            if lookup:
                lookups.append(event)
        if lookups:
            await self._look_up(stream, lookups)
        if stream.scope.expanded:
            for event in events:
                await self._add_uuid(stream, event)
        events = [_ordered(e) for e in events]
        if stream.stages and events:
            events = await self._staged(stream, events)
        if ending is not None:
            events.append(ending)
            return events, ending["_id"], True
        return events, None, False

    async def _change_event(
        self, stream: _Stream, raw: Mapping[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """The event of one WAL entry; True if its full document is to be looked up."""
        entry = raw["fullDocument"]
        db, coll = str(entry["ns"]).split(".", 1)
        pre, post = wal.image(entry, "pre"), wal.image(entry, "post")
        op = entry["op"]
        kind = {wal.INSERT: "insert", wal.DELETE: "delete"}.get(op) or (
            "replace" if entry.get(wal.REPLACED) else "update"
        )
        event: dict[str, Any] = {"_id": raw["_id"], "operationType": kind}
        event["clusterTime"] = raw.get("clusterTime")
        if "wallTime" in raw:
            event["wallTime"] = raw["wallTime"]
        event["ns"] = {"db": db + stream.scope.suffix, "coll": coll}
        event["documentKey"] = {"_id": entry["doc_id"]}
        lookup = False
        if kind in ("insert", "replace"):
            event["fullDocument"] = post
        elif kind == "update":
            how = entry.get(wal.HINTS)
            event["updateDescription"] = update_description.describe(
                pre or {}, post or {}, how, expanded=stream.scope.expanded
            )
            if stream.full_document == "updateLookup":
                lookup = True
            elif stream.full_document != "default":
                event["fullDocument"] = await self._image(stream, event, post, pre=False)
        if kind != "insert" and stream.before_change != "off":
            event["fullDocumentBeforeChange"] = await self._image(stream, event, pre, pre=True)
        return event, lookup

    async def _image(self, stream: _Stream, event: dict[str, Any], image: Any, *, pre: bool) -> Any:
        """A pre- or post-image as mongod gives it: only from a collection that keeps
        them (``changeStreamPreAndPostImages``), else null or, if required, an error."""
        mode = stream.before_change if pre else stream.full_document
        if await self._keeps_images(stream, event["ns"]["db"], event["ns"]["coll"]):
            return image
        if mode == "required":
            what = "pre-image" if pre else "post-image"
            raise ArgonError(
                NO_MATCHING_DOCUMENT,
                f"Change stream was configured to require a {what} for all update, delete "
                f"and replace events, but the {what} was not found for event: "
                f"{{documentKey: {event['documentKey']}}} on branch "
                f"{stream.scope.branch.name!r}",
            )
        return None

    async def _keeps_images(self, stream: _Stream, shown_db: str, coll: str) -> bool:
        db = shown_db[: len(shown_db) - len(stream.scope.suffix)]
        key = f"{db}.{coll}"
        if key not in stream.images:
            listed = await self.reader.list_collections(
                stream.scope.branch, db, {"filter": {"name": coll}}
            )
            found = listed["cursor"]["firstBatch"]
            options = found[0].get("options", {}) if found else {}
            images = options.get("changeStreamPreAndPostImages") or {}
            stream.images[key] = bool(images.get("enabled"))
        return stream.images[key]

    async def _add_uuid(self, stream: _Stream, event: dict[str, Any]) -> None:
        """``collectionUUID`` of an event's collection: the UUID of the collection
        that holds it on the branch (its overlay, or main's)."""
        ns = event.get("ns") or {}
        if "coll" not in ns or event["operationType"] in ("invalidate", "dropDatabase"):
            return
        db = ns["db"][: len(ns["db"]) - len(stream.scope.suffix)]
        key = _real_ns(stream, ns)
        if stream.uuids.get(key) is None:
            listed = await self.reader.list_collections(
                stream.scope.branch, db, {"filter": {"name": ns["coll"]}}
            )
            found = listed["cursor"]["firstBatch"]
            stream.uuids[key] = found[0].get("info", {}).get("uuid") if found else None
        if stream.uuids[key] is not None:
            event["collectionUUID"] = stream.uuids[key]

    async def _look_up(self, stream: _Stream, events: list[dict[str, Any]]) -> None:
        """``fullDocument: updateLookup``: each document as the branch holds it now
        (null once deleted), read in one query per collection."""
        by_ns: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for event in events:
            db = event["ns"]["db"][: len(event["ns"]["db"]) - len(stream.scope.suffix)]
            by_ns.setdefault((db, event["ns"]["coll"]), []).append(event)
        for (db, coll), group in by_ns.items():
            view = await self.reader.view(stream.scope.branch, db, coll)
            ids = [e["documentKey"]["_id"] for e in group]
            found = await view_docs(self.db, view, ids)
            for event in group:
                event["fullDocument"] = found.get(hashable_id(event["documentKey"]["_id"]))

    def _drop_event(self, stream: _Stream, raw: Mapping[str, Any]) -> dict[str, Any]:
        key = str(raw["documentKey"]["_id"])
        prefix = f"{stream.scope.branch.id}|"
        db, coll = key[len(prefix) :].split("|", 1)
        event: dict[str, Any] = {
            "_id": raw["_id"],
            "operationType": "drop",
            "clusterTime": raw.get("clusterTime"),
        }
        if "wallTime" in raw:
            event["wallTime"] = raw["wallTime"]
        event["ns"] = {"db": db + stream.scope.suffix, "coll": coll}
        return event

    async def _staged(self, stream: _Stream, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The client's stages applied by mongod to ``events``, which must leave
        every surviving event's resume token as it was."""
        out: list[dict[str, Any]] = []
        for part in _parts(events):
            cmd: dict[str, Any] = {
                "aggregate": 1,
                "pipeline": [{"$documents": part}, *stream.stages],
                "cursor": {},
            }
            if stream.collation is not None:
                cmd["collation"] = stream.collation
            out.extend(await self.db.find_cursor(INTERNAL_DB, cmd))
        tokens = [e["_id"] for e in events]
        for event in out:
            if event.get("_id") not in tokens:
                raise ArgonError(
                    CHANGE_STREAM_FATAL,
                    "Encountered an event whose _id field, which contains the resume token, "
                    "was modified by the pipeline. Modifying the _id field of an event makes "
                    "it impossible to resume the stream from that point. Only "
                    "transformations that retain the unmodified _id field are allowed.",
                    labels=("NonResumableChangeStreamError",),
                )
        return out


def _upstream_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The client's ``$changeStream`` options the upstream applies itself (where to
    start; anything unknown, which it rejects as mongod does)."""
    out = {
        k: v
        for k, v in spec.items()
        if k not in ("fullDocument", "fullDocumentBeforeChange", "allChangesForCluster")
    }
    for key in ("resumeAfter", "startAfter"):
        token = out.get(key)
        if isinstance(token, Mapping) and token.get(_INVALIDATE_MARK):
            if key == "resumeAfter":
                raise ArgonError(
                    INVALID_RESUME_TOKEN,
                    "Attempting to resume a change stream using 'resumeAfter' is not allowed "
                    "from an invalidate notification; use 'startAfter' instead",
                )
            out[key] = {k: v for k, v in token.items() if k != _INVALIDATE_MARK}
    return out


def _marked(stream: _Stream, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The event of a marker (``mark``)."""
    mark = raw["fullDocument"]
    kind = str(mark["kind"])
    event: dict[str, Any] = {
        "_id": raw["_id"],
        "operationType": kind,
        "clusterTime": raw.get("clusterTime"),
    }
    if "wallTime" in raw:
        event["wallTime"] = raw["wallTime"]
    event["ns"] = {"db": str(mark["db"]) + stream.scope.suffix}
    if "coll" in mark:
        event["ns"]["coll"] = mark["coll"]
    description = dict(mark.get("description") or {})
    if kind == "rename":
        to = description["to"]
        event["to"] = {"db": str(to["db"]) + stream.scope.suffix, "coll": to["coll"]}
        description["to"] = event["to"]
    if stream.scope.expanded and kind != "dropDatabase":
        event["operationDescription"] = description
    if kind == "create":
        event["nsType"] = "view" if "viewOn" in description else "collection"
    return event


def _invalidate_event(drop: Mapping[str, Any]) -> dict[str, Any]:
    """The event that ends a collection's (or database's) stream after its drop. Its
    token is the drop's, marked, so ``startAfter`` it starts after the drop."""
    token = {**drop["_id"], _INVALIDATE_MARK: True}
    event: dict[str, Any] = {
        "_id": token,
        "operationType": "invalidate",
        "clusterTime": drop.get("clusterTime"),
    }
    if "wallTime" in drop:
        event["wallTime"] = drop["wallTime"]
    return event


def _real_ns(stream: _Stream, ns: Mapping[str, Any]) -> str:
    """``db.coll`` of an event's namespace, without the branch the client named."""
    db = str(ns["db"])
    return f"{db[: len(db) - len(stream.scope.suffix)]}.{ns.get('coll', '')}"


def _ordered(event: dict[str, Any]) -> dict[str, Any]:
    known = {k: event[k] for k in _FIELD_ORDER if k in event}
    return {**known, **{k: v for k, v in event.items() if k not in known}}


def _parts(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``events`` in runs small enough to send to mongod in one command."""
    parts: list[list[dict[str, Any]]] = [[]]
    size = 0
    for event in events:
        n = len(bson.encode(event))
        if parts[-1] and size + n > _MAX_STAGED_BYTES:
            parts.append([])
            size = 0
        parts[-1].append(event)
        size += n
    return parts
