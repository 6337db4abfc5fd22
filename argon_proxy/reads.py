"""Branch-aware reads: find, aggregate, count, distinct, listCollections.

Theory of operation: a read on a branch whose view of the collection is just
the base collection is forwarded as it is (only ``$db`` changes). Otherwise
``find`` and ``aggregate`` become one aggregation on the base collection: the
view's stages (each layer matched with the user's filter, pushed down so
every layer uses its indexes) followed by the user's own sort, skip, limit,
projection or pipeline; for ``find`` each layer excludes only the nearer
layers' ids that match the filter (``merge_find.narrowed``). The result is a
real upstream cursor in the client's session, so ``getMore`` and
``killCursors`` pass straight through.
``count`` runs mongod's own command on every layer and adds the answers;
``distinct`` does too and merges the values with BSON equality. The filter of
``listCollections`` is evaluated by mongod, on Argon's entries for the
collections only a branch has as well. Anything a branch cannot answer
exactly yet is refused with ``CommandNotSupported``, never approximated.
"""

from __future__ import annotations

import decimal
import fractions
import math
from collections.abc import Mapping
from typing import Any

import bson

from .branch_views import Views
from .catalog import Archive, Branch, Catalog
from .dbclient import DbClient
from .documents import find_all
from .errors import BAD_VALUE, COMMAND_NOT_SUPPORTED, ArgonError
from .index_bounds import HINT_REQUIRED, bounds_filter, ordered_key
from .indexes import list_specs
from .merge_find import MAX_MERGED, find_only_projection, narrowed
from .naming import INTERNAL_DB, MAIN, is_internal
from .pending import Pending
from .txn import Runner
from .view import View, build_view, conjoin, indexable

OPTION_NOT_SUPPORTED_ON_VIEW = 167

# Fields of a command that are about the session or the server, not the query.
GENERIC_FIELDS = frozenset(
    {
        "$db",
        "lsid",
        "$clusterTime",
        "txnNumber",
        "autocommit",
        "startTransaction",
        "readConcern",
        "writeConcern",
        "$readPreference",
        "maxTimeMS",
        "comment",
        "apiVersion",
        "apiStrict",
        "apiDeprecationErrors",
        "$audit",
        "let",
    }
)
_FIND_TO_AGG = {"allowDiskUse", "collation", "hint", "let"}
_FIND_UNSUPPORTED = (
    "tailable",
    "awaitData",
    "oplogReplay",
    "returnKey",
    "showRecordId",
    "allowPartialResults",
    "readOnce",
)
_CROSS_COLLECTION = ("$lookup", "$graphLookup", "$unionWith")
_COUNT_CARRIED = ("collation", "readConcern", "maxTimeMS")
_LOCAL = "argonlocal"


def _lookup_equality(foreign: str) -> dict[str, Any]:
    """$lookup's localField/foreignField match as an expression: equal values, or
    either side an array holding the other."""
    local = f"$${_LOCAL}"

    def members(value: str) -> dict[str, Any]:
        return {"$cond": [{"$isArray": value}, value, []]}

    return {
        "$or": [
            {"$eq": [foreign, local]},
            {"$in": [foreign, members(local)]},
            {"$in": [local, members(foreign)]},
        ]
    }


_WRITING_STAGES = ("$out", "$merge")
# First stages of a database-level aggregate that read no collection's documents:
# the same on every branch.
_DATABASE_SOURCES = frozenset({"$documents", "$currentOp", "$listLocalSessions"})
_FIRST_ONLY = (
    "$changeStream",
    "$collStats",
    "$indexStats",
    "$currentOp",
    "$listSessions",
    "$planCacheStats",
    "$documents",
    "$listSearchIndexes",
    "$search",
    "$searchMeta",
    "$vectorSearch",
    "$geoNear",
)


def unsupported(what: str, branch: str, why: str = "") -> ArgonError:
    detail = f": {why}" if why else ""
    return ArgonError(
        COMMAND_NOT_SUPPORTED,
        f"{what} is not supported on branch {branch!r} yet{detail}. "
        "Run it on main, or ask for it in Argon's issue tracker.",
    )


