"""Branch metadata, the LSN counter and the overlay registry, kept in ``__argon``.

Theory of operation: the upstream's ``__argon`` database is the truth:
``branches`` (one document per branch), ``overlays`` (one per branch and
collection it touched), ``counters`` (the LSN) and ``settings`` (the default
branch). This proxy keeps a copy in memory, loaded at start-up and updated as
it changes things; an unknown name triggers a reload, so a branch created by
another proxy sharing the upstream is found. Creating a branch writes one
document: nothing is copied. The upstream decides who gets a name: the
insert of a taken name fails (BranchExists), however many proxies race.

A branch forks while no write of this proxy is half-way (``ForkGate``), so
each write either committed before the base LSN or freezes into the child.
A branch built from the WAL (a point in the past) is known here while it is
built, so writes freeze into it, but is stored, and visible, once complete.

An overlay's entry records its collection name and three flags, always all
stored: ``cut`` (lower layers no longer show: the branch dropped the
collection, or was forked before it existed), ``present`` (the collection
exists on the branch) and ``dropped`` (the branch itself dropped it; entries
written before this flag was stored lack it and were never dropped).
The ids an overlay holds (documents and tombstones) are cached in ``ids``
and ``tombstones``, loaded on first use; the branch engine updates them with
every write it commits.

A collection main drops while branches exist is moved aside, not deleted: it
becomes an *archive* (``archives``: database, name, the physical collection
it was renamed to, and ``until``, the LSN of the drop). A branch whose line
left main before ``until`` keeps reading the archive as its base
(``base_name``); branches forked later read main's collection of that name,
if main creates it again. Main's later writes to the name freeze into those
later branches only (``child_overlays``).

Several proxies may share one upstream, so every cache carries the version of
what it copied. ``counters`` holds, beside the LSN, the catalog ``epoch``
(bumped by every change to branches, overlays, projects and settings) and one
version document per overlay (``v|<overlay key>``, bumped in the transaction
of every write to the overlay). ``sync`` compares the cached versions with
the stored ones in one query before a branch operation and reloads only what
changed; writes check the versions they relied on inside their own
transaction (``verify``) and start again on ``StaleCatalog``, so a decision
is never taken on another proxy's outdated picture.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime as dt
import logging
import secrets
from collections import UserDict
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    ItemsView,
    Iterable,
    Mapping,
    Sequence,
    ValuesView,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import bson
import trio

from . import wal
from .dbclient import CommandError, DbClient, Front, run_checked
from .errors import (
    BRANCH_EXISTS,
    BRANCH_HAS_CHILDREN,
    BRANCH_NOT_FOUND,
    EXCEEDED_TIME_LIMIT,
    INDEX_NOT_FOUND,
    NAMESPACE_EXISTS,
    NAMESPACE_NOT_FOUND,
    PROTECTED_BRANCH,
    READ_ONLY_BRANCH,
    ArgonError,
    UpstreamIOError,
)
from .naming import INTERNAL_DB, MAIN, TOMBSTONE, overlay_name, validate_branch_name
from .txn import (
    Rider,
    Runner,
    SessionPool,
    Transaction,
    checked,
    is_transient,
    run_in_transaction,
    run_or_defer,
)

if TYPE_CHECKING:
    from .txn import Runner


log = logging.getLogger("argon.catalog")
# Argon's metadata collections in ``INTERNAL_DB``.
_METADATA = (
    "branches",
    "overlays",
    "counters",
    "wal",
    "index_log",
    "archives",
    "projects",
    "settings",
    "tags",
    "retries",
    "proxies",
    "acknowledgements",
)
# The settings entry recording that every WAL entry names its branch by id.
_ENTRIES_OWNED = "entries_have_branch_ids"


LSN_COUNTER = "lsn"  # the counters document holding the LSN and the catalog epoch
# The counters document client transactions announce their catalog changes on:
# not the LSN counter, which they would then hold until they commit.
ANNOUNCED = "announced"
# How long a lease of LSNs stays in flight unless released: beyond the lifetime
# the upstream gives a transaction (60 s on mongod), so its transaction has ended,
# with room for the clocks of proxies on different hosts to differ.
LEASE = dt.timedelta(seconds=120)
_FIRST_SETTLE_PAUSE = 0.001
_OWN_LEASE_WAIT_MS = 250
_LEASE_ATTEMPTS = 5
# What a lease of Argon's own transaction meets when the counter stays held.
_COUNTER_HELD = {
    "ok": 0.0,
    "code": 112,
    "codeName": "WriteConflict",
    "errmsg": "the LSN counter is held by a transaction that changed the catalog",
    "errorLabels": ["TransientTransactionError"],
}
_MAX_SETTLE_PAUSE = 0.05
# A parent's writes freeze into each of its children: from this many on, its
# plain children read it through a shared bundle instead (``bundles.py``).
DEFAULT_BUNDLE_AT = 4
# Tells other proxies of a catalog change in place of ``Catalog.changed``.
Announce = Callable[[], Awaitable[Any]]


def overlay_key(branch_id: str, db: str, coll: str) -> str:
    """The key of a branch's overlay of ``db.coll`` (``Overlay.key``)."""
    return f"{branch_id}|{db}|{coll}"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(moment: dt.datetime) -> dt.datetime:
    """A stored date (read back without its zone: UTC) comparable with ``now()``."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def version_key(overlay_key: str) -> str:
    """The ``counters`` document that versions one overlay's contents."""
    return f"v|{overlay_key}"


class StaleCatalog(Exception):
    """Another proxy changed what this proxy's caches hold: sync, then start again."""


class CacheMoved(StaleCatalog):
    """A read's ``Catalog.check`` found the caches it relied on out of date: the
    read is answered again after a ``sync``."""


class CatalogBusy(Exception):
    """A catalog document a write needs is held by an open transaction (a client's,
    registering the same overlay): the writer lets go of its lock, then tries again."""


class BranchError(ArgonError):
    """A refusal about a branch (its name comes from the shared table of codes)."""


def read_only(branch: Branch, what: str) -> BranchError:
    """The refusal of ``what`` on a read-only snapshot."""
    return BranchError(
        READ_ONLY_BRANCH,
        f"{what} refused: branch {branch.name!r} is a read-only snapshot"
        f"{' of ' + branch.point if branch.point else ''}. "
        "Create a branch from it to make changes.",
    )


