"""What changed on a branch since a point: WAL windows along the branch tree.

Theory of operation: a branch's view changes only through writes made on that
branch (the copy-on-write freeze keeps its parent's later writes out), so
"what changed in branch X's view since LSN p" is X's own WAL entries after p,
as long as p is not before X's creation. Further back, X's view is its
parent's view at X's base LSN, and so on up the tree.

Two refs A and B meet at their nearest common ancestor C. A's line left C at
``fork_A`` (the base LSN of A's ancestor that is C's child; no fork if A is C),
B's at ``fork_B``. Their common base is C at ``min(fork_A, fork_B)``. What
changed on A's side since that base is a list of *windows*: for A and each
ancestor below C, that branch's own entries after its base LSN and up to the
point where the next branch down left it; and C's own entries between the
common base and ``fork_A``. The pre-image of the first entry of a document in
a side's windows is that document at the common base.

Every scan reads entries by (branch id, LSN range) through the WAL's
``branch_id_lsn`` index: its cost follows the number of changes, never the
collection size or the length of the history. Entries are found by the
branch's id, never its name: a branch deleted and created again under the
same name is another branch, with a history of its own.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import bson

from .catalog import Branch, Catalog
from .dbclient import DbClient
from .errors import COMMAND_NOT_SUPPORTED, ArgonError
from .naming import INTERNAL_DB, MAIN


@dataclass(frozen=True, slots=True)
class Window:
    """WAL entries of a branch with ``after < LSN <= upto`` (``upto`` None: no bound).

    ``branch`` is the branch's name (for display), ``branch_id`` what selects entries.
    """

    branch: str
    branch_id: str
    after: int
    upto: int | None = None

    @classmethod
    def of(cls, branch: Branch, after: int, upto: int | None = None) -> Window:
        return cls(branch.name, branch.id, after, upto)

    def query(self) -> dict[str, Any]:
        lsn: dict[str, Any] = {"$gt": bson.Int64(self.after)}
        if self.upto is not None:
            lsn["$lte"] = bson.Int64(self.upto)
        return {"branch_id": self.branch_id, "_id": lsn}

    def holds(self, entry: dict[str, Any]) -> bool:
        """Whether the WAL entry ``entry`` is one of this window's."""
        lsn = int(entry["_id"])
        return (
            entry.get("branch_id") == self.branch_id
            and lsn > self.after
            and (self.upto is None or lsn <= self.upto)
        )

    @property
    def empty(self) -> bool:
        return self.upto is not None and self.upto <= self.after


@dataclass(frozen=True, slots=True)
class Sides:
    """The changes of two refs since their common base."""

    ancestor: str
    base_lsn: int
    left: tuple[Window, ...]
    right: tuple[Window, ...]


def _line(catalog: Catalog, branch: Branch, ancestor: str) -> list[Branch]:
    """``branch`` and its ancestors strictly below ``ancestor``, nearest first."""
    out: list[Branch] = []
    for b in catalog.chain(branch):
        if b.name == ancestor:
            return out
        out.append(b)
    raise ValueError(f"{ancestor} is not an ancestor of {branch.name}")


def refuse_main_drops(catalog: Catalog, windows: Iterable[Window], ns: str, what: str) -> None:
    """Refuse ``what`` when main dropped ``ns`` within one of main's ``windows``: the
    drop moved the collection aside without a WAL entry per document, so the
    changes on either side of it cannot be compared."""
    db, coll = ns.split(".", 1)
    for window in windows:
        if window.branch_id != MAIN:
            continue
        dropped = catalog.dropped_between(db, coll, window.after, window.upto)
        if dropped is not None:
            raise ArgonError(
                COMMAND_NOT_SUPPORTED,
                f"{what}: main dropped collection {ns} at LSN {dropped.until}, between the "
                "points compared, and comparing changes across a drop on main is not "
                "supported yet",
            )


def common_ancestor(catalog: Catalog, a: Branch, b: Branch) -> Branch:
    names = {x.name for x in catalog.chain(b)}
    return next(x for x in catalog.chain(a) if x.name in names)


def _fork(line: list[Branch]) -> int | None:
    """Where a line left its ancestor (None: it is the ancestor itself)."""
    return line[-1].base_lsn if line else None


def _windows(line: list[Branch], ancestor: Branch, base: int, fork: int | None) -> list[Window]:
    out: list[Window] = []
    upto: int | None = None
    for b in line:
        out.append(Window.of(b, b.base_lsn, upto))
        upto = b.base_lsn
    if fork is None or fork > base:
        out.append(Window.of(ancestor, base, fork))
    return [w for w in out if not w.empty]


