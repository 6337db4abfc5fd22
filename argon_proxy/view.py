"""A branch's view of a collection, as layers mongod can query.

Theory of operation: ``view(B) = overlay(B) ⊕ view(parent)``. Flattened, a
view is a list of layers, nearest first: each overlay in the branch's chain
that exists for the collection, then the base collection (unless a branch on
the way cut it by dropping the collection). A layer shows its documents
except tombstones and except ids that a nearer layer holds (``exclude``).
Every filter is evaluated by mongod, on every layer, with the user's own
filter; Argon only adds the ``_id`` exclusions and the tombstone test.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import bson
import trio

from .catalog import Branch, Catalog, Overlay, hashable_id, overlay_key
from .dbclient import DbClient
from .errors import ArgonError
from .naming import INTERNAL_PREFIX, MAIN, TOMBSTONE

# An empty $in matches nothing and is answered from the _id index.
MATCH_NOTHING: dict[str, Any] = {"_id": {"$in": []}}
NOT_TOMBSTONE: dict[str, Any] = {TOMBSTONE: {"$exists": False}}


def conjoin(*filters: dict[str, Any] | None) -> dict[str, Any]:
    """All of ``filters`` as one filter, keeping every field at the top level.

    The test upstream's planner (docs/design.md, "Costs") uses an index only for
    a top-level field and scans the whole collection for an explicit ``$and``,
    so fields are merged into one document, and two conditions on one field
    into one operator document; only what cannot merge goes under ``$and``.
    """
    out: dict[str, Any] = {}
    rest: list[dict[str, Any]] = []
    for flt in filters:
        for key, value in indexable(flt or {}).items():
            if key == "$and" and isinstance(value, list):
                rest.extend(value)
            elif key not in out:
                out[key] = value
            else:
                merged = _merge_conditions(out[key], value) if not key.startswith("$") else None
                if merged is None:
                    rest.append({key: value})
                else:
                    out[key] = merged
    if rest:
        out["$and"] = rest
    return out


def indexable(flt: dict[str, Any]) -> dict[str, Any]:
    """``flt`` with every regular expression matched through ``$regex``.

    ``{f: /re/}`` and ``{f: {$regex: /re/}}`` mean the same to MongoDB (both
    match strings by the pattern, and regex values by equality), and so do
    ``{f: {$in: [/re/, v]}}`` and an ``$or`` of ``$regex`` and ``$in``. The
    test upstream answers the literal forms wrongly when ``f`` is indexed
    (nothing matches), so filters Argon sends upstream take the operator form.
    """
    out: dict[str, Any] = {}
    alternatives: list[dict[str, Any]] = []
    for key, value in flt.items():
        if key in ("$and", "$or", "$nor") and isinstance(value, list):
            out[key] = [indexable(v) if isinstance(v, dict) else v for v in value]
        elif key.startswith("$"):
            out[key] = value
        elif isinstance(value, re.Pattern | bson.Regex):
            out[key] = {"$regex": value}
        elif isinstance(value, dict) and _is_operators(value):
            ops, either = _split_regex_in(key, value)
            if ops:
                out[key] = ops
            if either:
                alternatives.append({"$or": either})
        else:
            out[key] = value
    if alternatives:
        out.setdefault("$and", [])
        out["$and"] = [*out["$and"], *alternatives]
    return out


def _is_operators(value: dict[str, Any]) -> bool:
    return bool(value) and all(str(k).startswith("$") for k in value)


def _split_regex_in(key: str, ops: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The operators of ``key`` without regexes in ``$in``, and the alternatives that
    replace those (an empty list when there were none)."""
    out = dict(ops)
    match = out.get("$elemMatch")
    if isinstance(match, dict) and not _is_operators(match):
        out["$elemMatch"] = indexable(match)
    values = out.get("$in")
    if not isinstance(values, list):
        return out, []
    patterns = [v for v in values if isinstance(v, re.Pattern | bson.Regex)]
    if not patterns:
        return out, []
    plain = [v for v in values if not isinstance(v, re.Pattern | bson.Regex)]
    del out["$in"]
    either: list[dict[str, Any]] = [{key: {"$regex": p}} for p in patterns]
    if plain:
        either.append({key: {"$in": plain}})
    return out, either