def protected(branch: Branch, what: str) -> BranchError:
    """The refusal of a direct change (``what``) to a protected branch."""
    return BranchError(
        PROTECTED_BRANCH,
        f"{what} refused: branch {branch.name!r} is protected and changes only through "
        f"merges (make the change on a branch of it, then `argon branch merge` it into "
        f"{branch.name})",
    )


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
    used: dt.datetime | None = None  # time-travel snapshots: last read (roughly)
    protected: bool = False  # changed only through merges (access.py)
    # A bundle (``bundles.py``) is no branch of anyone's: a hidden layer between a
    # parent and some of its children, which read their parent through it.
    bundle: bool = False
    depth: int = 0  # bundles: how many bundles deep its members read at most
    members: tuple[tuple[str, str], ...] = ()  # bundles: (name, id) of each member
    # the bundle this one reads its parent through (known from the bundles' members)
    under: str | None = None

    @property
    def time_travel(self) -> bool:
        """A hidden snapshot behind a ``db@branch@point`` address (or a tag)."""
        return "@" in self.name

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
            "used": self.used,
            "protected": self.protected,
            **(self._bundle_fields() if self.bundle else {}),
        }

    def _bundle_fields(self) -> dict[str, Any]:
        members = [{"name": name, "id": id_} for name, id_ in self.members]
        return {"bundle": True, "depth": self.depth, "members": members}

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
            used=doc.get("used"),
            protected=bool(doc.get("protected")),
            bundle=bool(doc.get("bundle")),
            depth=int(doc.get("depth", 0)),
            members=tuple((m["name"], m["id"]) for m in doc.get("members") or ()),
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
    view: dict[str, Any] | None = None  # a view the branch created: viewOn, pipeline[, collation]
    # every _id held (documents and tombstones), hashable key -> the raw _id; None = not loaded
    ids: dict[Any, Any] | None = None
    tombstones: set[Any] = field(default_factory=set)
    version: int = 0  # the stored version the id cache reflects (see ``Catalog.sync``)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Overlay:
        """The overlay a stored entry describes, its id cache not loaded."""
        return cls(
            doc["branch_id"],
            doc["db"],
            doc["coll"],
            bool(doc.get("cut")),
            bool(doc.get("present", True)),
            # Only ``set_flags`` ever stored a drop, always with the field: an entry
            # without it was registered absent (forked before the collection
            # existed), never dropped.
            bool(doc.get("dropped", False)),
            indexes=doc.get("indexes"),
            view=doc.get("view"),
        )

    @property
    def name(self) -> str:
        return overlay_name(self.branch_id, self.coll)

    @property
    def key(self) -> str:
        return overlay_key(self.branch_id, self.db, self.coll)


@dataclass
class RiddenLease:
    """LSNs leased behind a transaction's command (``Catalog.lease_behind``):
    ``count`` of them from ``first``, once the lease came back good."""

    count: int
    first: int | None = None


@dataclass(frozen=True)
class _LeaseRequest:
    """A lease's command and what reading its reply needs."""

    command: dict[str, Any]
    count: int
    leased: bool
    tok: str
    ended: list[bson.Int64]


@dataclass(frozen=True)
class TxnScope:
    """Where a transaction's catalog changes go: registered through ``runner``,
    announced by ``announce``, and kept (until it commits) in ``overlays``, its
    own copies by key."""

    runner: Runner
    announce: Announce
    overlays: Mapping[str, Overlay]


_IN_WRITE: contextvars.ContextVar[bool] = contextvars.ContextVar("argon_in_write", default=False)


