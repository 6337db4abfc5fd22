"""What the proxy answers, as frozen dataclasses (one per document of the contract).

Each model is built from the reply document of an admin command by
``from_doc``; attribute names are the contract's keys in snake_case
(``docId`` becomes ``doc_id``, ``created`` becomes ``created_at``). Keys a
proxy does not send yet get neutral defaults (``False``, ``None``, empty), so
an SDK newer than the proxy still reads its replies. Datetimes are naive UTC,
pymongo's default, unless the ``Client`` was made with ``tz_aware=True``.

``to_dict`` gives the same values as a plain dict with the attribute names as
keys; the CLI prints that (as relaxed Extended JSON) for ``--json``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any, Self

Doc = Mapping[str, Any]


def _docs(value: Any) -> Iterable[Doc]:
    """The documents of a list that may be missing."""
    return [v for v in value or () if isinstance(v, Mapping)]


def _int(value: Any, default: int = 0) -> int:
    return default if value is None else int(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _lsn_pair(value: Any) -> tuple[int, int] | None:
    """``[first, last]`` LSNs written by an applied operation, if any."""
    if not value:
        return None
    first, last = value
    return int(first), int(last)


class Model:
    """Shared behaviour of the reply models."""

    __slots__ = ()  # so the slotted dataclasses below really have no __dict__

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        """The model of one document of a proxy's reply (missing keys get defaults)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """The model as a plain dict (nested models become dicts, tuples lists)."""
        assert dataclasses.is_dataclass(self)
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, slots=True)
class BranchStats(Model):
    """What a branch has changed: WAL entries and its overlay collections."""

    changes: int
    overlay_documents: int
    overlay_bytes: int
    collections: tuple[str, ...]

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        return cls(
            changes=_int(doc.get("changes")),
            overlay_documents=_int(doc.get("overlay_documents")),
            overlay_bytes=_int(doc.get("overlay_bytes")),
            collections=tuple(str(c) for c in doc.get("collections") or ()),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class BranchInfo(Model):
    """A branch (or snapshot) as the proxy describes it."""

    name: str
    parent: str | None
    base_lsn: int
    head_lsn: int
    created_at: dt.datetime | None
    last_activity: dt.datetime | None
    read_only: bool = False
    archived: bool = False
    snapshot: bool = False
    description: str | None = None
    default: bool = False
    tags: tuple[str, ...] = ()
    stats: BranchStats | None = None  # only from ``getBranch``
    project: str = "default"
    protected: bool = False  # changes only through merges

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        stats = doc.get("stats")
        return cls(
            name=str(doc["name"]),
            parent=doc.get("parent"),
            base_lsn=_int(doc.get("base_lsn")),
            head_lsn=_int(doc.get("head_lsn")),
            created_at=doc.get("created"),
            last_activity=doc.get("last_activity"),
            read_only=bool(doc.get("read_only")),
            archived=bool(doc.get("archived")),
            snapshot=bool(doc.get("snapshot")),
            description=doc.get("description"),
            default=bool(doc.get("default")),
            tags=tuple(str(t) for t in doc.get("tags") or ()),
            stats=BranchStats.from_doc(stats) if isinstance(stats, Mapping) else None,
            project=str(doc.get("project") or "default"),
            protected=bool(doc.get("protected")),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Project(Model):
    """A set of databases versioned together (``databases`` None: every database)."""

    name: str
    databases: tuple[str, ...] | None
    description: str | None
    created_at: dt.datetime | None
    branches: tuple[str, ...] = ()

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        dbs = doc.get("databases")
        return cls(
            name=str(doc.get("name", "")),
            databases=None if dbs is None else tuple(str(d) for d in dbs),
            description=doc.get("description"),
            created_at=doc.get("created"),
            branches=tuple(str(b) for b in doc.get("branches") or ()),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Deleted(Model):
    """The answer to deleting a branch."""

    name: str
    overlays_dropped: int

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        return cls(str(doc.get("deleted", "")), _int(doc.get("overlays_dropped")))


@dataclasses.dataclass(frozen=True, slots=True)
class Status(Model):
    """The proxy's version, default branch, branch count, current LSN and upstream."""

    version: str
    default_branch: str
    branches: int
    lsn: int
    upstream: str

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        return cls(
            version=str(doc.get("version", "")),
            default_branch=str(doc.get("default_branch", "main")),
            branches=_int(doc.get("branches")),
            lsn=_int(doc.get("lsn")),
            upstream=str(doc.get("upstream", "")),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class TimeTravelRange(Model):
    """The earliest and latest point a branch can be read at."""

    branch: str
    earliest_lsn: int
    earliest_time: dt.datetime | None
    latest_lsn: int
    latest_time: dt.datetime | None

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        return cls(
            branch=str(doc["branch"]),
            earliest_lsn=_int(doc.get("earliest_lsn")),
            earliest_time=doc.get("earliest_time"),
            latest_lsn=_int(doc.get("latest_lsn")),
            latest_time=doc.get("latest_time"),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Tag(Model):
    """A name for one point (LSN) of a branch."""

    name: str
    branch: str
    lsn: int
    created_at: dt.datetime | None
    message: str | None

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        return cls(
            name=str(doc["name"]),
            branch=str(doc.get("branch", "")),
            lsn=_int(doc.get("lsn")),
            created_at=doc.get("created"),
            message=doc.get("message"),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Grant(Model):
    """A role for a user on the branches whose names match a pattern, or on a project's."""

    user: str
    role: str
    branches: str | None
    project: str | None = None

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        return cls(
            user=str(doc["user"]),
            role=str(doc["role"]),
            branches=doc.get("branches"),
            project=doc.get("project"),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class User(Model):
    """One of Argon's users."""

    name: str
    created_at: dt.datetime | None
    admin: bool
    mechanisms: tuple[str, ...]

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        return cls(
            name=str(doc["user"]),
            created_at=doc.get("created"),
            admin=bool(doc.get("admin")),
            mechanisms=tuple(str(m) for m in doc.get("mechanisms", ())),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Conflict(Model):
    """One document both sides of a merge changed incompatibly."""

    ns: str
    doc_id: Any
    kind: str  # both-changed, changed-deleted, deleted-changed or both-inserted
    paths: tuple[str, ...]  # conflicting field paths; empty for document granularity
    base: Any
    ours: Any
    theirs: Any
    resolution: Any

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        return cls(
            ns=str(doc.get("ns", "")),
            doc_id=doc.get("docId"),
            kind=str(doc.get("kind", "")),
            paths=tuple(str(p) for p in doc.get("paths") or ()),
            base=doc.get("base"),
            ours=doc.get("ours"),
            theirs=doc.get("theirs"),
            resolution=doc.get("resolution"),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class MergeCounts(Model):
    """Documents a merge inserts, updates, deletes, and its conflicts."""

    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    conflicts: int = 0

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        return cls(
            inserted=_int(doc.get("inserted")),
            updated=_int(doc.get("updated")),
            deleted=_int(doc.get("deleted")),
            conflicts=_int(doc.get("conflicts")),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class MergeCollection(Model):
    """A merge's counts for one collection (``ns`` is ``db.collection``)."""

    ns: str
    counts: MergeCounts

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        return cls(ns=str(doc.get("ns", "")), counts=MergeCounts.from_doc(doc))


@dataclasses.dataclass(frozen=True, slots=True)
class MergeIndexChange(Model):
    """An index change a merge carries to its target: ``op`` is create or drop."""

    ns: str
    name: str
    op: str

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        return cls(ns=str(doc.get("ns", "")), name=str(doc.get("name", "")), op=str(doc.get("op")))


@dataclasses.dataclass(frozen=True, slots=True)
class Merge(Model):
    """A merge: a preview, one waiting on conflicts, applied, or up to date."""

    id: Any
    source: str
    target: str
    strategy: str
    status: str  # preview, conflicts, applied or up-to-date
    fast_forward: bool
    source_lsn: int | None
    target_lsn: int | None
    applied_lsns: tuple[int, int] | None
    counts: MergeCounts
    collections: tuple[MergeCollection, ...]
    conflicts: tuple[Conflict, ...]  # at most 100 here; ``merges.conflicts`` lists all
    index_changes: tuple[MergeIndexChange, ...] = ()

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        counts = doc.get("counts")
        return cls(
            id=doc.get("id"),
            source=str(doc.get("source", "")),
            target=str(doc.get("target", "")),
            strategy=str(doc.get("strategy", "")),
            status=str(doc.get("status", "")),
            fast_forward=bool(doc.get("fast_forward")),
            source_lsn=_opt_int(doc.get("source_lsn")),
            target_lsn=_opt_int(doc.get("target_lsn")),
            applied_lsns=_lsn_pair(doc.get("applied_lsns")),
            counts=MergeCounts.from_doc(counts) if isinstance(counts, Mapping) else MergeCounts(),
            collections=tuple(MergeCollection.from_doc(c) for c in _docs(doc.get("collections"))),
            conflicts=tuple(Conflict.from_doc(c) for c in _docs(doc.get("conflicts"))),
            index_changes=tuple(MergeIndexChange.from_doc(c) for c in _docs(doc.get("indexes"))),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class MergeGranularity(Model):
    """How a collection's documents are compared when merging: by field or whole."""

    db: str
    collection: str
    granularity: str

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        db, collection = str(doc.get("db", "")), str(doc.get("collection", ""))
        return cls(db, collection, str(doc.get("granularity", "")))


@dataclasses.dataclass(frozen=True, slots=True)
class FieldChange(Model):
    """One field of a modified document: ``change`` is added, removed or modified."""

    path: str
    change: str
    before: Any
    after: Any

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        path, change = str(doc.get("path", "")), str(doc.get("change", ""))
        return cls(path, change, doc.get("before"), doc.get("after"))


@dataclasses.dataclass(frozen=True, slots=True)
class DocumentChange(Model):
    """One document that differs: ``change`` is added, removed or modified."""

    doc_id: Any
    change: str
    before: Any
    after: Any
    fields: tuple[FieldChange, ...]

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        return cls(
            doc_id=doc.get("docId"),
            change=str(doc.get("change", "")),
            before=doc.get("before"),
            after=doc.get("after"),
            fields=tuple(FieldChange.from_doc(f) for f in _docs(doc.get("fields"))),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class DiffSummary(Model):
    """Documents added, removed and modified going from one ref to the other."""

    added: int = 0
    removed: int = 0
    modified: int = 0

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        return cls(_int(doc.get("added")), _int(doc.get("removed")), _int(doc.get("modified")))


@dataclasses.dataclass(frozen=True, slots=True)
class DiffCollection(Model):
    """One collection's differences; ``documents`` lists up to the diff's ``limit``."""

    ns: str
    summary: DiffSummary
    documents: tuple[DocumentChange, ...]

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        return cls(
            ns=str(doc.get("ns", "")),
            summary=DiffSummary.from_doc(doc),
            documents=tuple(DocumentChange.from_doc(d) for d in _docs(doc.get("documents"))),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Diff(Model):
    """How the data at ``to_ref`` differs from the data at ``from_ref``."""

    from_ref: str
    to_ref: str
    summary: DiffSummary
    collections: tuple[DiffCollection, ...]

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        summary = doc.get("summary")
        return cls(
            from_ref=str(doc.get("from", "")),
            to_ref=str(doc.get("to", "")),
            summary=DiffSummary.from_doc(summary)
            if isinstance(summary, Mapping)
            else DiffSummary(),
            collections=tuple(DiffCollection.from_doc(c) for c in _docs(doc.get("collections"))),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class ResetResult(Model):
    """What resetting a branch discards (a preview with ``dry_run``) or discarded."""

    branch: str
    to_lsn: int
    discarded_changes: int
    discarded_documents: int
    collections: tuple[Any, ...]
    applied_lsns: tuple[int, int] | None

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        discarded = doc.get("discarded") or {}
        return cls(
            branch=str(doc.get("branch", "")),
            to_lsn=_int(doc.get("to_lsn")),
            discarded_changes=_int(discarded.get("changes")),
            discarded_documents=_int(discarded.get("documents")),
            collections=tuple(doc.get("collections") or ()),
            applied_lsns=_lsn_pair(doc.get("applied_lsns")),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class LogEntry(Model):
    """One WAL entry: a change of one document on one branch."""

    lsn: int
    ts: dt.datetime | None
    branch: str
    ns: str
    doc_id: Any
    op: str
    client: Any  # the writer's identity (appName) as the proxy recorded it
    merge: Any  # the merge that wrote it, if any

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        return cls(
            lsn=_int(doc.get("lsn")),
            ts=doc.get("ts"),
            branch=str(doc.get("branch", "")),
            ns=str(doc.get("ns", "")),
            doc_id=doc.get("docId"),
            op=str(doc.get("op", "")),
            client=doc.get("client"),
            merge=doc.get("merge"),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class BlameField(Model):
    """The last change to one field of a document."""

    path: str
    lsn: int
    ts: dt.datetime | None
    op: str
    client: Any

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        return cls(
            path=str(doc.get("path", "")),
            lsn=_int(doc.get("lsn")),
            ts=doc.get("ts"),
            op=str(doc.get("op", "")),
            client=doc.get("client"),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Blame(Model):
    """A document as it is now, with the WAL entry that last set each field."""

    fields: tuple[BlameField, ...]
    document: Any

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        return cls(
            fields=tuple(BlameField.from_doc(f) for f in _docs(doc.get("fields"))),
            document=doc.get("document"),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class UndoRefusal(Model):
    """A document undo left alone, and why."""

    ns: str
    doc_id: Any
    reason: str

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        return cls(str(doc.get("ns", "")), doc.get("docId"), str(doc.get("reason", "")))


@dataclasses.dataclass(frozen=True, slots=True)
class UndoResult(Model):
    """What undoing a range of LSNs restores (a preview with ``dry_run``) or restored."""

    documents: int
    refused: tuple[UndoRefusal, ...]
    applied_lsns: tuple[int, int] | None

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        documents = doc.get("documents")
        # The contract does not say whether ``documents`` is a count or a list.
        count = len(documents) if isinstance(documents, list) else _int(documents)
        return cls(
            documents=count,
            refused=tuple(UndoRefusal.from_doc(r) for r in _docs(doc.get("refused"))),
            applied_lsns=_lsn_pair(doc.get("applied_lsns")),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class GcResult(Model):
    """What garbage collection removed (or would remove, with ``dry_run``)."""

    wal_removed: int
    snapshots_removed: Any
    expired_branches: Any

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        return cls(
            wal_removed=_int(doc.get("wal_removed")),
            snapshots_removed=doc.get("snapshots_removed"),
            expired_branches=doc.get("expired_branches"),
        )
