"""Merging one branch into another: three-way, per document, with conflicts.

Theory of operation: a merge of ``source`` into ``target`` visits only the
documents the source changed since the two last agreed (``history``): since
the latest merge between them, else since their common ancestor's fork. For
each, the base version is the pre-image of the source's first change, and
``docdiff.merge_document`` decides against the target's current version:
take the source's, keep the target's, merge field by field, or conflict.
Documents only the target changed are never visited: the cost follows the
number of changes, not the size of the collections.

A computed merge is recorded in ``__argon.merges`` (its conflicts, one
document each, in ``__argon.merge_conflicts``) with the heads of both
branches it was computed against. Applying re-plans from the same heads, so
a preview or a resolved merge applied after either branch moved is refused
as stale. The target's writes, the staleness check and the record's update
run in one upstream transaction: readers of the target see all of the merge
or none of it, and every write carries the merge's id in the WAL.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

from . import history, index_merge, wal
from .catalog import Branch, BranchError, Catalog, hashable_id, now
from .dbclient import DbClient
from .docdiff import ConflictKind, Path, dotted, merge_document, same
from .documents import find_all
from .errors import (
    BAD_VALUE,
    COMMAND_NOT_SUPPORTED,
    MERGE_CONFLICT,
    MERGE_NOT_FOUND,
    READ_ONLY_BRANCH,
    STALE_MERGE,
    ArgonError,
)
from .indexes import Indexes
from .naming import INTERNAL_DB
from .txn import Runner
from .view import fetch
from .write_context import WriteContext
from .writes import Writer

STRATEGIES = ("fail", "manual", "ours", "theirs")
GRANULARITIES = ("field", "document")
SHOWN_CONFLICTS = 100
MERGE_CLIENT = wal.ClientIdentity("argon:merge", None, 0)


@dataclass
class Conflict:
    """A document both sides changed in ways that cannot both hold."""

    ns: str
    doc_id: Any
    kind: ConflictKind | Literal["index-changed"]
    paths: tuple[Path, ...]
    base: dict[str, Any] | None
    ours: dict[str, Any] | None
    theirs: dict[str, Any] | None
    resolution: dict[str, Any] | None = None  # {take, document?} once resolved

    def to_doc(self) -> dict[str, Any]:
        return {
            "ns": self.ns,
            "docId": self.doc_id,
            "kind": self.kind,
            "paths": [dotted(p) for p in self.paths],
            "base": self.base,
            "ours": self.ours,
            "theirs": self.theirs,
            "resolution": self.resolution,
        }


@dataclass
class Plan:
    """What merging ``source`` into ``target`` from these heads does."""

    id: str
    source: str
    target: str
    strategy: str
    source_lsn: int
    target_lsn: int
    fast_forward: bool
    actions: dict[str, list[tuple[Any, dict[str, Any] | None, str]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    conflicts: list[Conflict] = field(default_factory=list)
    index_changes: list[index_merge.IndexChange] = field(default_factory=list)
    source_id: str = ""  # the branches' identities: a name can be reused after a delete
    target_id: str = ""

    @property
    def unresolved(self) -> list[Conflict]:
        return [c for c in self.conflicts if c.resolution is None]

    def counts(self, ns: str | None = None) -> dict[str, int]:
        ops = [op for n, items in self.actions.items() if ns in (None, n) for *_, op in items]
        return {
            "inserted": ops.count("inserted"),
            "updated": ops.count("updated"),
            "deleted": ops.count("deleted"),
            "conflicts": sum(1 for c in self.conflicts if ns in (None, c.ns)),
        }

    def to_doc(self, status: str) -> dict[str, Any]:
        namespaces = sorted(set(self.actions) | {c.ns for c in self.conflicts})
        return {
            "id": self.id,
            "source": self.source,
            "target": self.target,
            "strategy": self.strategy,
            "status": status,
            "fast_forward": self.fast_forward,
            "source_lsn": self.source_lsn,
            "target_lsn": self.target_lsn,
            "counts": self.counts(),
            "collections": [{"ns": ns, **self.counts(ns)} for ns in namespaces],
            "conflicts": [c.to_doc() for c in self.conflicts[:SHOWN_CONFLICTS]],
            "indexes": [c.to_doc() for c in self.index_changes],
        }


# -- planning -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Base:
    """Where two branches last agreed, and what to scan for changes."""

    candidates: tuple[history.Window, ...]  # the source's changes since their fork
    target_changes: tuple[history.Window, ...]  # the target's since they last agreed
    agreed: tuple[str, int] | None  # (branch, LSN) whose state is the base, after a merge
    since: int | None = None  # the LSN of that merge's application


async def _base(db: DbClient, catalog: Catalog, source: Branch, target: Branch) -> Base:
    """The merge base: the latest merge between the two branches (either way) makes
    its source's state at that point the base, as a merge commit does in Git;
    without one, their common ancestor at the fork. Candidates are always the
    source's changes since the fork, so nothing merged earlier is missed."""
    both = history.sides(catalog, source, target)
    found = await db.find(
        INTERNAL_DB,
        "merges",
        {"status": "applied", "$or": _between(source, target)},
        sort={"applied_at": -1},
        limit=1,
    )
    if not found:
        return Base(both.left, both.right, None)
    rec = found[0]
    span = rec.get("applied_lsns") or []
    applied = int(span[1]) if span else int(rec["target_lsn"])
    since = applied if rec["target"] == target.name else int(rec["source_lsn"])
    return Base(
        both.left,
        history.since(target, since),
        (rec["source"], int(rec["source_lsn"])),
        applied,
    )