@dataclass(frozen=True, slots=True)
class Archive:
    """Main's ``db.coll`` as it was when main dropped or renamed it at LSN
    ``until``, which the branches forked before read under the name ``physical``.

    After a drop it is an archive nobody writes. After a rename it is main's
    collection under its new name (``live``): main's writes to it freeze into
    those branches' overlays of ``coll``. ``path`` lists the names it has had
    since, each with the LSN from which it held it; ``frozen`` is the LSN at
    which main dropped it and it stopped being live."""

    db: str
    coll: str
    physical: str
    until: int
    live: bool = False
    path: tuple[tuple[str, int], ...] = ()
    frozen: int | None = None

    @property
    def key(self) -> str:
        return f"{self.db}.{self.coll}@{self.until}"

    def to_doc(self) -> dict[str, Any]:
        return {
            "_id": self.key,
            "db": self.db,
            "coll": self.coll,
            "physical": self.physical,
            "until": bson.Int64(self.until),
            "live": self.live,
            "path": [[name, bson.Int64(since)] for name, since in self.path],
            "frozen": None if self.frozen is None else bson.Int64(self.frozen),
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Archive:
        frozen = doc.get("frozen")
        return cls(
            doc["db"],
            doc["coll"],
            doc["physical"],
            int(doc["until"]),
            bool(doc.get("live", False)),
            tuple((str(n), int(s)) for n, s in doc.get("path") or ()),
            None if frozen is None else int(frozen),
        )

    def named(self, name: str, lsn: int) -> bool:
        """Whether main's collection ``name`` was this one at ``lsn`` (after ``until``)."""
        for i, (held, since) in enumerate(self.path):
            end = self.path[i + 1][1] if i + 1 < len(self.path) else self.frozen
            if held == name and since < lsn and (end is None or lsn <= end):
                return True
        return False


class ForkGate:
    """Writes share it; creating a branch holds it alone.

    A write chooses the child overlays it freezes into before it takes its LSNs,
    so a branch created in between would see the write without being frozen
    against it. ``forking`` lets no new write in and waits for those running.
    A write inside a write (a merge's statements in its transaction) passes.
    """

    def __init__(self) -> None:
        self._entry = trio.Lock()  # held by a fork: new writes wait
        self._running = 0
        self._idle = trio.Event()
        self._idle.set()

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        if _IN_WRITE.get():
            yield
            return
        async with self._entry:
            self._running += 1
            if self._running == 1:
                self._idle = trio.Event()
        token = _IN_WRITE.set(True)
        try:
            yield
        finally:
            _IN_WRITE.reset(token)
            self._running -= 1
            if self._running == 0:
                self._idle.set()

    @asynccontextmanager
    async def forking(self) -> AsyncIterator[None]:
        async with self._entry:
            await self._idle.wait()
            yield

    async def settle(self) -> None:
        """Wait until every write running now has committed or failed."""
        async with self.forking():
            pass


def _hashable(value: Any) -> Any:
    """A set key for an ``_id`` (documents and lists are not hashable in Python)."""
    if isinstance(value, dict | list):
        return ("__bson__", bson.encode({"v": value}))
    return value


class Registry(UserDict[str, Branch]):
    """Branches (or bundles) by name. Every change of what is stored under a
    name calls ``on_change``, so an index built over them (``Catalog.layer_kids``)
    is built again; what reads them goes straight to the dict underneath."""

    def __init__(self, on_change: Callable[[], None], items: Iterable[Branch] = ()) -> None:
        self._on_change = on_change
        super().__init__({b.name: b for b in items})

    def __setitem__(self, name: str, branch: Branch) -> None:
        self.data[name] = branch
        self._on_change()

    def __delitem__(self, name: str) -> None:
        del self.data[name]
        self._on_change()

    def values(self) -> ValuesView[Branch]:
        return self.data.values()

    def items(self) -> ItemsView[str, Branch]:
        return self.data.items()


class Catalog:
    """The in-memory view of ``__argon`` plus the operations that change it."""

    def __init__(self, db: DbClient) -> None:
        self.db = db
        self.branches = Registry(self.reshaped)
        self.bundles = Registry(self.reshaped)  # name -> bundle (``bundles.py``)
        # ``layer_kids`` by parent, built when first asked after a change of the
        # branches or bundles: a write asks it, and there may be thousands.
        self._kids: dict[str, list[Branch]] | None = None
        # children a parent needs before its plain ones are bundled (0: never)
        self.bundle_at = DEFAULT_BUNDLE_AT
        self.overlays: dict[str, Overlay] = {}
        self.projects: dict[str, dict[str, Any]] = {}  # name -> its __argon.projects document
        # built here but not stored yet (see ``create_branch(store=False)``)
        self.pending: dict[str, Branch] = {}
        self.forks = ForkGate()
        # (db, coll) -> main's earlier collections of that name, oldest first
        self.archives: dict[tuple[str, str], list[Archive]] = {}
        self.default_branch = MAIN
        self.epoch = 0  # the stored catalog epoch the in-memory metadata reflects
        self.announced = 0  # and the epoch of client transactions' changes (``ANNOUNCED``)
        self.loads = 0  # reloads finished: a change that overlapped one may be lost in it
        self.owner: str | None = None  # this proxy's incarnation, named by its leases
        self.sessions: SessionPool | None = None  # this proxy's own sessions
        self._reloading = trio.Lock()
        # Own leases whose transactions ended, not yet pulled from ``inflight``:
        # the next lease pulls them, or ``release_ended`` a moment later.
        self._ended: list[int] = []
        self._ended_added = trio.Event()
        self._releasing = False

    async def load(self) -> None:
        """Create the metadata collections if needed and read them."""
        await self._ensure_main()
        from .archives import settle  # archives builds on this module

        await settle(self)
        await self.reload()
        await self._ensure_indexes()
        await self._adopt_unowned_entries()

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
        # Every metadata collection exists before any transaction writes it: one
        # created inside a client's transaction would stay taken, for every other
        # writer, until that transaction ends.
        for name in _METADATA:
            try:
                await self.db.command(INTERNAL_DB, {"create": name})
            except CommandError as exc:
                if exc.code != NAMESPACE_EXISTS:
                    raise
        await self.db.command(
            INTERNAL_DB,
            {
                "createIndexes": "wal",
                "indexes": [
                    {"key": {"branch_id": 1, "_id": 1}, "name": "branch_id_lsn"},
                    {"key": {"ns": 1, "doc_id": 1, "_id": 1}, "name": "ns_doc_lsn"},
                    # One key per transaction: only its last entry has ``ts`` (wal.py).
                    {"key": {wal.TIME: 1}, "name": "transaction_ts", "sparse": True},
                ],
            },
        )
        try:  # the index of every entry's time, which earlier versions kept
            await self.db.command(INTERNAL_DB, {"dropIndexes": "wal", "index": "ts"})
        except CommandError as exc:
            if exc.code not in (INDEX_NOT_FOUND, NAMESPACE_NOT_FOUND):
                raise
        await self.db.command(
            INTERNAL_DB,
            {
                "createIndexes": "index_log",
                "indexes": [{"key": {"branch_id": 1, "_id": 1}, "name": "branch_id_lsn"}],
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

    async def _adopt_unowned_entries(self) -> None:
        """Give WAL and index-log entries written before they carried ``branch_id`` one.

        Names are unique at any moment, so an entry belongs to the live branch of
        its name if it was written after that branch was created (index-log
        entries have no time: after its base LSN). What remains belonged to a
        deleted branch: no lookup finds it, and ``gc`` removes it with age.
        Runs once per upstream; the name-keyed indexes go afterwards.
        """
        done = await self.db.find(INTERNAL_DB, "settings", {"_id": _ENTRIES_OWNED})
        if done:
            return
        unowned = {"branch_id": {"$exists": False}}
        for branch in list(self.branches.values()):
            owned: dict[str, Any] = {"branch": branch.name, **unowned}
            since = {} if branch.name == MAIN else {"ts": {"$gte": branch.created}}
            after = {} if branch.name == MAIN else {"_id": {"$gt": bson.Int64(branch.base_lsn)}}
            for coll, flt in (("wal", since), ("index_log", after)):
                update = {"q": {**owned, **flt}, "u": {"$set": {"branch_id": branch.id}}}
                await self.db.command(
                    INTERNAL_DB, {"update": coll, "updates": [{**update, "multi": True}]}
                )
        for coll in ("wal", "index_log"):
            with contextlib.suppress(ArgonError):  # a fresh install never had it
                await self.db.command(INTERNAL_DB, {"dropIndexes": coll, "index": "branch_lsn"})
        await self.db.command(
            INTERNAL_DB,
            {
                "update": "settings",
                "updates": [
                    {"q": {"_id": _ENTRIES_OWNED}, "u": {"$set": {"value": True}}, "upsert": True}
                ],
            },
        )

    async def reload(self) -> None:
        """Read all metadata again (the id caches of unchanged overlays are kept).

        Everything is read first and put in place at once, so no request sees half
        of it; one reload runs at a time. The epoch is read first: a change made
        while the rest is read shows next time (``changed`` does not count a
        change a reload overlapped as known here)."""
        async with self._reloading:
            epoch, announced = await self._epochs()
            branches = await self.db.find(INTERNAL_DB, "branches")
            overlays = await self.db.find(INTERNAL_DB, "overlays")
            projects = await self.db.find(INTERNAL_DB, "projects")
            stored = await self.db.find(INTERNAL_DB, "archives", {}, sort={"until": 1})
            setting = await self.db.find(INTERNAL_DB, "settings", {"_id": "default_branch"})
            fresh: dict[str, Overlay] = {}
            for doc in overlays:
                ov = Overlay.from_doc(doc)
                old = self.overlays.get(ov.key)
                if old is not None:  # keep the loaded id cache; ``sync`` checks its version
                    ov.ids, ov.tombstones, ov.version = old.ids, old.tombstones, old.version
                fresh[ov.key] = ov
            archives: dict[tuple[str, str], list[Archive]] = {}
            for doc in stored:
                if doc.get("pending"):
                    continue  # a drop that has not happened (yet, or ever: see archives.py)
                found = Archive.from_doc(doc)
                archives.setdefault((found.db, found.coll), []).append(found)
            loaded = [Branch.from_doc(doc) for doc in branches]
            self.branches = Registry(self.reshaped, (b for b in loaded if not b.bundle))
            self.bundles = Registry(self.reshaped, (b for b in loaded if b.bundle))
            from .bundles import link  # bundles builds on this module

            link(self.branches, self.bundles)
            self.reshaped()
            for name, branch in self.pending.items():
                self.branches.setdefault(name, branch)
            self.overlays = fresh
            self.projects = {p["_id"]: p for p in projects}
            self.archives = archives
            self.default_branch = setting[0]["value"] if setting else MAIN
            self.epoch, self.announced = epoch, announced
            self.loads += 1

    def visible(self, name: str) -> Branch | None:
        """The branch called ``name`` as known here, unless it is still being built."""
        return None if name in self.pending else self.branches.get(name)

    async def get(self, name: str) -> Branch:
        """The branch called ``name``; reloads once before saying it does not exist.

        A branch still being built (not stored yet) does not exist for anyone.
        """
        branch = self.visible(name)
        if branch is None:
            await self.reload()
            branch = self.visible(name)
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
        """The branches forked from ``name`` (through bundles or not)."""
        return [b for b in self.branches.values() if b.parent == name]

    def layers(self, branch: Branch) -> list[Branch]:
        """``branch`` and every branch or bundle whose overlays its view reads,
        nearest first, ending with main: its ancestors, with the bundles each one
        reads its parent through (``bundles.py``). ``chain`` leaves the bundles out."""
        out = [branch]
        while True:
            last = out[-1]
            if last.under is not None and last.under in self.bundles:
                out.append(self.bundles[last.under])
            elif last.parent is not None:
                out.append(self.branches[last.parent])
            else:
                return out

    def leaves(self, reader: Branch) -> list[Branch]:
        """The branches whose views read through ``reader``: itself if it is a
        branch, else the members of the bundle, and theirs."""
        if not reader.bundle:
            return [reader]
        members = [
            b for b in [*self.branches.values(), *self.bundles.values()] if b.under == reader.name
        ]
        return [leaf for m in members for leaf in self.leaves(m)]

    def layer_kids(self, name: str) -> list[Branch]:
        """The branches and bundles that read ``name``'s own overlays with nothing
        between: what a write of ``name`` freezes into (branches first)."""
        if self._kids is None:
            kids: dict[str, list[Branch]] = {}
            for b in [*self.branches.values(), *self.bundles.values()]:
                if b.parent is not None and b.under is None:
                    kids.setdefault(b.parent, []).append(b)
            self._kids = kids
        return list(self._kids.get(name, ()))

    def reshaped(self) -> None:
        """Note that the branches or bundles changed: which are stored, or which
        bundle one reads its parent through (``Branch.under``, which whoever
        sets it reports here)."""
        self._kids = None

    def archive_of(self, branch: Branch, db: str, coll: str) -> Archive | None:
        """The archive ``branch`` reads as main's ``db.coll``: the first one dropped
        after the branch's line left main; None for main's collection itself."""
        found = self.archives.get((db, coll))
        if not found or branch.name == MAIN:
            return None
        root = self.chain(branch)[-2]  # the branch of its line whose parent is main
        return next((a for a in found if root.base_lsn < a.until), None)

    def base_name(self, branch: Branch, db: str, coll: str) -> str:
        """The physical collection ``branch`` reads as main's ``db.coll``."""
        found = self.archive_of(branch, db, coll)
        return found.physical if found is not None else coll

    async def base_exists(self, branch: Branch, db: str, coll: str) -> bool:
        """Whether the collection ``branch`` reads as main's ``db.coll`` exists."""
        if self.archive_of(branch, db, coll) is not None:
            return True
        return await self.upstream_has(db, coll)

    def live_records(self, db: str, physical: str) -> list[Archive]:
        """The records of renames that made main's ``db.physical`` what it is now
        (its older names), read by branches or not."""
        return [
            record
            for (adb, _), found in self.archives.items()
            for record in found
            if adb == db and record.live and record.physical == physical
        ]

    def fed_by(self, db: str, physical: str) -> list[tuple[Archive, Branch]]:
        """The branches that read main's live collection ``db.physical`` under an
        older name (a rename's), each with the record saying so."""
        return [
            (record, k)
            for record in self.live_records(db, physical)
            for k in self.layer_kids(MAIN)
            if self.archive_of(k, db, record.coll) == record
        ]

    def renamed_from(self, branch: Branch, db: str, name: str, lsn: int) -> str | None:
        """The name under which ``branch`` reads what main's ``db.name`` was at ``lsn``,
        if that was a collection main renamed after the branch's line left it."""
        for adb, coll in self.archives:
            if adb != db:
                continue
            record = self.archive_of(branch, db, coll)
            if record is not None and record.named(name, lsn):
                return coll
        return None

    def dropped_between(self, db: str, coll: str, after: int, upto: int | None) -> Archive | None:
        """An archive of ``db.coll`` made by a drop on main in ``(after, upto]``."""
        for found in self.archives.get((db, coll), ()):
            if found.until > after and (upto is None or found.until <= upto):
                return found
        return None

    def shows(self, branch: Branch, db: str, coll: str, *, in_base: bool) -> bool:
        """Whether ``db.coll`` exists on the branch, given whether main's collection does."""
        shown = in_base
        for b in reversed(self.layers(branch)):
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

    async def child_overlays(
        self, parent: Branch, db: str, coll: str, scope: TxnScope | None = None
    ) -> list[Overlay]:
        """The overlays of ``db.coll`` in every child of ``parent``, registered if new
        (in ``scope``: as ``ensure_overlay``).

        A child without an overlay still sees the collection exactly as the parent
        does now, so a new one starts absent when the parent has no such collection:
        the parent creating it later must not make it appear on the child.
        """
        if scope is None:
            from .bundles import bundle_children  # bundles builds on this module

            await bundle_children(self, parent)
        kids = self.layer_kids(parent.name)
        fed: list[Overlay] = []
        if parent.name == MAIN:  # children reading an archive of it are not fed by it,
            kids = [k for k in kids if self.archive_of(k, db, coll) is None]
            for record, kid in self.fed_by(db, coll):  # but those reading it renamed are
                fed.append(await self.ensure_overlay(kid, db, record.coll, scope=scope))
        known = [self._known_overlay(k, db, coll, scope) for k in kids]
        if all(ov is not None for ov in known):
            # Nothing to register, so nothing to ask the upstream: in a client's
            # transaction a listCollections beside it can make its next write
            # conflict on the test upstream (after a rename of the collection).
            return [ov for ov in known if ov is not None] + fed
        in_base = await self.base_exists(parent, db, coll)
        absent = not self.shows(parent, db, coll, in_base=in_base)
        own = [await self.ensure_overlay(k, db, coll, absent=absent, scope=scope) for k in kids]
        return own + fed

    def _known_overlay(
        self, branch: Branch, db: str, coll: str, scope: TxnScope | None
    ) -> Overlay | None:
        """The overlay ``ensure_overlay`` would find without registering one."""
        found = scope.overlays.get(overlay_key(branch.id, db, coll)) if scope else None
        return found or self.overlay(branch, db, coll)

    # -- sharing the upstream with other proxies ---------------------------------

    async def changed(
        self, runner: Runner | None = None, *, since: int | None = None, only: bool = False
    ) -> int:
        """Tell other proxies that the metadata changed (they reload it on ``sync``).

        Returns the LSN head at that moment. Run inside the transaction of the
        change, writers that did not see it conflict on the counter and retry.
        ``since``: ``loads`` when the change began; if no reload finished or ran
        since, and nobody else changed anything, the caller's own update of the
        in-memory metadata (made right after, with no await between) keeps it
        current. Otherwise this proxy reloads on its next ``sync``. (A client's
        transaction announces its changes with ``announce_in`` instead.)
        ``only``: raise StaleCatalog if the stored catalog had moved past what is
        held here (for a change decided on this picture alone).
        """
        command = {
            "findAndModify": "counters",
            "query": {"_id": LSN_COUNTER},
            "update": {"$inc": {"epoch": 1}},
            "upsert": True,
            "new": True,
        }
        reply = await (runner or self.db).run(INTERNAL_DB, command)
        counter = reply["value"]
        if only and int(counter.get("epoch", 0)) != self.epoch + 1:
            raise StaleCatalog
        unseen = since == self.loads and not self._reloading.locked()
        if unseen and int(counter.get("epoch", 0)) == self.epoch + 1:
            self.epoch += 1  # nobody else changed anything: what we hold is current
        return int(counter.get("value", 0))

    def _chain_overlays(self, branch: Branch, db: str) -> list[Overlay]:
        ids = {b.id for b in self.layers(branch)}
        return [ov for ov in self.overlays.values() if ov.branch_id in ids and ov.db == db]

    def check(self, branch: Branch, db: str) -> Front:
        """What ``sync`` would ask, as a check to send with a read's first upstream
        command: it raises ``CacheMoved`` unless the epoch and the versions of
        ``branch``'s overlays in ``db`` are what the caches hold now."""
        expected = {
            LSN_COUNTER: ("epoch", self.epoch),
            ANNOUNCED: ("epoch", self.announced),
            **{version_key(ov.key): ("v", ov.version) for ov in self._chain_overlays(branch, db)},
        }

        def judge(reply: dict[str, Any]) -> None:
            stored = {d["_id"]: d for d in reply["cursor"]["firstBatch"]}
            for key, (name, value) in expected.items():
                if int(stored.get(key, {}).get(name, 0)) != value:
                    raise CacheMoved

        find = {
            "find": "counters",
            "filter": {"_id": {"$in": list(expected)}},
            "batchSize": len(expected) + 1,  # all of them, and the cursor closed
            "singleBatch": True,
        }
        return Front(INTERNAL_DB, find, judge)

    async def sync(self, branch: Branch, db: str, also: Iterable[Overlay] = ()) -> Branch:
        """Bring the metadata and the id caches of ``branch``'s overlays in ``db`` (and
        of the overlays ``also``) up to date with what is stored; returns the branch
        as now stored.

        One query: the epoch and the versions of the overlays concerned. A changed
        epoch reloads the metadata; a changed version drops that overlay's id
        cache (a fresh object, so writers holding the old one are undisturbed:
        they check versions in their own transaction).
        """
        keys = {ov.key for ov in also}
        for _ in range(2):
            keys.update(ov.key for ov in self._chain_overlays(branch, db))
            wanted = [LSN_COUNTER, ANNOUNCED, *(version_key(key) for key in keys)]
            docs = await self.db.find(INTERNAL_DB, "counters", {"_id": {"$in": wanted}})
            stored = {d["_id"]: d for d in docs}
            epochs = [int(stored.get(k, {}).get("epoch", 0)) for k in (LSN_COUNTER, ANNOUNCED)]
            if epochs != [self.epoch, self.announced]:
                await self.reload()
                branch = await self.get(branch.name)
                continue
            for key in keys:
                ov = self.overlays.get(key)
                version = int(stored.get(version_key(key), {}).get("v", 0))
                if ov is not None and ov.version != version:
                    self.overlays[key] = dataclasses.replace(
                        ov, ids=None, tombstones=set(), version=version
                    )
            # As held now: a refresh since ``branch`` was looked up (one that
            # confirmed a protection, say) may have replaced it.
            held = self.branches.get(branch.name)
            return held if held is not None and held.id == branch.id else branch
        return branch

    async def verify(
        self, runner: Runner, overlays: Sequence[Overlay], *, epochs: bool = True
    ) -> None:
        """Inside a write's transaction: raise ``StaleCatalog`` unless the id caches
        of ``overlays`` and, with ``epochs``, the metadata (its epochs) still
        reflect what the transaction sees.

        A client's transaction checks the versions alone (``epochs=False``): its
        snapshot may predate a catalog change this proxy has learnt since, or
        hold one of its own statements not committed yet, so comparing epochs
        would find it stale however often it started again; its statements sync
        the metadata before they run instead.
        """
        if not overlays:
            return
        expected = {version_key(ov.key): ("v", ov.version) for ov in overlays}
        if epochs:
            expected[LSN_COUNTER] = ("epoch", self.epoch)
            expected[ANNOUNCED] = ("epoch", self.announced)
        keys = list(expected)

        async def answered(reply: dict[str, Any]) -> None:
            await checked(reply)
            stored = {d["_id"]: d for d in reply["cursor"]["firstBatch"]}
            for key, (name, value) in expected.items():
                if int(stored.get(key, {}).get(name, 0)) != value:
                    raise StaleCatalog

        # Sent with the statement's first command: it is judged before anything
        # that command answered is used.
        find = {"find": "counters", "filter": {"_id": {"$in": keys}}, "batchSize": len(keys)}
        await run_or_defer(runner, INTERNAL_DB, find, answered)

    @staticmethod
    def distinct(overlays: Iterable[Overlay]) -> list[Overlay]:
        """``overlays`` without repeats (by key)."""
        return list({ov.key: ov for ov in overlays}.values())

    @staticmethod
    async def bump(runner: Runner, overlays: Iterable[Overlay]) -> list[Overlay]:
        """Inside a write's transaction: record that ``overlays``' contents changed.
        The caller adds one to each ``version`` once the transaction commits."""
        unique = Catalog.distinct(overlays)
        await Catalog.bump_keys(runner, [ov.key for ov in unique])
        return unique

    @staticmethod
    async def bump_keys(runner: Runner, keys: Iterable[str]) -> None:
        """``bump`` by the overlays' keys."""
        updates = Catalog.version_bumps(keys)
        if updates:
            await run_or_defer(runner, INTERNAL_DB, {"update": "counters", "updates": updates})

    @staticmethod
    def version_bumps(keys: Iterable[str]) -> list[dict[str, Any]]:
        """The update statements of ``counters`` that move the versions of the
        overlays ``keys`` (for a write that sends them in a command of its own)."""
        return [
            {"q": {"_id": version_key(key)}, "u": {"$inc": {"v": 1}}, "upsert": True}
            for key in keys
        ]

    async def refresh(self) -> None:
        """Reload the metadata if another proxy changed it (one small query)."""
        if await self._epochs() != (self.epoch, self.announced):
            await self.reload()

    async def _epochs(self) -> tuple[int, int]:
        """The stored catalog epoch and the epoch of client transactions' changes."""
        docs = await self.db.find(
            INTERNAL_DB, "counters", {"_id": {"$in": [LSN_COUNTER, ANNOUNCED]}}
        )
        stored = {d["_id"]: int(d.get("epoch", 0)) for d in docs}
        return stored.get(LSN_COUNTER, 0), stored.get(ANNOUNCED, 0)

    @staticmethod
    async def announce_in(runner: Runner) -> None:
        """Inside a client's transaction: tell every proxy, once it commits, that
        it changed the catalog (they reload it on ``sync``)."""
        bump = {"q": {"_id": ANNOUNCED}, "u": {"$inc": {"epoch": 1}}, "upsert": True}
        await runner.run(INTERNAL_DB, {"update": "counters", "updates": [bump]})

    # -- LSN -------------------------------------------------------------------
    #
    # LSN order must be commit order: a reader that takes the head as its point
    # must never see an entry at or below it commit later. An allocation made
    # inside the transaction that commits it would give that for free, but the
    # counter document would then be held until the commit, and every other
    # writer (a client's transaction lasts as long as the client likes) would
    # wait for it. So a transaction leases its LSNs instead: one atomic update
    # outside it moves the counter and records the range as in flight (with an
    # expiry on the upstream's clock), the transaction commits, and the lease is
    # released. Readers wait until no lease at or below the head they read is
    # live (``current_lsn``). A lease is taken after the transaction has read or
    # written what it changes, so two writers of one document, which mongod
    # never lets overlap, lease in the order they commit.

    async def allocate_lsns(self, runner: Runner, count: int) -> int:
        """``count`` consecutive LSNs for entries ``runner`` writes; returns the first.

        In one of Argon's own transactions (a runner with ``at_end``) they are
        leased and released when it ends. Outside any transaction they are
        simply taken.
        """
        at_end = getattr(runner, "at_end", None)
        if at_end is None:
            return await self.lease_lsns(count, leased=False)
        first = await self.lease_lsns(count, owned=True)
        at_end(lambda: self.release_lsns(first))
        return first

    async def lease_lsns(
        self, count: int, *, epoch: int | None = None, leased: bool = True, owned: bool = False
    ) -> int:
        """Move the counter by ``count`` outside any transaction; returns the first
        LSN. ``leased``: record the range as in flight until ``release_lsns``.
        Raises ``StaleCatalog`` unless the catalog epoch is ``epoch`` (default:
        this proxy's).

        ``owned``: for one of this proxy's own transactions, which must not wait
        for the counter (a client's transaction that changed the catalog holds
        it, and may need this proxy's writers' lock to go on): a short wait, then
        a transient conflict, which its retry loop answers by letting go of the
        lock for a while. The lease names this incarnation, so a proxy that
        ends it after a crash also ends its leases (``incarnation.py``).
        """
        for _ in range(_LEASE_ATTEMPTS):
            request = self._lease_request(count, leased=leased, owned=owned)
            try:
                reply = await self.db.command(INTERNAL_DB, request.command)
            except CommandError as exc:
                if owned and exc.code == EXCEEDED_TIME_LIMIT:
                    raise CommandError(_COUNTER_HELD) from None
                raise
            first = await self._leased(request, reply)
            if first is not None:
                break
        else:
            raise CommandError(_COUNTER_HELD)
        if self._epoch_of(reply) != (self.epoch if epoch is None else epoch):
            if leased:
                await self.release_lsns(first)
            raise StaleCatalog
        return first

    def lease_behind(self, txn: Transaction, count: int) -> RiddenLease:
        """Lease ``count`` LSNs for ``txn`` right behind its next command, on its
        connection (``Transaction.ride``): no round trip of its own. The upstream
        runs it after that command, so after the transaction's snapshot: two
        writers of one document still lease in the order they commit (see
        docs/design.md). The lease is released when the transaction ends.
        ``first`` stays None unless it came back at this proxy's epoch; the
        caller then leases the usual way (``allocate_lsns``), which says why.

        It rides as an ``update`` of the counter and a ``find`` of it, which
        reads the range back from the lease's own entry (named by its token, so
        another proxy's lease in between does not matter): an upstream may
        answer a ``findAndModify`` by scanning its whole collection, and
        ``counters`` holds a document per overlay.
        """
        request = self._lease_request(count, leased=True, owned=True)
        ridden = RiddenLease(count)
        stages = request.command["update"]
        update = {
            "update": "counters",
            "updates": [{"q": {"_id": LSN_COUNTER}, "u": stages, "upsert": True}],
            "maxTimeMS": _OWN_LEASE_WAIT_MS,
        }
        find = {"find": "counters", "filter": {"_id": LSN_COUNTER}, "limit": 1}
        moved = False

        async def updated(reply: dict[str, Any]) -> None:
            nonlocal moved
            moved = bool(reply.get("ok")) and not reply.get("writeErrors")
            if moved and request.ended:
                self._forget_ended(request.ended)

        async def found(reply: dict[str, Any]) -> None:
            if not moved:
                return
            batch = reply.get("cursor", {}).get("firstBatch", []) if reply.get("ok") else []
            counter = batch[0] if batch else {}
            mine = [e for e in counter.get("inflight") or () if e.get("tok") == request.tok]
            if not mine:  # recorded but not seen: end it, whatever it was
                await self._pull_lease({"tok": request.tok})
                return
            first = int(mine[0]["first"])
            txn.at_end(lambda: self.release_lsns(first))
            if int(counter.get("epoch", 0)) == self.epoch:
                ridden.first = first

        txn.ride(Rider(INTERNAL_DB, update, updated), Rider(INTERNAL_DB, find, found))
        return ridden

    def _lease_request(self, count: int, *, leased: bool, owned: bool) -> _LeaseRequest:
        """The ``findAndModify`` that moves the counter by ``count`` (and records the
        lease), taking along this proxy's ended leases."""
        bump: dict[str, Any] = {"$add": [{"$ifNull": ["$value", 0]}, count]}
        stages: list[dict[str, Any]] = [{"$set": {"value": {"$toLong": bump}}}]
        ended = [bson.Int64(first) for first in self._ended] if leased else []
        tok = secrets.token_hex(8)  # to end it even if the reply is lost
        if leased:
            moment = now()
            keep: dict[str, Any] = {"$gt": ["$$this.until", moment]}
            if ended:  # this proxy's leases whose transactions have ended go with it
                keep = {"$and": [keep, {"$not": [{"$in": ["$$this.first", ended]}]}]}
            live = {"$filter": {"input": {"$ifNull": ["$inflight", []]}, "cond": keep}}
            lease: dict[str, Any] = {
                "first": {"$subtract": ["$value", count - 1]},
                "until": moment + LEASE,
                "tok": tok,
            }
            if owned and self.owner is not None:
                lease["by"] = {"$literal": self.owner}
            stages.append({"$set": {"inflight": {"$concatArrays": [live, [lease]]}}})
        command: dict[str, Any] = {
            "findAndModify": "counters",
            "query": {"_id": LSN_COUNTER},
            "update": stages,
            "upsert": True,
            "new": True,
        }
        if owned:
            command["maxTimeMS"] = _OWN_LEASE_WAIT_MS
        return _LeaseRequest(command, count, leased, tok, ended)

    async def _leased(self, request: _LeaseRequest, reply: dict[str, Any]) -> int | None:
        """The first LSN a lease's ``ok`` reply gave; None if the upstream answered
        without the document (seen under concurrent updates of it): whatever it
        did then, the lease it may have recorded is ended."""
        counter = reply.get("value")
        if counter is None:
            if request.leased:
                await self._pull_lease({"tok": request.tok})
            return None
        if request.ended:
            self._forget_ended(request.ended)
        return int(counter["value"]) - request.count + 1

    @staticmethod
    def _epoch_of(reply: dict[str, Any]) -> int:
        return int(reply["value"].get("epoch", 0))

    async def release_lsns(self, first: int) -> None:
        """End the lease of the range starting at ``first``: its transaction has
        committed or aborted. With ``release_ended`` running, the lease is pulled
        by the next lease of this proxy or by that task a moment later (a round
        trip less per write); this proxy's own ``settle_lsns`` no longer waits
        for it. Otherwise at once, over a fresh connection if the request's is
        lost."""
        if self._releasing:
            self._ended.append(first)
            self._ended_added.set()
            return
        await self._pull_lease({"first": first})

    async def release_ended(self, delay: float = 0.02) -> None:
        """Pull this proxy's ended leases that no lease took along, ``delay`` after
        the first of them ended; runs until cancelled, then pulls what is left."""
        self._releasing = True
        try:
            while True:
                await self._ended_added.wait()
                self._ended_added = trio.Event()
                await trio.sleep(delay)
                await self._pull_ended()
        finally:
            self._releasing = False
            with trio.move_on_after(5, shield=True):
                await self._pull_ended()

    async def _pull_ended(self) -> None:
        batch = [bson.Int64(first) for first in self._ended]
        if not batch:
            return
        try:
            await self._pull_lease({"first": {"$in": batch}})
        except Exception:  # the upstream is away: the leases wait for the next try
            log.warning("ending %d LSN leases failed; trying again", len(batch))
            self._ended_added.set()
            return
        self._forget_ended(batch)

    def _forget_ended(self, pulled: list[bson.Int64]) -> None:
        gone = {int(first) for first in pulled}
        self._ended = [first for first in self._ended if first not in gone]

    async def _pull_lease(self, which: dict[str, Any]) -> None:
        pull = {"$pull": {"inflight": which}}
        command = {"update": "counters", "updates": [{"q": {"_id": LSN_COUNTER}, "u": pull}]}
        try:
            await self.db.command(INTERNAL_DB, command)
        except UpstreamIOError:
            async with self.db.pool.checkout() as conn:
                await run_checked(conn, INTERNAL_DB, command)

    async def current_lsn(self) -> int:
        """The LSN head, once final: every LSN up to it has committed or never will.

        Leases at or below the head are waited for; they end when their
        transactions do, or when they expire (a proxy that died holding one)."""
        return await self.settle_lsns()

    async def settle_lsns(self, head: int | None = None) -> int:
        """Wait until no live lease starts at or below ``head`` (default: the
        current head); returns ``head``."""
        pause = _FIRST_SETTLE_PAUSE
        while True:
            found = await self.db.find(INTERNAL_DB, "counters", {"_id": LSN_COUNTER})
            counter = found[0] if found else {}
            if head is None:
                head = int(counter.get("value", 0))
            moment = now()
            ended = set(self._ended)  # this proxy's own, known to be over
            if not any(
                int(e["first"]) <= head
                and _aware(e["until"]) > moment
                and int(e["first"]) not in ended
                for e in counter.get("inflight") or ()
            ):
                return head
            await trio.sleep(pause)
            pause = min(pause * 2, _MAX_SETTLE_PAUSE)

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
        store: bool = True,
        **details: Any,
    ) -> Branch:
        """Create branch ``name`` of ``parent`` at ``base_lsn`` (default: now).

        ``store=False`` makes it known to this proxy only (its writes freeze into
        it) until ``publish`` stores it: for a branch that must be complete before
        anyone else reads it.
        """
        if not internal:  # internal names (snapshots behind addresses) contain '@'
            validate_branch_name(name)
        await self.get(parent)
        details.setdefault("project", self.branches[parent].project)  # inherited
        # With no write of this proxy half-way, every write either committed
        # before the fork (its LSN is at most the base) or sees the new child and
        # freezes into it (its LSN is above the base). Other proxies' writes are
        # ordered by the counter the store moves (see ``_store``).
        async with self.forks.forking():
            if name in self.branches:
                raise BranchError(BRANCH_EXISTS, f"branch {name!r} already exists")
            lsn = await self.current_lsn() if base_lsn is None else base_lsn
            branch = Branch(
                name, "b" + secrets.token_hex(5), parent, lsn, now(), read_only, point, **details
            )
            if not store:
                self.branches[name] = branch
                self.pending[name] = branch
                return branch
            await self._store(branch, fork_now=base_lsn is None)
            self.branches[name] = branch
        if base_lsn is None:
            # Writes that leased LSNs up to the base before the fork commit as
            # part of it: the branch is ready once they have.
            await self.settle_lsns(branch.base_lsn)
        return branch

    async def publish(self, branch: Branch) -> None:
        """Store ``branch``; BranchExists if another one of its name was stored first."""
        await self._store(branch, fork_now=False)
        self.pending.pop(branch.name, None)

    async def _store(self, branch: Branch, *, fork_now: bool) -> None:
        """Insert the branch document in one transaction with the catalog epoch.

        Exactly one of several creators of a name wins. With ``fork_now`` the fork
        point is the LSN head read in that transaction: another proxy's write
        either committed before it (and is below the fork point) or conflicts on
        the counter, starts again and finds the branch.
        """

        since = self.loads

        async def unit(txn: Runner) -> None:
            head = await self.changed(txn, since=since)
            if fork_now:
                branch.base_lsn = head
            await txn.run(INTERNAL_DB, {"insert": "branches", "documents": [branch.to_doc()]})

        try:
            await run_in_transaction(self.db.pool, unit, sessions=self.sessions)
        except CommandError as exc:
            if exc.code == 11000:  # another caller created it first: exactly one wins
                raise BranchError(BRANCH_EXISTS, f"branch {branch.name!r} already exists") from None
            raise

    async def drop_overlays(self, gone: list[Overlay]) -> None:
        """Drop the collections of overlays the catalog no longer lists."""
        for ov in gone:
            try:
                await self.db.command(ov.db, {"drop": ov.name})
            except ArgonError as exc:
                if exc.code != 26:  # already gone
                    raise

    async def discard(self, branch: Branch) -> list[Overlay]:
        """Forget an unpublished branch; returns its overlays, for the caller to drop."""
        self.pending.pop(branch.name, None)
        if self.branches.get(branch.name) is branch:
            del self.branches[branch.name]
        await self.db.command(
            INTERNAL_DB,
            {"delete": "overlays", "deletes": [{"q": {"branch_id": branch.id}, "limit": 0}]},
        )
        gone = [ov for ov in self.overlays.values() if ov.branch_id == branch.id]
        for ov in gone:
            del self.overlays[ov.key]
        return gone

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
        gone = await self.forget(branch)
        self.branches.pop(name, None)
        from .bundles import prune  # bundles builds on this module

        gone += await prune(self, branch.under)
        if self.default_branch == name:
            await self.set_default(MAIN)
        return gone

    async def forget(self, branch: Branch) -> list[Overlay]:
        """Delete the stored branch (or bundle) and its overlay entries; returns the
        overlays, for the caller to drop. The caller removes it from memory."""
        since = self.loads
        # what is stored, which may hold overlays another proxy registered
        stored = await self.db.find(INTERNAL_DB, "overlays", {"branch_id": branch.id})
        gone = [Overlay.from_doc(doc) for doc in stored]
        # by id too: never delete another proxy's new branch of the same name
        mine = {"_id": branch.name, "id": branch.id}
        await self.db.command(
            INTERNAL_DB, {"delete": "branches", "deletes": [{"q": mine, "limit": 1}]}
        )
        await self.db.command(
            INTERNAL_DB,
            {"delete": "overlays", "deletes": [{"q": {"branch_id": branch.id}, "limit": 0}]},
        )
        await self.changed(since=since)
        for ov in gone:
            self.overlays.pop(ov.key, None)
        return gone

    async def update(self, branch: Branch, **changes: Any) -> None:
        """Change metadata fields of a branch (archived, read_only, expires, ...)."""
        since = self.loads
        for key, value in changes.items():
            setattr(branch, key, value)
        await self.db.command(
            INTERNAL_DB,
            {
                "update": "branches",
                "updates": [{"q": {"_id": branch.name, "id": branch.id}, "u": {"$set": changes}}],
            },
        )
        await self.changed(since=since)

    async def set_default(self, name: str) -> None:
        await self.get(name)
        since = self.loads
        await self.db.command(
            INTERNAL_DB,
            {
                "update": "settings",
                "updates": [
                    {"q": {"_id": "default_branch"}, "u": {"$set": {"value": name}}, "upsert": True}
                ],
            },
        )
        await self.changed(since=since)
        self.default_branch = name

    # -- overlays --------------------------------------------------------------

    def overlay(self, branch: Branch, db: str, coll: str) -> Overlay | None:
        return self.overlays.get(f"{branch.id}|{db}|{coll}")

    async def ensure_overlay(
        self,
        branch: Branch,
        db: str,
        coll: str,
        *,
        absent: bool = False,
        scope: TxnScope | None = None,
    ) -> Overlay:
        """The branch's overlay of ``db.coll``, registered (and indexed) on first use.

        ``absent`` registers a new one as hiding a collection the branch does not have.
        In a transaction's ``scope`` a new overlay is registered inside it, and
        known to it alone (the caller keeps it) until it commits: the
        transaction may abort, and it holds the LSN counter ``changed`` writes.
        """
        found = self._known_overlay(branch, db, coll, scope)
        if found is not None:
            return found
        ov = Overlay(branch.id, db, coll, cut=absent, present=not absent, ids={})
        base = self.base_name(branch, db, coll)
        if scope is not None:
            await self._copy_indexes(db, base, ov.name, scope.runner)
        since = self.loads
        fields = {"branch_id": ov.branch_id, "db": db, "coll": coll}
        flags = {"cut": ov.cut, "present": ov.present, "dropped": ov.dropped}
        command: dict[str, Any] = {
            "findAndModify": "overlays",
            "query": {"_id": ov.key},
            "update": {"$setOnInsert": {**fields, **flags}},
            "upsert": True,
            "new": True,
        }
        if scope is not None:
            reply = await scope.runner.run(INTERNAL_DB, command)
        elif _IN_WRITE.get():
            reply = await self._register_in_write(command)
        else:
            reply = await self.db.run(INTERNAL_DB, command)
        upserted = not reply.get("lastErrorObject", {}).get("updatedExisting", False)
        if scope is not None and upserted:
            await scope.announce()
            return ov
        if scope is None:
            await self._copy_indexes(db, base, ov.name)
        if upserted:
            await self.changed(since=since)
        else:  # another proxy registered it, maybe otherwise: what it stored holds
            ov = Overlay.from_doc(reply["value"])
        self.overlays[ov.key] = ov
        return ov

    async def _register_in_write(self, command: dict[str, Any]) -> dict[str, Any]:
        """Run an overlay registration of a writer, which holds its proxy's lock: in
        a transaction of its own, so that a client's transaction registering the
        same overlay (whose next statement may need that lock) makes it fail at
        once (``CatalogBusy``) instead of waiting, as a plain write would."""

        async def unit(txn: Runner) -> dict[str, Any]:
            return await txn.run(INTERNAL_DB, command)

        try:
            return await run_in_transaction(
                self.db.pool, unit, sessions=self.sessions, retry_for=0.0
            )
        except CommandError as exc:
            if is_transient(exc):
                raise CatalogBusy from None
            raise

    async def set_flags(
        self,
        ov: Overlay,
        *,
        cut: bool,
        present: bool,
        dropped: bool | None = None,
        runner: Runner | None = None,
        announce: Announce | None = None,
        moved: bool = False,
    ) -> None:
        """Record that the branch dropped (cut, absent) or created (present) the collection
        (in ``runner``'s transaction, told by ``announce``, if given); ``moved``: dropped
        by a rename (which the branch's change streams report as such)."""
        dropped = ov.dropped if dropped is None else dropped
        since = self.loads
        flags = {"cut": cut, "present": present, "dropped": dropped, "moved": moved}
        await (runner or self.db).run(
            INTERNAL_DB,
            {"update": "overlays", "updates": [{"q": {"_id": ov.key}, "u": {"$set": flags}}]},
        )
        if announce is not None:  # a client's transaction: only its own copy learns it
            await announce()
            ov.cut, ov.present, ov.dropped = cut, present, dropped
            return
        await self.changed(since=since)
        self.note_overlay(ov, cut=cut, present=present, dropped=dropped)

    async def set_view(self, ov: Overlay, view: dict[str, Any] | None) -> None:
        """Record that the name is a view the branch created (``view``: its viewOn,
        pipeline and collation) or no longer one (None)."""
        change = {"$set": {"view": view}} if view is not None else {"$unset": {"view": ""}}
        since = self.loads
        await self.db.command(
            INTERNAL_DB, {"update": "overlays", "updates": [{"q": {"_id": ov.key}, "u": change}]}
        )
        await self.changed(since=since)
        self.note_overlay(ov, view=view)

    def note_overlay(self, ov: Overlay, **fields: Any) -> None:
        """Set ``fields`` on ``ov`` and on the overlay of its key held now, which a
        reload since the caller took ``ov`` may have put in its place."""
        for held in {id(o): o for o in (ov, self.overlays.get(ov.key)) if o is not None}.values():
            for name, value in fields.items():
                setattr(held, name, value)

    async def _copy_indexes(
        self, db: str, coll: str, target: str, runner: Runner | None = None
    ) -> None:
        """Give the overlay the base's indexes, so layers plan alike (creating it in
        ``runner``'s transaction, if given: one it writes must not be newer than it).

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
            await (runner or self.db).run(db, {"createIndexes": target, "indexes": wanted})

    async def load_ids(self, ov: Overlay) -> None:
        """Fill the overlay's id cache from the upstream."""
        if ov.ids is not None:
            return
        # The version first: a write landing between the two reads leaves the cache
        # ahead of its version, which the next check corrects; never behind it.
        found = await self.db.find(INTERNAL_DB, "counters", {"_id": version_key(ov.key)})
        ov.version = int(found[0].get("v", 0)) if found else 0
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