def generic(cmd: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cmd.items() if k in GENERIC_FIELDS}


class Reader:
    """Rewrites and answers reads on a branch."""

    def __init__(self, db: DbClient, catalog: Catalog, pending: Pending | None = None) -> None:
        self.db = db
        self.catalog = catalog
        self.pending = pending or Pending()  # what open client transactions wrote
        self.views = Views(db, catalog)  # which names are views on a branch

    async def view(self, branch: Branch, db: str, coll: str, joined: Runner | None = None) -> View:
        """``db.coll`` on ``branch``, as the client's transaction ``joined`` sees it."""
        state = self.pending.peek(joined) if joined is not None else None
        txn = state.overlays if state is not None else None
        return await build_view(self.catalog, branch, db, coll, txn)

    async def find(
        self, branch: Branch, db: str, cmd: dict[str, Any], joined: Runner | None = None
    ) -> dict[str, Any] | None:
        """The aggregate command to run instead, or None to forward ``cmd`` as it is.

        In a client's transaction (``joined``) the aggregate is forwarded with the
        client's session fields, so it reads what the transaction wrote."""
        coll = cmd["find"]
        if await self.is_view(branch, db, coll):
            return await self.aggregate(branch, db, find_as_aggregate(cmd), joined)
        view = await self.view(branch, db, coll, joined)
        if view.passthrough:
            flt = cmd.get("filter")
            if isinstance(flt, dict) and not _as_sent(flt):
                return {**cmd, "filter": indexable(flt)}
            return None
        for option in _FIND_UNSUPPORTED:
            if cmd.get(option):
                raise unsupported(f"find with {option!r}", branch.name)
        projection = cmd.get("projection")
        if projection and find_only_projection(projection):
            raise unsupported(
                "find with a positional, $elemMatch or $slice projection",
                branch.name,
                f"Argon applies it to at most {MAX_MERGED} documents sorted by plain "
                "values, without hint or collation; add a limit",
            )
        if "min" in cmd or "max" in cmd:
            cmd = await self._bounded(branch, db, coll, cmd)
        cmd = await self._with_usable_hint(branch, db, coll, cmd, order=True)
        if joined is None:  # narrowing reads outside any transaction
            view = await narrowed(self.db, self.catalog, view, cmd) or view
        pipeline = view.pipeline(cmd.get("filter") or {}, cmd.get("let"))
        if cmd.get("sort"):
            pipeline.append({"$sort": cmd["sort"]})
        if cmd.get("skip"):
            pipeline.append({"$skip": int(cmd["skip"])})
        limit = abs(int(cmd.get("limit") or 0))
        if limit:
            pipeline.append({"$limit": limit})
        if projection:
            pipeline.append({"$project": projection})
        cursor: dict[str, Any] = {}
        batch = cmd.get("batchSize")
        if cmd.get("singleBatch") or int(cmd.get("limit") or 0) < 0:
            batch = limit or 101
        if batch is not None:
            cursor["batchSize"] = batch
        out = {"aggregate": coll, "pipeline": pipeline, "cursor": cursor}
        out.update({k: cmd[k] for k in _FIND_TO_AGG if k in cmd})
        out.update(generic(cmd))
        return out

    async def aggregate(
        self, branch: Branch, db: str, cmd: dict[str, Any], joined: Runner | None = None
    ) -> dict[str, Any] | None:
        coll = cmd["aggregate"]
        pipeline = list(cmd.get("pipeline") or [])
        if not isinstance(coll, str):
            return await self._database_aggregate(branch, db, cmd, pipeline, joined)
        if await self.is_view(branch, db, coll):
            on_source = await self._on_source(branch, db, cmd)
            return await self.aggregate(branch, db, on_source, joined) or on_source
        rewritten = await self._rewrite_stages(branch, db, pipeline, joined)
        view = await self.view(branch, db, coll, joined)
        if view.passthrough:
            head = rewritten[0] if rewritten and isinstance(rewritten[0], dict) else {}
            if "$match" in head and not _as_sent(head["$match"]):
                rewritten = [{"$match": indexable(head["$match"])}, *rewritten[1:]]
            return None if rewritten == pipeline else {**cmd, "pipeline": rewritten}
        pipeline = rewritten
        cmd = await self._with_usable_hint(branch, db, coll, cmd)
        if pipeline and isinstance(pipeline[0], dict):
            first = next(iter(pipeline[0]), "")
            if first in _FIRST_ONLY or (first == "$match" and _has_text(pipeline[0]["$match"])):
                raise unsupported(f"aggregate starting with {first}", branch.name)
        first_match: dict[str, Any] = {}
        if pipeline and "$match" in pipeline[0] and not _has_text(pipeline[0]["$match"]):
            first_match = pipeline.pop(0)["$match"]
        return {**cmd, "pipeline": view.pipeline(first_match, cmd.get("let")) + pipeline}

    # -- views -------------------------------------------------------------------

    async def is_view(self, branch: Branch, db: str, name: Any) -> bool:
        """Whether ``name`` is a view on ``branch`` (main's views are mongod's own)."""
        if branch.name == MAIN or not isinstance(name, str):
            return False
        return await self.views.of(branch, db, name) is not None

    async def _on_source(self, branch: Branch, db: str, cmd: dict[str, Any]) -> dict[str, Any]:
        """An aggregate of a view as the aggregate of its source collection, the
        view's pipeline first, with the view's collation."""
        resolved = await self.views.resolve(branch, db, cmd["aggregate"])
        assert resolved is not None
        source, pipeline, collation = resolved
        out = {**cmd, "aggregate": source, "pipeline": [*pipeline, *(cmd.get("pipeline") or [])]}
        if collation is not None:
            asked = cmd.get("collation")
            if asked is not None and asked != collation:
                raise ArgonError(
                    OPTION_NOT_SUPPORTED_ON_VIEW,
                    f"Cannot override a view's default collation (view {db}.{cmd['aggregate']} "
                    f"on branch {branch.name!r})",
                )
            out["collation"] = collation
        return out

    async def _run_on_view(
        self,
        branch: Branch,
        db: str,
        cmd: dict[str, Any],
        name: str,
        stages: list[Any],
        joined: Runner | None,
    ) -> list[dict[str, Any]]:
        """Run ``stages`` on the view ``cmd`` (a ``count`` or ``distinct``) names, as
        mongod runs those commands on a view: as an aggregate."""
        agg: dict[str, Any] = {"aggregate": cmd[name], "pipeline": stages, "cursor": {}}
        agg.update({k: cmd[k] for k in ("collation", "hint", "maxTimeMS") if k in cmd})
        agg.update(generic(cmd))
        rewritten = await self.aggregate(branch, db, agg, joined)
        runner: Runner = joined if joined is not None else self.db
        command = {k: v for k, v in (rewritten or agg).items() if k != "$db"}
        return await find_all(runner, db, command)

    async def _cross_view(
        self,
        branch: Branch,
        db: str,
        name: str,
        spec: dict[str, Any],
        other: str,
        joined: Runner | None,
    ) -> tuple[dict[str, Any], str]:
        """A ``$lookup``/``$unionWith`` of view ``other`` as one of its source, the
        view's pipeline first (and ``$lookup``'s equality after it, as mongod
        applies it to the view's documents)."""
        if name == "$graphLookup":
            raise unsupported(f"$graphLookup of view {other!r}", branch.name)
        resolved = await self.views.resolve(branch, db, other)
        assert resolved is not None
        source, pipeline, _ = resolved
        stages = await self._rewrite_stages(branch, db, pipeline, joined)
        new = dict(spec)
        if name == "$lookup" and "localField" in spec and "foreignField" in spec:
            new.pop("localField")
            new.pop("foreignField")
            new["let"] = {**(spec.get("let") or {}), _LOCAL: f"${spec['localField']}"}
            stages.append({"$match": {"$expr": _lookup_equality(f"${spec['foreignField']}")}})
        new["from" if "from" in spec else "coll"] = source
        new["pipeline"] = stages + list(spec.get("pipeline") or [])
        return new, source

    async def _hinted(self, branch: Branch, db: str, coll: str, hint: Any) -> dict[str, Any]:
        """The branch's index a ``hint`` names, or mongod's error for a hint of none."""
        spec = _index_named(await list_specs(self.catalog, branch, db, coll), hint)
        if spec is None:
            raise ArgonError(
                BAD_VALUE,
                "error processing query: planner returned error :: caused by :: hint provided "
                f"does not correspond to an existing index (branch {branch.name!r})",
            )
        return spec

    async def _bounded(
        self, branch: Branch, db: str, coll: str, cmd: dict[str, Any]
    ) -> dict[str, Any]:
        """``cmd`` with its ``min``/``max`` as a filter (``index_bounds``), sorted in
        the hinted index's order unless it asks for another."""
        hint = cmd.get("hint")
        if hint is None:
            raise ArgonError(
                HINT_REQUIRED,
                "When using min()/max() a hint of which index to use must be provided",
            )
        spec = await self._hinted(branch, db, coll, hint)
        key = dict(spec["key"])
        if not ordered_key(key):
            raise unsupported("find with min or max on a special index", branch.name)
        bounds = bounds_filter(key, cmd.get("min"), cmd.get("max"))
        out = {k: v for k, v in cmd.items() if k not in ("min", "max")}
        out["filter"] = conjoin(cmd.get("filter") or None, bounds)
        out.setdefault("sort", key)
        return out

    async def _with_usable_hint(
        self, branch: Branch, db: str, coll: str, cmd: dict[str, Any], *, order: bool = False
    ) -> dict[str, Any]:
        """``cmd`` with a ``hint`` the base collection can take: kept if the index is
        on it, dropped if the branch created it (the hint chooses a plan, not the
        result), refused if dropping it would change the result (sparse, partial).
        The overlays are read without a hint either way. With ``order`` (a find), a
        dropped hint of an ordered index without a sort sorts by the index's keys,
        the order in which mongod's scan of it returns the documents."""
        hint = cmd.get("hint")
        if hint is None or (isinstance(hint, Mapping) and "$natural" in hint):
            return cmd
        spec = await self._hinted(branch, db, coll, hint)
        try:
            listed = {"listIndexes": self.catalog.base_name(branch, db, coll)}
            base = await self.db.find_cursor(db, listed)
        except ArgonError:
            base = []
        if _index_named(base, hint) is not None:
            return cmd
        if spec.get("sparse") or "partialFilterExpression" in spec:
            raise unsupported(
                f"a hint of index {spec['name']!r}",
                branch.name,
                "the branch created it and it is sparse or partial, so the hint changes the result",
            )
        out = {k: v for k, v in cmd.items() if k != "hint"}
        keys = dict(spec.get("key", {}))
        if order and not cmd.get("sort") and all(v in (1, -1) for v in keys.values()):
            out["sort"] = keys
        return out

    async def _database_aggregate(
        self,
        branch: Branch,
        db: str,
        cmd: dict[str, Any],
        pipeline: list[Any],
        joined: Runner | None,
    ) -> dict[str, Any] | None:
        """``aggregate: 1``: no collection of its own, so only the collections its
        stages read ($lookup, $unionWith) become the branch's views. On a branch
        it may start only with a stage that reads no collection's documents."""
        first = next(iter(pipeline[0]), "") if pipeline and isinstance(pipeline[0], dict) else ""
        if branch.name != MAIN and first not in _DATABASE_SOURCES:
            raise unsupported(f"a database-level aggregate starting with {first}", branch.name)
        rewritten = await self._rewrite_stages(branch, db, pipeline, joined)
        return None if rewritten == pipeline else {**cmd, "pipeline": rewritten}

    async def _rewrite_stages(
        self, branch: Branch, db: str, pipeline: list[Any], joined: Runner | None
    ) -> list[Any]:
        """The pipeline with every stage that reads another collection reading that
        collection's view on the branch instead ($lookup, $unionWith, inside
        $facet too); refuses stages that cannot."""
        out: list[Any] = []
        for stage in pipeline:
            if not isinstance(stage, dict) or len(stage) != 1:
                out.append(stage)
                continue
            name, spec = next(iter(stage.items()))
            if name in _WRITING_STAGES:
                raise unsupported(
                    f"aggregate with {name}",
                    branch.name,
                    "its writes would bypass the write-ahead log"
                    + "; it is supported as the last stage",
                )
            if name == "$facet" and isinstance(spec, dict):
                facets = {
                    k: await self._rewrite_stages(branch, db, v, joined) for k, v in spec.items()
                }
                out.append({"$facet": facets})
            elif name in _CROSS_COLLECTION:
                out.append({name: await self._rewrite_cross(branch, db, name, spec, joined)})
            else:
                out.append(stage)
        return out

    async def _rewrite_cross(
        self, branch: Branch, db: str, name: str, spec: Any, joined: Runner | None
    ) -> Any:
        if isinstance(spec, str):
            spec = {"coll": spec}
        if not isinstance(spec, dict):
            return spec
        other = spec.get("from") or spec.get("coll")
        sub = spec.get("pipeline")
        new = dict(spec)
        if sub:
            new["pipeline"] = await self._rewrite_stages(branch, db, list(sub), joined)
        if not isinstance(other, str):
            return new
        if await self.is_view(branch, db, other):
            new, other = await self._cross_view(branch, db, name, new, other, joined)
            spec = new
        view = await self.view(branch, db, other, joined)
        if view.passthrough:
            return new
        if name == "$graphLookup":
            # At the top of a pipeline outside transactions, graph_lookup.py answers.
            raise unsupported(
                f"$graphLookup of collection {other!r} nested in another stage or in a transaction",
                branch.name,
                "that collection has changes on the branch; $graphLookup takes no pipeline "
                "Argon could rewrite, and a copy of it cannot be made there",
            )
        stages = view.pipeline()
        if name == "$lookup" and "localField" in spec and "foreignField" in spec:
            # mongod applies the equality to the base collection only (with its
            # index); documents of the overlays arrive through $unionWith and are
            # matched after it, on a variable (not inside $unionWith, where not
            # every server resolves $lookup's variables).
            new["let"] = {**(spec.get("let") or {}), _LOCAL: f"${spec['localField']}"}
            stages.append({"$match": {"$expr": _lookup_equality(f"${spec['foreignField']}")}})
        new["pipeline"] = stages + list(new.get("pipeline") or [])
        return new

    async def count(
        self, branch: Branch, db: str, cmd: dict[str, Any], joined: Runner | None = None
    ) -> dict[str, Any] | None:
        """Count each layer (in the client's transaction ``joined``, if any)."""
        if await self.is_view(branch, db, cmd["count"]):
            stages: list[Any] = [{"$match": cmd.get("query") or {}}]
            stages += [{"$skip": int(cmd["skip"])}] if cmd.get("skip") else []
            stages += [{"$limit": abs(int(cmd["limit"]))}] if cmd.get("limit") else []
            stages.append({"$count": "n"})
            found = await self._run_on_view(branch, db, cmd, "count", stages, joined)
            return {"n": int(found[0]["n"]) if found else 0, "ok": 1.0}
        view = await self.view(branch, db, cmd["count"], joined)
        if view.passthrough and _as_sent(cmd.get("query")):
            return None
        total = 0
        runner: Runner = joined if joined is not None else self.db
        for layer in view.layers:
            part = {"count": layer.coll, "query": layer.match(cmd.get("query") or {})}
            # In a transaction the session's first command carries its read concern.
            for key in ("collation", "maxTimeMS") if joined else _COUNT_CARRIED:
                if key in cmd:
                    part[key] = cmd[key]
            total += int((await runner.run(db, part))["n"])
        n = max(0, total - int(cmd.get("skip") or 0))
        if cmd.get("limit"):
            n = min(n, abs(int(cmd["limit"])))
        return {"n": n, "ok": 1.0}

    async def distinct(
        self, branch: Branch, db: str, cmd: dict[str, Any], joined: Runner | None = None
    ) -> dict[str, Any] | None:
        """Each layer's distinct values, merged (in the client's transaction ``joined``)."""
        if await self.is_view(branch, db, cmd["distinct"]):
            path = f"${cmd['key']}"
            stages = [
                {"$match": cmd.get("query") or {}},
                {"$unwind": {"path": path, "preserveNullAndEmptyArrays": True}},
                {"$group": {"_id": None, "values": {"$addToSet": path}}},
            ]
            found = await self._run_on_view(branch, db, cmd, "distinct", stages, joined)
            return {"values": found[0]["values"] if found else [], "ok": 1.0}
        view = await self.view(branch, db, cmd["distinct"], joined)
        if view.passthrough and _as_sent(cmd.get("query")):
            return None
        collation = cmd.get("collation")
        snapshot = snapshot_concern(cmd) if joined is None else None
        seen: dict[Any, Any] = {}
        runner: Runner = joined if joined is not None else self.db
        for layer in view.layers:
            part = {
                "distinct": layer.coll,
                "key": cmd["key"],
                "query": layer.match(cmd.get("query") or {}),
            }
            if collation:
                part["collation"] = collation
            if snapshot is not None:
                part["readConcern"] = snapshot
            reply = await runner.run(db, part)
            if snapshot is not None and "atClusterTime" in reply:
                # Every layer reads the point the first one chose, as one read would.
                snapshot = {**snapshot, "atClusterTime": reply["atClusterTime"]}
            for value in reply["values"]:
                seen.setdefault(equality_key(value), value)
        values = list(seen.values())
        if collation and len(view.layers) > 1:
            values = await _collated(runner, db, values, collation)
        out: dict[str, Any] = {"values": values, "ok": 1.0}
        if snapshot is not None and "atClusterTime" in snapshot:
            out["atClusterTime"] = snapshot["atClusterTime"]
        return out

    async def list_collections(
        self, branch: Branch, db: str, cmd: dict[str, Any]
    ) -> dict[str, Any]:
        """The branch's collections, with Argon's own hidden, as a one-batch cursor.

        mongod evaluates the user's filter: on its own entries for collections of
        the base, and on the entries Argon shows for collections only the branch
        has (see ``_filtered``)."""
        flt = cmd.get("filter") or {}
        name_only = bool(cmd.get("nameOnly"))
        query = {"listCollections": 1, "filter": flt, "nameOnly": name_only}
        listed = {
            c["name"]: c for c in await self.db.find_cursor(db, query) if not is_internal(c["name"])
        }
        base = set(listed)
        if flt:
            every = {"listCollections": 1, "nameOnly": True}
            base = {c["name"] for c in await self.db.find_cursor(db, every)}
        # Collections main dropped after the branch forked: their archives stand in.
        archived = {
            coll: found
            for (adb, coll) in self.catalog.archives
            if adb == db and (found := self.catalog.archive_of(branch, db, coll)) is not None
        }
        for name in archived:
            listed.pop(name, None)  # main's collection of that name is a later one
        base |= set(archived)
        ids = {b.id for b in self.catalog.layers(branch)}
        own = {
            ov.coll for ov in self.catalog.overlays.values() if ov.branch_id in ids and ov.db == db
        }
        extra: list[dict[str, Any]] = []
        kept: list[dict[str, Any]] = []
        for name in own | base:
            if is_internal(name):
                continue
            if not self.catalog.shows(branch, db, name, in_base=name in base):
                listed.pop(name, None)
            elif name in archived:
                kept.append({"name": name, "type": "collection"})
            elif name not in base:
                kind = "view" if await self.views.of(branch, db, name) else "collection"
                extra.append({"name": name, "type": kind})
        if not name_only:
            await self._describe(branch, db, extra)
            await self._describe_archived(db, kept, archived)
        for entry in await self._filtered(extra + kept, flt):
            listed[entry["name"]] = entry
        batch = sorted(listed.values(), key=lambda c: c["name"])
        return {
            "cursor": {
                "id": bson.Int64(0),
                "ns": f"{db}.$cmd.listCollections",
                "firstBatch": batch,
            },
            "ok": 1.0,
        }

    async def _describe(self, branch: Branch, db: str, entries: list[dict[str, Any]]) -> None:
        """Give the entries of collections only the branch has the options and info of
        the overlay that holds each (created with the client's options)."""
        holders: dict[str, str] = {}
        for entry in entries:
            for b in self.catalog.layers(branch):
                ov = self.catalog.overlay(b, db, entry["name"])
                if ov is not None and ov.present and ov.view is not None:
                    entry.update(type="view", options=dict(ov.view), info={"readOnly": True})
                    break
                if ov is not None and ov.present:
                    holders[ov.name] = entry["name"]
                    break
        found: dict[str, dict[str, Any]] = {}
        if holders:
            query = {"listCollections": 1, "filter": {"name": {"$in": sorted(holders)}}}
            for c in await self.db.find_cursor(db, query):
                found[holders[c["name"]]] = c
        for entry in entries:
            if entry["type"] == "view":
                continue
            upstream = found.get(entry["name"], {})
            entry["options"] = upstream.get("options", {})
            entry["info"] = {**upstream.get("info", {}), "readOnly": False}
            if "idIndex" in upstream:
                entry["idIndex"] = upstream["idIndex"]

    async def _describe_archived(
        self, db: str, entries: list[dict[str, Any]], archived: dict[str, Archive]
    ) -> None:
        """Give the entries of archived collections their archive's type, options
        and info, under the name the branch knows."""
        if not entries:
            return
        names = {archived[e["name"]].physical: e["name"] for e in entries}
        query = {"listCollections": 1, "filter": {"name": {"$in": sorted(names)}}}
        found = {names[c["name"]]: c for c in await self.db.find_cursor(db, query)}
        for entry in entries:
            upstream = found.get(entry["name"], {})
            entry.update({k: v for k, v in upstream.items() if k != "name"})

    async def _filtered(
        self, entries: list[dict[str, Any]], flt: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """The ``entries`` that match ``flt``, as mongod decides.

        They are not in any collection, so an aggregation turns one document of
        Argon's branch records (there is one for every branch that can own a
        collection) into them and matches the filter; ``$facet`` tells an empty
        source apart from no match."""
        if not entries or not flt:
            return entries
        if set(flt) == {"name"} and isinstance(flt["name"], str):
            return [e for e in entries if e["name"] == flt["name"]]  # exact: one string
        pipeline: list[dict[str, Any]] = [
            {"$limit": 1},
            {"$project": {"_id": 0, "entry": {"$literal": entries}}},
            {"$unwind": "$entry"},
            {"$replaceRoot": {"newRoot": "$entry"}},
            {"$facet": {"seen": [{"$count": "n"}], "matched": [{"$match": flt}]}},
        ]
        cmd = {"aggregate": "branches", "pipeline": pipeline, "cursor": {}}
        (result,) = await self.db.find_cursor(INTERNAL_DB, cmd)
        if not result["seen"]:
            raise ArgonError(1, "listCollections: Argon's branch records are missing")
        matched: list[dict[str, Any]] = result["matched"]
        return matched


def find_as_aggregate(cmd: dict[str, Any]) -> dict[str, Any]:
    """A ``find`` as the aggregate of the same collection mongod would run for it on
    a view: its filter, sort, skip, limit and projection as stages."""
    pipeline: list[Any] = [{"$match": cmd.get("filter") or {}}]
    if cmd.get("sort"):
        pipeline.append({"$sort": cmd["sort"]})
    if cmd.get("skip"):
        pipeline.append({"$skip": int(cmd["skip"])})
    limit = abs(int(cmd.get("limit") or 0))
    if limit:
        pipeline.append({"$limit": limit})
    if cmd.get("projection"):
        pipeline.append({"$project": cmd["projection"]})
    cursor: dict[str, Any] = {}
    batch = cmd.get("batchSize")
    if cmd.get("singleBatch") or int(cmd.get("limit") or 0) < 0:
        batch = limit or 101
    if batch is not None:
        cursor["batchSize"] = batch
    out = {"aggregate": cmd["find"], "pipeline": pipeline, "cursor": cursor}
    out.update({k: cmd[k] for k in _FIND_TO_AGG if k in cmd})
    out.update(generic(cmd))
    return out


def _as_sent(flt: Any) -> bool:
    """Whether ``flt`` may go upstream as the user wrote it: it holds no regex value
    that ``indexable`` rewrites (so a branch answers them alike, overlay or not)."""
    return not isinstance(flt, dict) or indexable(flt) == flt


def _has_text(match: Any) -> bool:
    return isinstance(match, dict) and "$text" in match


def equality_key(value: Any) -> Any:
    """A key equal for two values exactly when BSON comparison finds them equal (the
    equality ``distinct`` uses without a collation): numbers by exact value across
    int, long, double and decimal; booleans apart from numbers; documents and
    arrays element by element, field names and order included."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float | bson.Decimal128):
        return ("number", _number_key(value))
    if isinstance(value, Mapping):
        return ("doc", tuple((str(k), equality_key(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("array", tuple(equality_key(v) for v in value))
    try:
        hash(value)
    except TypeError:
        return ("raw", type(value).__name__, bson.encode({"v": value}))
    return (type(value).__name__, value)


def _number_key(value: int | float | bson.Decimal128) -> Any:
    """An exact key for a number: ``Fraction`` holds every double, long and finite
    decimal exactly, and equal numbers of different types give equal fractions."""
    number: int | float | decimal.Decimal = (
        value.to_decimal() if isinstance(value, bson.Decimal128) else value
    )
    if isinstance(number, int):
        return fractions.Fraction(number)
    if isinstance(number, decimal.Decimal) and number.is_nan():
        return "NaN"
    if number != number:
        return "NaN"  # every NaN equals every other in BSON comparison
    if number in (math.inf, -math.inf):
        return "inf" if number > 0 else "-inf"
    return fractions.Fraction(number)


def _index_named(specs: list[dict[str, Any]], hint: Any) -> dict[str, Any] | None:
    """The index a ``hint`` names (by name or by key pattern), if listed."""
    for spec in specs:
        if isinstance(hint, str) and spec.get("name") == hint:
            return spec
        keys = list(dict(spec.get("key", {})).items())
        if isinstance(hint, Mapping) and keys == list(hint.items()):
            return spec
    return None


async def _collated(runner: Runner, db: str, values: list[Any], collation: Any) -> list[Any]:
    """``values`` (the layers' distinct values, nearest first) with those the
    collation finds equal kept once, as mongod groups them."""
    stages = [{"$documents": [{"v": v} for v in values]}, {"$group": {"_id": "$v"}}]
    cmd = {"aggregate": 1, "pipeline": stages, "cursor": {}, "collation": collation}
    return [d["_id"] for d in await find_all(runner, db, cmd)]


def snapshot_concern(cmd: Mapping[str, Any]) -> dict[str, Any] | None:
    """The command's read concern if it asks for a snapshot (its point, if given)."""
    concern = cmd.get("readConcern")
    if isinstance(concern, Mapping) and concern.get("level") == "snapshot":
        return dict(concern)
    return None