def _between(a: Branch, b: Branch) -> list[dict[str, Any]]:
    """Merge records between ``a`` and ``b`` (either way), by the branches' identities.

    Records written before merges stored ids name the branches only: they count
    when applied after both branches of those names were created.
    """
    since = max(a.created, b.created)
    names = {"$in": [a.name, b.name]}
    return [
        {"source_id": a.id, "target_id": b.id},
        {"source_id": b.id, "target_id": a.id},
        {
            "source_id": {"$exists": False},
            "source": names,
            "target": names,
            "applied_at": {"$gte": since},
        },
    ]


async def _values_at(
    db: DbClient, catalog: Catalog, branch: Branch, lsn: int, ns: str, ids: list[Any]
) -> dict[Any, dict[str, Any] | None]:
    """These documents of ``branch`` as they were at ``lsn`` (``lsn`` >= its base)."""
    dbname, coll = ns.split(".", 1)
    current = await fetch(db, catalog, branch, dbname, coll, ids)
    out: dict[Any, dict[str, Any] | None] = {
        hashable_id(i): current.get(hashable_id(i)) for i in ids
    }
    undone: set[Any] = set()
    where = {"ns": ns, "doc_id": {"$in": ids}}
    async for entry in history.scan(db, history.since(branch, lsn), where=where):
        key = hashable_id(entry["doc_id"])
        if key not in undone:
            undone.add(key)
            out[key] = wal.image(entry, "pre")
    return out


async def _granularities(db: DbClient) -> dict[str, str]:
    docs = await db.find(INTERNAL_DB, "merge_settings")
    return {d["_id"]: d.get("granularity", "field") for d in docs}


async def _refuse_dropped(catalog: Catalog, windows: tuple[history.Window, ...]) -> None:
    """A collection dropped on the source side is not in the WAL per document."""
    ids = {w.branch_id for w in windows}
    for ov in catalog.overlays.values():
        owner = next((b for b in catalog.branches.values() if b.id == ov.branch_id), None)
        if owner is not None and owner.id in ids and ov.dropped:
            raise ArgonError(
                COMMAND_NOT_SUPPORTED,
                f"merge of branch {owner.name!r}: it dropped collection {ov.db}.{ov.coll}, "
                "and merging a dropped collection is not supported yet. Delete its documents "
                "instead of dropping it, or recreate it, then merge again.",
            )


