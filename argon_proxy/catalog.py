"""Branch metadata, the LSN counter and the overlay registry, kept in ``__argon``.

Theory of operation: the upstream's ``__argon`` database is the truth:
``branches`` (one document per branch), ``overlays`` (one per branch and
collection it touched), ``counters`` (the LSN) and ``settings`` (the default
branch). This proxy keeps a copy in memory, loaded at start-up and updated as
it changes things; an unknown name triggers a reload, so a branch created by
another proxy sharing the upstream is found. Creating a branch writes one
document: nothing is copied.

An overlay's entry records its collection name and whether the branch
``cut`` the parent's collection (dropped it, so lower layers no longer show).
The ids an overlay holds (documents and tombstones) are cached in ``ids``
and ``tombstones``, loaded on first use; the branch engine updates them with
every write it commits.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import bson

from .dbclient import DbClient
from .errors import ArgonError
from .naming import INTERNAL_DB, MAIN, TOMBSTONE, overlay_name, validate_branch_name

if TYPE_CHECKING:
    from .txn import Runner

BRANCH_NOT_FOUND = 2001  # Argon's own codes live above mongod's range used here
BRANCH_EXISTS = 2002
BRANCH_HAS_CHILDREN = 2003
READ_ONLY_BRANCH = 2004


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class BranchError(ArgonError):
    _names: ClassVar[dict[int, str]] = {
        BRANCH_NOT_FOUND: "BranchNotFound",
        BRANCH_EXISTS: "BranchExists",
        BRANCH_HAS_CHILDREN: "BranchHasChildren",
        READ_ONLY_BRANCH: "ReadOnlyBranch",
    }

    @property
    def code_name(self) -> str:
        return self._names.get(self.code) or super().code_name


def branch_not_found(name: str) -> BranchError:
    return BranchError(
        BRANCH_NOT_FOUND,
        f"branch {name!r} does not exist. List branches with `argon branch list`, "
        f"or create it with `argon branch create {name} --from main`.",
    )


@dataclass
class Branch:
    """One branch's metadata."""

    name: str
    id: str
    parent: str | None
    base_lsn: int
    created: dt.datetime
    read_only: bool = False
    point: str | None = None  # for snapshots: what point in time they show
    description: str | None = None
    snapshot: bool = False  # a named, immutable snapshot (createSnapshot)
    archived: bool = False
    expires: dt.datetime | None = None  # deleted by `gc` after this time
    project: str | None = None  # None: every database (the default project)

    def to_doc(self) -> dict[str, Any]:
        return {
            "_id": self.name,
            "id": self.id,
            "parent": self.parent,
            "base_lsn": bson.Int64(self.base_lsn),
            "created": self.created,
            "read_only": self.read_only,
            "point": self.point,
            "description": self.description,
            "snapshot": self.snapshot,
            "archived": self.archived,
            "expires": self.expires,
            "project": self.project,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Branch:
        return cls(
            name=doc["_id"],
            id=doc["id"],
            parent=doc.get("parent"),
            base_lsn=int(doc.get("base_lsn", 0)),
            created=doc.get("created") or now(),
            read_only=bool(doc.get("read_only")),
            point=doc.get("point"),
            description=doc.get("description"),
            snapshot=bool(doc.get("snapshot")),
            archived=bool(doc.get("archived")),
            expires=doc.get("expires"),
            project=doc.get("project"),
        )


@dataclass
class Overlay:
    """A branch's overlay of one collection."""

    branch_id: str
    db: str
    coll: str
    cut: bool = False  # lower layers are hidden (the branch dropped the collection)
    present: bool = True  # the collection exists on the branch
    dropped: bool = False  # the branch dropped it (not merely branched before it existed)
    indexes: list[dict[str, Any]] | None = None  # the branch's own index list; None: inherited
    # every _id held (documents and tombstones), hashable key -> the raw _id; None = not loaded
    ids: dict[Any, Any] | None = None
    tombstones: set[Any] = field(default_factory=set)

    @property
    def name(self) -> str:
        return overlay_name(self.branch_id, self.coll)

    @property
    def key(self) -> str:
        return f"{self.branch_id}|{self.db}|{self.coll}"


def _hashable(value: Any) -> Any:
    """A set key for an ``_id`` (documents and lists are not hashable in Python)."""
    if isinstance(value, dict | list):
        return ("__bson__", bson.encode({"v": value}))
    return value


class Catalog:
    """The in-memory view of ``__argon`` plus the operations that change it."""

    def __init__(self, db: DbClient) -> None:
        self.db = db
        self.branches: dict[str, Branch] = {}
        self.overlays: dict[str, Overlay] = {}
        self.projects: dict[str, dict[str, Any]] = {}  # name -> its __argon.projects document
        self.default_branch = MAIN

    async def load(self) -> None:
        """Create the metadata collections if needed and read them."""
        await self._ensure_main()
        await self.reload()
        await self._ensure_indexes()

    async def _ensure_main(self) -> None:
        main = Branch(MAIN, MAIN, None, 0, now())
        await self.db.command(
            INTERNAL_DB,
            {
                "update": "branches",
                "updates": [
                    {"q": {"_id": MAIN}, "u": {"$setOnInsert": main.to_doc()}, "upsert": True}
                ],
            },
        )

    async def _ensure_indexes(self) -> None:
        await self.db.command(
            INTERNAL_DB,
            {
                "createIndexes": "wal",
                "indexes": [
                    {"key": {"branch": 1, "_id": 1}, "name": "branch_lsn"},
                    {"key": {"ns": 1, "doc_id": 1, "_id": 1}, "name": "ns_doc_lsn"},
                    {"key": {"ts": 1}, "name": "ts"},
                ],
            },
        )
        await self.db.command(
            INTERNAL_DB,
            {
                "createIndexes": "index_log",
                "indexes": [{"key": {"branch": 1, "_id": 1}, "name": "branch_lsn"}],
            },
        )
        # Retryable-write records live as long as a session may retry (30 minutes).
        await self.db.command(
            INTERNAL_DB,
            {
                "createIndexes": "retries",
                "indexes": [{"key": {"at": 1}, "name": "expire", "expireAfterSeconds": 1800}],
            },
        )

    async def reload(self) -> None:
        branches = await self.db.find(INTERNAL_DB, "branches")
        self.branches = {b.name: b for b in map(Branch.from_doc, branches)}
        overlays = await self.db.find(INTERNAL_DB, "overlays")
        fresh: dict[str, Overlay] = {}
        for doc in overlays:
            ov = Overlay(
                doc["branch_id"],
                doc["db"],
                doc["coll"],
                bool(doc.get("cut")),
                bool(doc.get("present", True)),
                bool(doc.get("dropped", doc.get("cut"))),
            )
            ov.indexes = doc.get("indexes")
            old = self.overlays.get(ov.key)
            if old is not None:
                ov.ids, ov.tombstones = old.ids, old.tombstones  # keep the loaded id cache
            fresh[ov.key] = ov
        self.overlays = fresh
        self.projects = {p["_id"]: p for p in await self.db.find(INTERNAL_DB, "projects")}
        setting = await self.db.find(INTERNAL_DB, "settings", {"_id": "default_branch"})
        self.default_branch = setting[0]["value"] if setting else MAIN

    async def get(self, name: str) -> Branch:
        """The branch called ``name``; reloads once before saying it does not exist."""
        branch = self.branches.get(name)
        if branch is None:
            await self.reload()
            branch = self.branches.get(name)
        if branch is None:
            raise branch_not_found(name)
        return branch

    def chain(self, branch: Branch) -> list[Branch]:
        """``branch`` and its ancestors, nearest first, ending with main."""
        out = [branch]
        while out[-1].parent is not None:
            out.append(self.branches[out[-1].parent])
        return out

    def children(self, name: str) -> list[Branch]:
        return [b for b in self.branches.values() if b.parent == name]

    def shows(self, branch: Branch, db: str, coll: str, *, in_base: bool) -> bool:
        """Whether ``db.coll`` exists on the branch, given whether main's collection does."""
        shown = in_base
        for b in reversed(self.chain(branch)):
            ov = self.overlay(b, db, coll)
            if ov is None:
                continue
            if ov.present:
                shown = True
            elif ov.cut:
                shown = False
        return shown

    async def upstream_has(self, db: str, coll: str) -> bool:
        """Whether the upstream holds a collection ``db.coll`` (main's, or an overlay)."""
        found = await self.db.find_cursor(
            db, {"listCollections": 1, "filter": {"name": coll}, "nameOnly": True}
        )
        return bool(found)

    async def child_overlays(self, parent: Branch, db: str, coll: str) -> list[Overlay]:
        """The overlays of ``db.coll`` in every child of ``parent``, registered if new.

        A child without an overlay still sees the collection exactly as the parent
        does now, so a new one starts absent when the parent has no such collection:
        the parent creating it later must not make it appear on the child.
        """
        kids = self.children(parent.name)
        if all(self.overlay(k, db, coll) is not None for k in kids):
            return [ov for k in kids if (ov := self.overlay(k, db, coll)) is not None]
        absent = not self.shows(parent, db, coll, in_base=await self.upstream_has(db, coll))
        return [await self.ensure_overlay(k, db, coll, absent=absent) for k in kids]

    # -- LSN -------------------------------------------------------------------

    @staticmethod
    async def allocate_lsns(runner: Runner, count: int) -> int:
        """Reserve ``count`` consecutive LSNs in ``runner``'s transaction; returns the
        first. Inside the transaction that writes their entries, they become visible
        with them, so LSN order is commit order (a concurrent allocation conflicts and
        is retried)."""
        reply = await runner.run(
            INTERNAL_DB,
            {
                "findAndModify": "counters",
                "query": {"_id": "lsn"},
                "update": {"$inc": {"value": bson.Int64(count)}},
                "upsert": True,
                "new": True,
            },
        )
        return int(reply["value"]["value"]) - count + 1

    async def current_lsn(self) -> int:
        found = await self.db.find(INTERNAL_DB, "counters", {"_id": "lsn"})
        return int(found[0]["value"]) if found else 0

    # -- branches --------------------------------------------------------------

    async def create_branch(
        self,
        name: str,
        parent: str,
        *,
        base_lsn: int | None = None,
        read_only: bool = False,
        point: str | None = None,
        internal: bool = False,
        **details: Any,
    ) -> Branch:
        if not internal:  # internal names (snapshots behind addresses) contain '@'
            validate_branch_name(name)
        await self.get(parent)
        if name in self.branches:
            raise BranchError(BRANCH_EXISTS, f"branch {name!r} already exists")
        lsn = await self.current_lsn() if base_lsn is None else base_lsn
        details.setdefault("project", self.branches[parent].project)  # inherited
        branch = Branch(
            name, "b" + secrets.token_hex(5), parent, lsn, now(), read_only, point, **details
        )
        exists = BranchError(BRANCH_EXISTS, f"branch {name!r} already exists")
        await self.db.insert_new(INTERNAL_DB, "branches", branch.to_doc(), exists)
        self.branches[name] = branch
        return branch

    async def delete_branch(self, name: str) -> list[Overlay]:
        """Forget a branch; returns its overlays, for the caller to drop."""
        branch = await self.get(name)
        if name == MAIN:
            raise BranchError(BRANCH_HAS_CHILDREN, "the main branch cannot be deleted")
        kids = [b.name for b in self.children(name) if "@" not in b.name]
        if kids:
            raise BranchError(
                BRANCH_HAS_CHILDREN,
                f"branch {name!r} has child branches {kids}; delete or merge them first",
            )
        await self.db.command(
            INTERNAL_DB, {"delete": "branches", "deletes": [{"q": {"_id": name}, "limit": 1}]}
        )
        await self.db.command(
            INTERNAL_DB,
            {"delete": "overlays", "deletes": [{"q": {"branch_id": branch.id}, "limit": 0}]},
        )
        del self.branches[name]
        gone = [ov for ov in self.overlays.values() if ov.branch_id == branch.id]
        for ov in gone:
            del self.overlays[ov.key]
        if self.default_branch == name:
            await self.set_default(MAIN)
        return gone

    async def update(self, branch: Branch, **changes: Any) -> None:
        """Change metadata fields of a branch (archived, read_only, expires, ...)."""
        for key, value in changes.items():
            setattr(branch, key, value)
        await self.db.command(
            INTERNAL_DB,
            {
                "update": "branches",
                "updates": [{"q": {"_id": branch.name}, "u": {"$set": changes}}],
            },
        )

    async def set_default(self, name: str) -> None:
        await self.get(name)
        await self.db.command(
            INTERNAL_DB,
            {
                "update": "settings",
                "updates": [
                    {"q": {"_id": "default_branch"}, "u": {"$set": {"value": name}}, "upsert": True}
                ],
            },
        )
        self.default_branch = name

    # -- overlays --------------------------------------------------------------

    def overlay(self, branch: Branch, db: str, coll: str) -> Overlay | None:
        return self.overlays.get(f"{branch.id}|{db}|{coll}")

    async def ensure_overlay(
        self, branch: Branch, db: str, coll: str, *, absent: bool = False
    ) -> Overlay:
        """The branch's overlay of ``db.coll``, registered (and indexed) on first use.

        ``absent`` registers a new one as hiding a collection the branch does not have.
        """
        found = self.overlay(branch, db, coll)
        if found is not None:
            return found
        ov = Overlay(branch.id, db, coll, cut=absent, present=not absent, ids={})
        await self.db.command(
            INTERNAL_DB,
            {
                "update": "overlays",
                "updates": [
                    {
                        "q": {"_id": ov.key},
                        "u": {
                            "$setOnInsert": {
                                "branch_id": ov.branch_id,
                                "db": db,
                                "coll": coll,
                                "cut": ov.cut,
                                "present": ov.present,
                            }
                        },
                        "upsert": True,
                    }
                ],
            },
        )
        await self._copy_indexes(db, coll, ov.name)
        self.overlays[ov.key] = ov
        return ov

    async def set_flags(
        self, ov: Overlay, *, cut: bool, present: bool, dropped: bool | None = None
    ) -> None:
        """Record that the branch dropped (cut, absent) or created (present) the collection."""
        dropped = ov.dropped if dropped is None else dropped
        await self.db.command(
            INTERNAL_DB,
            {
                "update": "overlays",
                "updates": [
                    {
                        "q": {"_id": ov.key},
                        "u": {"$set": {"cut": cut, "present": present, "dropped": dropped}},
                    }
                ],
            },
        )
        ov.cut, ov.present, ov.dropped = cut, present, dropped

    async def _copy_indexes(self, db: str, coll: str, target: str) -> None:
        """Give the overlay the base's indexes, so layers plan alike.

        Unique ones lose their flag: tombstones would collide in them, and Argon
        enforces uniqueness across the whole view itself (``unique.py``).
        """
        try:
            specs = await self.db.find_cursor(db, {"listIndexes": coll})
        except ArgonError:
            return  # no base collection yet
        wanted = []
        for spec in specs:
            if spec.get("name") == "_id_":
                continue
            wanted.append({k: v for k, v in spec.items() if k not in {"v", "ns", "unique"}})
        if wanted:
            await self.db.command(db, {"createIndexes": target, "indexes": wanted})

    async def load_ids(self, ov: Overlay) -> None:
        """Fill the overlay's id cache from the upstream."""
        if ov.ids is not None:
            return
        docs = await self.db.find(ov.db, ov.name, {}, projection={"_id": 1, TOMBSTONE: 1})
        ov.ids = {_hashable(d["_id"]): d["_id"] for d in docs}
        ov.tombstones = {_hashable(d["_id"]) for d in docs if d.get(TOMBSTONE)}

    @staticmethod
    def note_written(ov: Overlay, ids: Iterable[Any], *, tombstone: bool) -> None:
        """Record in the cache that ``ids`` are now held by the overlay."""
        assert ov.ids is not None
        for raw in ids:
            key = _hashable(raw)
            ov.ids[key] = raw
            if tombstone:
                ov.tombstones.add(key)
            else:
                ov.tombstones.discard(key)


hashable_id = _hashable