def sides(catalog: Catalog, left: Branch, right: Branch) -> Sides:
    """The windows of changes on each side since the common base of two refs."""
    anc = common_ancestor(catalog, left, right)
    lline, rline = _line(catalog, left, anc.name), _line(catalog, right, anc.name)
    lfork, rfork = _fork(lline), _fork(rline)
    forks = [f for f in (lfork, rfork) if f is not None]
    base = min(forks) if forks else 0
    if not forks:  # the same branch on both sides: nothing differs
        return Sides(anc.name, base, (), ())
    return Sides(
        anc.name,
        base,
        tuple(_windows(lline, anc, base, lfork)),
        tuple(_windows(rline, anc, base, rfork)),
    )


def since(branch: Branch, lsn: int) -> tuple[Window, ...]:
    """The changes of ``branch``'s view after ``lsn`` (``lsn`` >= its base LSN)."""
    return (Window.of(branch, max(lsn, branch.base_lsn)),)


def lineage(catalog: Catalog, branch: Branch) -> tuple[Window, ...]:
    """Every change that shaped ``branch``'s view, down to main's first logged write."""
    line = catalog.chain(branch)
    out: list[Window] = []
    upto: int | None = None
    for b in line:
        out.append(Window.of(b, b.base_lsn if b.parent else 0, upto))
        upto = b.base_lsn
    return tuple(w for w in out if not w.empty)


def ns_filter(db: str | None, collection: str | None) -> dict[str, Any]:
    if db and collection:
        return {"ns": f"{db}.{collection}"}
    if db:
        return {"ns": {"$regex": f"^{_escape(db)}\\."}}
    if collection:
        return {"ns": {"$regex": f"\\.{_escape(collection)}$"}}
    return {}


def _escape(text: str) -> str:
    return re.escape(text)


async def scan(
    db: DbClient,
    windows: Iterable[Window],
    *,
    where: dict[str, Any] | None = None,
    projection: dict[str, Any] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """The entries of ``windows``, oldest first within each window, windows in LSN order."""
    ordered = sorted(windows, key=lambda w: w.after)
    for w in ordered:
        cmd: dict[str, Any] = {"find": "wal", "filter": {**w.query(), **(where or {})}}
        cmd["sort"] = {"_id": 1}
        if projection:
            cmd["projection"] = projection
        async for entry in db.cursor(INTERNAL_DB, cmd):
            yield entry


async def any_change(db: DbClient, windows: Iterable[Window]) -> bool:
    for w in windows:
        found = await db.find(INTERNAL_DB, "wal", w.query(), limit=1, projection={"_id": 1})
        if found:
            return True
    return False


Finder = Callable[[dict[str, Any]], Awaitable[list[dict[str, Any]]]]


def wal_finder(db: DbClient, projection: dict[str, Any] | None = None) -> Finder:
    """Finds WAL entries outside any transaction."""

    async def find(flt: dict[str, Any]) -> list[dict[str, Any]]:
        return await db.find(INTERNAL_DB, "wal", flt, projection=projection or {"_id": 1})

    return find


# Probing LSN ranges on the (branch_id, _id) index stays cheap on every server; a
# sort with a limit scans a branch's whole history on some (docs/design.md, "Costs").
_FIRST_STEP = 64


async def newest(find: Finder, branch_id: str, *, above: int, upto: int) -> dict[str, Any] | None:
    """The newest entry of the branch with id ``branch_id`` with ``above < LSN <= upto``."""
    return await _edge(find, branch_id, above, upto, newest=True)


async def oldest(find: Finder, branch_id: str, *, above: int, upto: int) -> dict[str, Any] | None:
    """The oldest entry of the branch with id ``branch_id`` with ``above < LSN <= upto``."""
    return await _edge(find, branch_id, above, upto, newest=False)


async def _edge(
    find: Finder, branch_id: str, above: int, upto: int, *, newest: bool
) -> dict[str, Any] | None:
    """Probe from one end of ``(above, upto]`` in ranges that grow fourfold while empty."""
    step = _FIRST_STEP
    lo, hi = (max(above, upto - step), upto) if newest else (above, min(upto, above + step))
    while lo < hi:
        found = await find(
            {"branch_id": branch_id, "_id": {"$gt": bson.Int64(lo), "$lte": bson.Int64(hi)}}
        )
        if found:
            pick = max if newest else min
            return pick(found, key=lambda d: int(d["_id"]))
        step *= 4
        lo, hi = (max(above, lo - step), lo) if newest else (hi, min(upto, hi + step))
    return None


async def head(catalog: Catalog, branch: Branch, find: Finder | None = None) -> int:
    """The LSN of the branch's newest write (its base LSN if it has none)."""
    found = await newest(
        find or wal_finder(catalog.db),
        branch.id,
        above=branch.base_lsn,
        upto=await catalog.current_lsn(),
    )
    return int(found["_id"]) if found else branch.base_lsn
