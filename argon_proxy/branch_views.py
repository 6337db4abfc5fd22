"""Views on branches: a view reads its source as the branch shows it.

Theory of operation: mongod evaluates a view by running the view's pipeline
on its source collection. On a branch the source is the branch's view of that
collection (its layers), which mongod cannot see by name, so a read of a view
on a branch becomes the equivalent aggregate on the source, the view's
pipeline first, as mongod itself turns it (``find``, ``count`` and
``distinct`` become aggregates too); the reader then rewrites that aggregate
like any read of the branch. A view is either main's, whose definition is
read from main (once per catalog epoch: a branch made after a change of
main's views bumps it) and shared while the branch keeps the name, or one the
branch created, kept in the branch's overlay registration of the name with no
collection behind it. Main creating a view registers the name absent on its
children, like a collection, so a view appears only where it existed when
the branch was made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .catalog import Branch, Catalog
from .dbclient import DbClient
from .errors import ArgonError
from .naming import MAIN

COMMAND_NOT_SUPPORTED_ON_VIEW = 166
VIEW_DEPTH_LIMIT = 20  # mongod's limit on views of views
_DEPTH_EXCEEDED = 149  # ViewDepthLimitExceeded


@dataclass(frozen=True, slots=True)
class ViewDef:
    """A view's definition: its source collection (or view) and pipeline."""

    view_on: str
    pipeline: tuple[Any, ...]
    collation: Any = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ViewDef:
        return cls(
            str(options["viewOn"]), tuple(options.get("pipeline") or ()), options.get("collation")
        )

    def to_options(self) -> dict[str, Any]:
        out: dict[str, Any] = {"viewOn": self.view_on, "pipeline": list(self.pipeline)}
        if self.collation is not None:
            out["collation"] = self.collation
        return out


class Views:
    """Which names are views on a branch, and what they read."""

    def __init__(self, db: DbClient, catalog: Catalog) -> None:
        self.db = db
        self.catalog = catalog
        self._main: dict[str, dict[str, ViewDef]] = {}  # db -> main's views, this epoch
        self._epoch = -1

    async def of(self, branch: Branch, db: str, name: str) -> ViewDef | None:
        """The view ``name`` is on ``branch``, or None if it is none (a collection,
        or nothing)."""
        for b in self.catalog.layers(branch):
            if b.name == MAIN:
                return await self._main_view(db, name)
            ov = self.catalog.overlay(b, db, name)
            if ov is None:
                continue
            if ov.view is not None and ov.present:
                return ViewDef.from_options(ov.view)
            return None  # the branch's own collection, or a name it has not got
        return None

    async def resolve(
        self, branch: Branch, db: str, name: str
    ) -> tuple[str, list[Any], Any] | None:
        """The collection a view ``name`` finally reads, the pipeline to run on it
        (views of views included) and the view's collation; None for no view."""
        found = await self.of(branch, db, name)
        if found is None:
            return None
        pipeline: list[Any] = []
        collation = found.collation
        for _ in range(VIEW_DEPTH_LIMIT):
            pipeline = [*found.pipeline, *pipeline]
            source = found.view_on
            found = await self.of(branch, db, source)
            if found is None:
                return source, pipeline, collation
        raise ArgonError(
            _DEPTH_EXCEEDED, f"View depth too large, maximum {VIEW_DEPTH_LIMIT} (view {db}.{name})"
        )

    async def _main_view(self, db: str, name: str) -> ViewDef | None:
        if self._epoch != self.catalog.epoch:
            self._main, self._epoch = {}, self.catalog.epoch
        if db not in self._main:
            listed = await self.db.find_cursor(
                db, {"listCollections": 1, "filter": {"type": "view"}}
            )
            self._main[db] = {c["name"]: ViewDef.from_options(c["options"]) for c in listed}
        return self._main[db].get(name)


def not_on_a_view(db: str, name: str, what: str) -> ArgonError:
    """mongod's refusal to write to (or index) a view."""
    return ArgonError(
        COMMAND_NOT_SUPPORTED_ON_VIEW, f"Namespace {db}.{name} is a view, not a collection ({what})"
    )
