"""``$graphLookup`` of a collection the branch changed.

Theory of operation: ``$graphLookup`` takes no pipeline, so the branch's view
of its ``from`` collection (overlays over the base) cannot be spliced into it
as ``$lookup``'s is, and a traversal may cross from one layer to another at
every step. Argon copies that view into a scratch collection (one aggregate
ending in ``$out``, evaluated by mongod), points the stage at the copy, runs the
whole aggregate to its end and serves the results from a held cursor
(``cursors.py``), so the copies are dropped before the reply. The cost is the
size of the ``from`` collection per command, hence bounds: a view over
``MAX_COPIED`` documents, or results over ``MAX_RESULTS``, are refused, as are
such a stage nested in another stage's pipeline (``reads.py`` refuses it) and
one inside a client transaction, where ``$out`` cannot run.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .catalog import Branch
from .cursors import HeldCursors
from .dbclient import DbClient
from .merge_find import DEFAULT_FIRST_BATCH
from .reads import GENERIC_FIELDS, Reader, unsupported
from .txn import Runner
from .view import scratch_copy

MAX_COPIED = 100_000  # documents of a from collection copied for one command
MAX_RESULTS = 100_000  # results held for getMore


async def changed_sources(
    reader: Reader, branch: Branch, db: str, pipeline: Any, joined: Runner | None
) -> list[str]:
    """The ``from`` collections of the pipeline's top-level ``$graphLookup`` stages
    that the branch changed (views aside: ``reads.py`` answers for them)."""
    found: list[str] = []
    for stage in pipeline if isinstance(pipeline, list) else ():
        spec = stage.get("$graphLookup") if isinstance(stage, dict) and len(stage) == 1 else None
        other = spec.get("from") if isinstance(spec, dict) else None
        if not isinstance(other, str) or other in found:
            continue
        if await reader.is_view(branch, db, other):
            continue
        if not (await reader.view(branch, db, other, joined)).passthrough:
            found.append(other)
    return found


async def run(
    db: DbClient,
    reader: Reader,
    cursors: HeldCursors,
    branch: Branch,
    dbname: str,
    cmd: dict[str, Any],
    sources: list[str],
) -> dict[str, Any]:
    """Answer the aggregate ``cmd`` whose ``$graphLookup`` stages read ``sources``,
    collections the branch changed, from scratch copies of the branch's views."""
    async with contextlib.AsyncExitStack() as stack:
        copies: dict[str, str] = {}
        for other in sources:
            view = await reader.view(branch, dbname, other)
            copies[other] = await stack.enter_async_context(scratch_copy(db, view))
            counted = await db.command(dbname, {"count": copies[other]})
            if int(counted.get("n", 0)) > MAX_COPIED:
                raise unsupported(
                    f"$graphLookup of collection {other!r} ({counted.get('n')} documents)",
                    branch.name,
                    f"Argon copies a collection the branch changed for it, up to {MAX_COPIED}",
                )
        pipeline = [_pointed(stage, copies) for stage in cmd["pipeline"]]
        plain = {k: v for k, v in cmd.items() if k not in GENERIC_FIELDS or k == "comment"}
        read = {**plain, "pipeline": pipeline, "cursor": {}}
        rewritten = await reader.aggregate(branch, dbname, read)
        docs: list[dict[str, Any]] = []
        async for doc in db.cursor(dbname, rewritten or read):
            docs.append(doc)
            if len(docs) > MAX_RESULTS:
                raise unsupported(
                    f"$graphLookup with more than {MAX_RESULTS} results",
                    branch.name,
                    "Argon holds the results of a $graphLookup of a changed collection",
                )
    coll = cmd["aggregate"] if isinstance(cmd["aggregate"], str) else "$cmd.aggregate"
    wanted = cmd.get("cursor")
    first = wanted.get("batchSize", DEFAULT_FIRST_BATCH) if isinstance(wanted, dict) else None
    size = first if isinstance(first, int) else DEFAULT_FIRST_BATCH
    return cursors.first_reply(f"{cmd['$db']}.{coll}", docs, size)


def _pointed(stage: Any, copies: dict[str, str]) -> Any:
    """A top-level ``$graphLookup`` stage reading a copy instead of its ``from``."""
    spec = stage.get("$graphLookup") if isinstance(stage, dict) and len(stage) == 1 else None
    if isinstance(spec, dict) and spec.get("from") in copies:
        return {"$graphLookup": {**spec, "from": copies[spec["from"]]}}
    return stage