async def plan(
    db: DbClient,
    catalog: Catalog,
    merge_id: str,
    source: Branch,
    target: Branch,
    strategy: str,
    resolutions: dict[tuple[str, Any], dict[str, Any]] | None = None,
) -> Plan:
    """Decide every document of the merge (nothing is written)."""
    base = await _base(db, catalog, source, target)
    await _refuse_dropped(catalog, base.candidates)
    heads = (
        await history.head(catalog, source),
        await history.head(catalog, target),
    )
    bases: dict[str, dict[Any, tuple[Any, dict[str, Any] | None]]] = defaultdict(dict)
    projection = {"ns": 1, "doc_id": 1, "pre": 1, "pre_z": 1}
    async for entry in history.scan(db, base.candidates, projection=projection):
        per_ns = bases[entry["ns"]]
        key = hashable_id(entry["doc_id"])
        if key not in per_ns:
            per_ns[key] = (entry["doc_id"], wal.image(entry, "pre"))
    out = Plan(
        merge_id,
        source.name,
        target.name,
        strategy,
        heads[0],
        heads[1],
        fast_forward=not await history.any_change(db, base.target_changes),
        source_id=source.id,
        target_id=target.id,
    )
    grains = await _granularities(db)
    prefer: Literal["ours", "theirs"] = "theirs" if strategy == "theirs" else "ours"
    for ns, per_ns in bases.items():
        windows = (*base.candidates, *base.target_changes)
        history.refuse_main_drops(catalog, windows, ns, f"merge of {source.name!r}")
        dbname, coll = ns.split(".", 1)
        ids = [raw for raw, _ in per_ns.values()]
        if base.agreed is not None:
            agreed = await catalog.get(base.agreed[0])
            at = await _values_at(db, catalog, agreed, base.agreed[1], ns, ids)
            per_ns = {key: (raw, at[key]) for key, (raw, _) in per_ns.items()}
        theirs = await fetch(db, catalog, source, dbname, coll, ids)
        ours = await fetch(db, catalog, target, dbname, coll, ids)
        grain = grains.get(ns, "field")
        for key, (raw, ancestor) in per_ns.items():
            o, t = ours.get(key), theirs.get(key)
            decided = merge_document(
                ancestor,
                o,
                t,
                granularity="document" if grain == "document" else "field",
                prefer=prefer,
            )
            result = decided.result
            if decided.conflict is not None:
                conflict = Conflict(ns, raw, decided.conflict, decided.paths, ancestor, o, t)
                chosen = (resolutions or {}).get((ns, key))
                if chosen is not None:
                    conflict.resolution = chosen
                    result = _resolved(chosen, o, t)
                elif strategy in ("ours", "theirs"):
                    conflict.resolution = {"take": strategy}
                out.conflicts.append(conflict)
            if not same(result, o):
                op = "inserted" if o is None else "deleted" if result is None else "updated"
                out.actions[ns].append((raw, result, op))
    await _plan_indexes(db, out, base, resolutions or {})
    return out


async def _plan_indexes(
    db: DbClient,
    out: Plan,
    base: Base,
    resolutions: dict[tuple[str, Any], dict[str, Any]],
) -> None:
    theirs = await index_merge.net_changes(db, base.candidates, after=base.since)
    ours = await index_merge.net_changes(db, base.target_changes)
    for (ns, name), spec in theirs.items():
        result = spec
        if (ns, name) in ours:
            mine = ours[(ns, name)]
            if index_merge.same_spec(mine, spec):
                continue
            doc_id = {"index": name}
            conflict = Conflict(ns, doc_id, "index-changed", (), None, mine, spec)
            chosen = resolutions.get((ns, hashable_id(doc_id)))
            if chosen is not None:
                conflict.resolution = chosen
                result = _resolved(chosen, mine, spec)
            elif out.strategy in ("ours", "theirs"):
                conflict.resolution = {"take": out.strategy}
                result = mine if out.strategy == "ours" else spec
            out.conflicts.append(conflict)
            if conflict.resolution is None or index_merge.same_spec(result, mine):
                continue
        out.index_changes.append(index_merge.IndexChange(ns, name, result))