def with_let(flt: Any, let: Any) -> Any:
    """``flt`` with each ``$expr`` evaluated inside ``$let`` of the command's ``let``
    variables, for a pipeline that does not see them; as it is without any."""
    if not isinstance(let, dict) or not let:
        return flt
    if isinstance(flt, list):
        return [with_let(v, let) for v in flt]
    if not isinstance(flt, dict):
        return flt
    return {
        k: {"$let": {"vars": let, "in": v}} if k == "$expr" else with_let(v, let)
        for k, v in flt.items()
    }


def pin(ids: Any, user_filter: dict[str, Any] | None) -> dict[str, Any]:
    """``user_filter`` restricted to documents already found to match it: ``ids`` is
    their ``_id`` condition. An ``_id`` is immutable, so the user's own condition on
    ``_id`` holds for them and gives way to the pin, which the planner can use."""
    rest = {k: v for k, v in (user_filter or {}).items() if k != "_id"}
    return conjoin({"_id": ids}, rest)


def looks_up_ids(flt: Mapping[str, Any]) -> bool:
    """Whether ``flt`` names the ``_id``s it can match (equality, ``$eq``, ``$in``):
    every layer answers it from its ``_id`` index, however large."""
    if "_id" not in flt:
        return False
    ops = _operators(flt["_id"])
    return ops is None or (bool(ops) and set(ops) <= {"$eq", "$in"})


def _operators(value: Any) -> dict[str, Any] | None:
    """``value`` as an operator document, or None when that would change its meaning."""
    if isinstance(value, dict) and value and all(k.startswith("$") for k in value):
        return value
    if isinstance(value, dict) and any(k.startswith("$") for k in value):
        return None
    if isinstance(value, re.Pattern | bson.Regex):
        return None  # a literal regex matches by pattern, {$eq: regex} does not
    return {"$eq": value}


def _merge_conditions(a: Any, b: Any) -> dict[str, Any] | None:
    left, right = _operators(a), _operators(b)
    if left is None or right is None or set(left) & set(right):
        return None
    return {**left, **right}


