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

from dataclasses import dataclass
from typing import Any

from .catalog import Branch, Catalog, hashable_id
from .dbclient import DbClient
from .naming import MAIN, TOMBSTONE

# An empty $in matches nothing and is answered from the _id index.
MATCH_NOTHING: dict[str, Any] = {"_id": {"$in": []}}
NOT_TOMBSTONE: dict[str, Any] = {TOMBSTONE: {"$exists": False}}


@dataclass(frozen=True, slots=True)
class Layer:
    """One collection that contributes to a view."""

    coll: str  # physical collection name in the same database
    exclude: tuple[Any, ...]  # ids that nearer layers hold
    overlay: bool

    def match(self, user_filter: dict[str, Any] | None = None) -> dict[str, Any]:
        """The filter selecting this layer's visible documents that match ``user_filter``."""
        parts: list[dict[str, Any]] = []
        if user_filter:
            parts.append(user_filter)
        if self.overlay:
            parts.append(NOT_TOMBSTONE)
        if self.exclude:
            parts.append({"_id": {"$nin": list(self.exclude)}})
        if not parts:
            return {}
        return parts[0] if len(parts) == 1 else {"$and": parts}


@dataclass(frozen=True, slots=True)
class View:
    """The layers of one collection on one branch."""

    db: str
    coll: str
    layers: tuple[Layer, ...]

    @property
    def passthrough(self) -> bool:
        """True when the view is just the base collection."""
        return len(self.layers) == 1 and not self.layers[0].overlay

    @property
    def has_base(self) -> bool:
        return bool(self.layers) and not self.layers[-1].overlay

    def pipeline(self, user_filter: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Stages that, run by ``aggregate`` on the base collection, yield the view's
        documents matching ``user_filter``."""
        stages: list[dict[str, Any]] = []
        overlays = [layer for layer in self.layers if layer.overlay]
        if self.has_base:
            match = self.layers[-1].match(user_filter)
            if match:
                stages.append({"$match": match})
        else:
            stages.append({"$match": MATCH_NOTHING})
        for layer in overlays:
            stages.append(
                {
                    "$unionWith": {
                        "coll": layer.coll,
                        "pipeline": [{"$match": layer.match(user_filter)}],
                    }
                }
            )
        return stages


async def build_view(catalog: Catalog, branch: Branch, db: str, coll: str) -> View:
    """The view of ``db.coll`` on ``branch``; loads overlay id caches as needed."""
    layers: list[Layer] = []
    shadow: dict[Any, Any] = {}
    for b in catalog.chain(branch):
        if b.name == MAIN:
            layers.append(Layer(coll, tuple(shadow.values()), overlay=False))
            break
        ov = catalog.overlay(b, db, coll)
        if ov is None:
            continue
        await catalog.load_ids(ov)
        assert ov.ids is not None
        layers.append(Layer(ov.name, tuple(shadow.values()), overlay=True))
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