def _resolved(
    chosen: dict[str, Any], ours: dict[str, Any] | None, theirs: dict[str, Any] | None
) -> dict[str, Any] | None:
    take = chosen["take"]
    if take == "ours":
        return ours
    if take == "theirs":
        return theirs
    doc = chosen.get("document")
    return dict(doc) if doc is not None else None


# -- applying ---------------------------------------------------------------------


async def _head_in(catalog: Catalog, runner: Runner, branch: Branch) -> int:
    async def find(flt: dict[str, Any]) -> list[dict[str, Any]]:
        cmd = {"find": "wal", "filter": flt, "projection": {"_id": 1}}
        return await find_all(runner, INTERNAL_DB, cmd)

    return await history.head(catalog, branch, find)


def stale(what: str, plan_: Plan) -> ArgonError:
    return ArgonError(
        STALE_MERGE,
        f"{what} {plan_.id} of {plan_.source!r} into {plan_.target!r} is stale: a branch "
        f"moved since it was computed (heads were {plan_.source_lsn} and "
        f"{plan_.target_lsn}). Run the merge again.",
    )


async def apply(
    catalog: Catalog, writer: Writer, out: Plan, source: Branch, target: Branch
) -> list[int]:
    """Write the plan to the target in one transaction; returns [first, last] LSN."""

    async def unit(txn: Runner) -> list[int]:
        if (await _head_in(catalog, txn, source), await _head_in(catalog, txn, target)) != (
            out.source_lsn,
            out.target_lsn,
        ):
            raise stale("merge", out)
        lsns: list[int] = []
        for ns, items in out.actions.items():
            db, coll = ns.split(".", 1)
            ctx = WriteContext(target, db, coll, MERGE_CLIENT, joined=txn, extra={"merge": out.id})
            done = await writer.put_many(ctx, [(i, d) for i, d, _ in items])
            lsns.extend(done.lsns)
        span = [min(lsns), max(lsns)] if lsns else []
        await txn.run(
            INTERNAL_DB,
            {
                "update": "merges",
                "updates": [
                    {
                        "q": {"_id": out.id},
                        "u": {
                            **_record(out, "applied"),
                            "applied_lsns": span,
                            "applied_at": now(),
                        },
                        "upsert": True,
                    }
                ],
            },
        )
        return span

    async with catalog.forks.writing():  # no branch forks half-way through
        return await writer.in_transaction(unit, restart_on_stale=True)


def _record(out: Plan, status: str) -> dict[str, Any]:
    doc = out.to_doc(status)
    doc.pop("conflicts")
    doc.pop("id")
    doc["source_id"], doc["target_id"] = out.source_id, out.target_id
    doc["created"] = now()
    return doc


async def _save(db: DbClient, out: Plan, status: str) -> None:
    await db.command(
        INTERNAL_DB,
        {
            "update": "merges",
            "updates": [{"q": {"_id": out.id}, "u": _record(out, status), "upsert": True}],
        },
    )
    await db.command(
        INTERNAL_DB,
        {"delete": "merge_conflicts", "deletes": [{"q": {"merge": out.id}, "limit": 0}]},
    )
    for start in range(0, len(out.conflicts), 500):
        docs = [{"merge": out.id, **c.to_doc()} for c in out.conflicts[start : start + 500]]
        await db.command(INTERNAL_DB, {"insert": "merge_conflicts", "documents": docs})


# -- admin actions -------------------------------------------------------------------


async def _branches(catalog: Catalog, source_name: Any, into: Any) -> tuple[Branch, Branch]:
    if not isinstance(source_name, str):
        raise ArgonError(BAD_VALUE, "argon merge: 'source' must name a branch")
    source = await catalog.get(source_name)
    target_name = into if into is not None else source.parent
    if not isinstance(target_name, str):
        raise ArgonError(BAD_VALUE, "argon merge: 'into' must name a branch (main has no parent)")
    target = await catalog.get(target_name)
    if source.name == target.name:
        raise ArgonError(BAD_VALUE, f"cannot merge branch {source.name!r} into itself")
    if target.read_only:
        raise BranchError(
            READ_ONLY_BRANCH,
            f"cannot merge into {target.name!r}: it is a read-only snapshot. "
            "Create a branch from it and merge into that.",
        )
    return source, target