@dataclass(frozen=True, slots=True)
class Layer:
    """One collection that contributes to a view."""

    coll: str  # physical collection name in the same database
    exclude: tuple[Any, ...]  # ids that nearer layers hold
    overlay: bool
    # For an overlay, every id it holds (hashable key -> raw _id) as the view was
    # built: the view, not the catalog, which another request may refresh meanwhile.
    held: Mapping[Any, Any] = field(default_factory=dict, compare=False)

    def match(
        self, user_filter: dict[str, Any] | None = None, *, hide: bool = True
    ) -> dict[str, Any]:
        """The filter selecting this layer's visible documents that match ``user_filter``.

        ``hide=False`` leaves out the exclusion of the ids nearer layers hold;
        the caller then drops those documents itself (``visible``). For a
        filter that names its ``_id``s (``looks_up_ids``), that keeps the query
        on the ``_id`` index: the test upstream scans the whole collection for
        ``{_id: {$eq: 1, $nin: [...]}}`` (docs/design.md, "Costs").
        """
        return conjoin(
            user_filter,
            NOT_TOMBSTONE if self.overlay else None,
            {"_id": {"$nin": list(self.exclude)}} if self.exclude and hide else None,
        )

    def stages(self, user_filter: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """``$match`` stages selecting this layer's visible documents that match
        ``user_filter`` (none if that is everything).

        For a filter that names its ``_id``s the exclusion is a stage of its
        own, after it: the test upstream uses the ``_id`` index for the first
        stage but scans the whole collection for a ``$nin`` beside the ``_id``
        condition (``match``); mongod merges the two stages into one.
        """
        if self.exclude and looks_up_ids(user_filter or {}):
            return [
                {"$match": self.match(user_filter, hide=False)},
                {"$match": {"_id": {"$nin": list(self.exclude)}}},
            ]
        match = self.match(user_filter)
        return [{"$match": match}] if match else []

    def visible(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``docs`` of this layer without those whose ids a nearer layer holds."""
        if not self.exclude or not docs:
            return docs
        hidden = {hashable_id(x) for x in self.exclude}
        return [d for d in docs if hashable_id(d["_id"]) not in hidden]


@dataclass(frozen=True, slots=True)
class View:
    """The layers of one collection on one branch."""

    db: str
    coll: str
    layers: tuple[Layer, ...]

    @property
    def passthrough(self) -> bool:
        """True when the view is just main's collection of its name."""
        return len(self.layers) == 1 and not self.layers[0].overlay and self.own_base

    @property
    def has_base(self) -> bool:
        return bool(self.layers) and not self.layers[-1].overlay

    @property
    def own_base(self) -> bool:
        """Whether the base is main's collection of the view's name (not an archive),
        the collection an ``aggregate`` of the view runs on."""
        return self.has_base and self.layers[-1].coll == self.coll

    def pipeline(
        self, user_filter: dict[str, Any] | None = None, let: Any = None
    ) -> list[dict[str, Any]]:
        """Stages that, run by ``aggregate`` on the base collection, yield the view's
        documents matching ``user_filter``, whose ``$expr`` may use the command's
        ``let`` variables (given here: ``$unionWith`` pipelines do not see them)."""
        stages: list[dict[str, Any]] = []
        # An archived base is read like an overlay: the aggregate runs on main's
        # collection of the name, whose documents are none of the view's.
        others = [layer for layer in self.layers if layer.overlay or not self.own_base]
        if self.own_base:
            stages.extend(self.layers[-1].stages(user_filter))
        else:
            stages.append({"$match": MATCH_NOTHING})
        for layer in others:
            stages.append(
                {
                    "$unionWith": {
                        "coll": layer.coll,
                        "pipeline": layer.stages(with_let(user_filter, let)),
                    }
                }
            )
        return stages


@contextlib.asynccontextmanager
async def scratch_copy(db: DbClient, view: View) -> AsyncIterator[str]:
    """The name of a scratch collection holding the view's documents, for commands
    that take no pipeline Argon could rewrite; dropped on exit."""
    scratch = f"{INTERNAL_PREFIX}scratch.{uuid.uuid4().hex}"
    try:
        out = {"aggregate": view.coll, "pipeline": [*view.pipeline(), {"$out": scratch}]}
        await db.command(view.db, {**out, "cursor": {}})
        yield scratch
    finally:
        # Dropped even when the caller is cancelled, within a bound.
        with trio.move_on_after(30, shield=True), contextlib.suppress(ArgonError):
            await db.command(view.db, {"drop": scratch})


async def build_view(
    catalog: Catalog,
    branch: Branch,
    db: str,
    coll: str,
    txn_overlays: Mapping[str, Overlay] | None = None,
) -> View:
    """The view of ``db.coll`` on ``branch``; loads overlay id caches as needed.

    ``txn_overlays``: a client transaction's own copies of the overlays it
    wrote (``pending.py``), used in place of the shared ones."""
    layers: list[Layer] = []
    shadow: dict[Any, Any] = {}
    for b in catalog.layers(branch):
        if b.name == MAIN:
            base = catalog.base_name(branch, db, coll)
            layers.append(Layer(base, tuple(shadow.values()), overlay=False))
            break
        ov = catalog.overlay(b, db, coll)
        if txn_overlays is not None:
            ov = txn_overlays.get(overlay_key(b.id, db, coll), ov)
        if ov is None:
            continue
        await catalog.load_ids(ov)
        assert ov.ids is not None
        layers.append(Layer(ov.name, tuple(shadow.values()), overlay=True, held=ov.ids))
        for key, raw in ov.ids.items():
            shadow.setdefault(key, raw)
        if ov.cut:
            break
    return View(db, coll, tuple(layers))


async def fetch(
    db: DbClient, catalog: Catalog, branch: Branch, dbname: str, coll: str, ids: list[Any]
) -> dict[Any, dict[str, Any]]:
    """The view's documents with these ``_id``s, keyed by ``hashable_id``.

    Each layer is asked for the ids alone (no exclusions, tombstones included)
    and the nearest layer holding an id decides, so the queries stay plain
    ``_id`` lookups however large the overlays are.
    """
    view = await build_view(catalog, branch, dbname, coll)
    found: dict[Any, dict[str, Any]] = {}
    held: set[Any] = set()  # ids a nearer layer holds (documents or tombstones)
    for layer in view.layers:
        wanted = [i for i in ids if hashable_id(i) not in held]
        for start in range(0, len(wanted), 1000):
            cmd = {"find": layer.coll, "filter": {"_id": {"$in": wanted[start : start + 1000]}}}
            for doc in await db.find_cursor(dbname, cmd):
                key = hashable_id(doc["_id"])
                held.add(key)
                if not doc.get(TOMBSTONE):
                    found[key] = doc
    return found