def _strategy(cmd: dict[str, Any]) -> str:
    strategy = str(cmd.get("strategy") or "fail")
    if strategy not in STRATEGIES:
        raise ArgonError(
            BAD_VALUE, f"unknown merge strategy {strategy!r}; one of: {', '.join(STRATEGIES)}"
        )
    return strategy


def conflict_error(out: Plan, doc: dict[str, Any]) -> ArgonError:
    unresolved = out.unresolved
    shown = ", ".join(f"{c.ns} {c.doc_id!r}" for c in unresolved[:3])
    return ArgonError(
        MERGE_CONFLICT,
        f"merge of {out.source!r} into {out.target!r} has {len(unresolved)} conflict(s) "
        f"({shown}{', ...' if len(unresolved) > 3 else ''}); nothing was applied. Resolve "
        f"them with `argon merge resolve {out.id}` and `argon merge apply {out.id}`, or "
        "merge again with strategy ours or theirs.",
        info={"merge": doc},
    )


async def merge_action(
    db: DbClient, catalog: Catalog, writer: Writer, indexes: Indexes, cmd: dict[str, Any]
) -> dict[str, Any]:
    """``merge``: plan, then apply unless it is a dry run or conflicts remain."""
    source, target = await _branches(catalog, cmd.get("source"), cmd.get("into"))
    strategy = _strategy(cmd)
    for _attempt in range(3):
        out = await plan(db, catalog, "m" + secrets.token_hex(6), source, target, strategy)
        return_doc = await _finish(
            db, catalog, writer, indexes, out, source, target, dry_run=bool(cmd.get("dryRun"))
        )
        if return_doc is not None:
            return {"merge": return_doc}
    raise stale("merge", out)


async def _finish(
    db: DbClient,
    catalog: Catalog,
    writer: Writer,
    indexes: Indexes,
    out: Plan,
    source: Branch,
    target: Branch,
    *,
    dry_run: bool,
) -> dict[str, Any] | None:
    """Record and maybe apply ``out``; None when a branch moved while applying."""
    if dry_run:
        await _save(db, out, "preview")
        return out.to_doc("preview")
    if out.unresolved:
        await _save(db, out, "conflicts")
        raise conflict_error(out, out.to_doc("conflicts"))
    if not out.actions and not out.conflicts and not out.index_changes:
        return out.to_doc("up-to-date")
    await _save(db, out, "applying")
    await index_merge.apply_all(catalog, indexes, target, out.index_changes)
    try:
        span = await apply(catalog, writer, out, source, target)
    except ArgonError as exc:
        if exc.code == STALE_MERGE:
            return None
        raise
    return {**out.to_doc("applied"), "applied_lsns": span}


async def _load(db: DbClient, merge_id: Any) -> dict[str, Any]:
    found = await db.find(INTERNAL_DB, "merges", {"_id": merge_id})
    if not found:
        raise ArgonError(
            MERGE_NOT_FOUND, f"no merge {merge_id!r}; merge ids are printed by `argon branch merge`"
        )
    return found[0]


async def _resolutions(db: DbClient, merge_id: str) -> dict[tuple[str, Any], dict[str, Any]]:
    docs = await db.find(
        INTERNAL_DB, "merge_conflicts", {"merge": merge_id, "resolution": {"$ne": None}}
    )
    return {(d["ns"], hashable_id(d["docId"])): d["resolution"] for d in docs}


async def apply_action(
    db: DbClient, catalog: Catalog, writer: Writer, cmd: dict[str, Any]
) -> dict[str, Any]:
    """``applyMerge``: apply a preview or a merge whose conflicts were resolved."""
    rec = await _load(db, cmd.get("id"))
    if rec["status"] == "applied":
        raise ArgonError(BAD_VALUE, f"merge {rec['_id']} was applied already")
    source = await catalog.get(rec["source"])
    target = await catalog.get(rec["target"])
    out = await plan(
        db,
        catalog,
        rec["_id"],
        source,
        target,
        rec["strategy"],
        await _resolutions(db, rec["_id"]),
    )
    if (out.source_lsn, out.target_lsn) != (rec["source_lsn"], rec["target_lsn"]):
        out.source_lsn, out.target_lsn = rec["source_lsn"], rec["target_lsn"]
        raise stale("preview" if rec["status"] == "preview" else "merge", out)
    if out.unresolved:
        raise conflict_error(out, out.to_doc("conflicts"))
    span = await apply(catalog, writer, out, source, target)
    return {"merge": {**out.to_doc("applied"), "applied_lsns": span}}


async def conflicts_action(db: DbClient, cmd: dict[str, Any]) -> dict[str, Any]:
    rec = await _load(db, cmd.get("id"))
    docs = await db.find(INTERNAL_DB, "merge_conflicts", {"merge": rec["_id"]})
    for d in docs:
        d.pop("_id", None)
        d.pop("merge", None)
    return {"id": rec["_id"], "status": rec["status"], "conflicts": docs}


async def resolve_action(db: DbClient, cmd: dict[str, Any]) -> dict[str, Any]:
    """``resolveConflict``: choose ours, theirs or a document for one conflict."""
    rec = await _load(db, cmd.get("id"))
    take = cmd.get("take")
    if take not in ("ours", "theirs", "document"):
        raise ArgonError(BAD_VALUE, "resolveConflict: 'take' is one of ours, theirs, document")
    resolution: dict[str, Any] = {"take": take}
    if take == "document":
        doc = cmd.get("document")
        if doc is not None and not same(doc.get("_id"), cmd.get("docId")):
            raise ArgonError(BAD_VALUE, "resolveConflict: the document's _id must be docId")
        resolution["document"] = doc
    reply = await db.command(
        INTERNAL_DB,
        {
            "update": "merge_conflicts",
            "updates": [
                {
                    "q": {"merge": rec["_id"], "ns": cmd.get("ns"), "docId": cmd.get("docId")},
                    "u": {"$set": {"resolution": resolution}},
                }
            ],
        },
    )
    if not reply.get("n"):
        raise ArgonError(
            MERGE_NOT_FOUND,
            f"merge {rec['_id']} has no conflict on {cmd.get('ns')} {cmd.get('docId')!r}; "
            f"list them with `argon merge conflicts {rec['_id']}`",
        )
    return {"merge": await stored_merge(db, rec)}


async def stored_merge(db: DbClient, rec: dict[str, Any]) -> dict[str, Any]:
    """A stored merge as the ``merge`` document of the replies, with its conflicts."""
    conflicts = await db.find(
        INTERNAL_DB, "merge_conflicts", {"merge": rec["_id"]}, limit=SHOWN_CONFLICTS
    )
    for c in conflicts:
        c.pop("_id", None)
        c.pop("merge", None)
    doc = {k: v for k, v in rec.items() if k not in ("_id", "created", "applied_at")}
    unresolved = await db.command(
        INTERNAL_DB,
        {"count": "merge_conflicts", "query": {"merge": rec["_id"], "resolution": None}},
    )
    return {"id": rec["_id"], **doc, "conflicts": conflicts, "unresolved": int(unresolved["n"])}


async def granularity_action(db: DbClient, cmd: dict[str, Any]) -> dict[str, Any]:
    dbname, coll, grain = cmd.get("db"), cmd.get("collection"), cmd.get("granularity")
    if not isinstance(dbname, str) or not isinstance(coll, str) or grain not in GRANULARITIES:
        raise ArgonError(
            BAD_VALUE,
            "setMergeGranularity needs 'db', 'collection' and 'granularity' (field or document)",
        )
    await db.command(
        INTERNAL_DB,
        {
            "update": "merge_settings",
            "updates": [
                {"q": {"_id": f"{dbname}.{coll}"}, "u": {"granularity": grain}, "upsert": True}
            ],
        },
    )
    return {"db": dbname, "collection": coll, "granularity": grain}
