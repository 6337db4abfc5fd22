"""Finding a statement's documents in a branch's view, and writing the branch's own.

Theory of operation: a statement first finds the documents it matches in the
branch's view, with the user's own filter evaluated by mongod on every layer
(``view_find``); those are its pre-images. Lookups by ``_id`` ask each layer
for the ids alone, and the nearest layer holding an id decides
(``view_docs``). On a branch, the statement's writes go to the branch's own
overlay: a document it writes replaces whatever version or tombstone the
overlay held (``put_own``), and a document it deletes becomes a tombstone
there (``tombstone_own``). Each such write tells the outcome what the
overlay's id cache learns once the statement commits.
"""

from __future__ import annotations

from typing import Any

from .catalog import Overlay, hashable_id
from .naming import TOMBSTONE
from .txn import Runner, run_or_defer, run_together
from .view import View, looks_up_ids
from .write_context import Outcome, WriteContext

# On Argon's own writes into overlays (tombstones, frozen copies): they are no
# user's writes, so a validator the branch's collection has must not judge them.
BYPASS = {"bypassDocumentValidation": True}

# Ids per ``$in`` lookup. The test upstream's cost per id grows with the list
# (300 ids: 72 ms in one query, 18 ms in chunks of 30); on mongod a chunk is
# one index seek per id either way, and the extra round trips are cheap.
ID_CHUNK = 32


async def find_all(runner: Runner, db: str, command: dict[str, Any]) -> list[dict[str, Any]]:
    """A whole find/aggregate cursor, read inside the runner's transaction."""
    return await _rest(runner, db, await runner.run(db, command))


async def _rest(runner: Runner, db: str, reply: dict[str, Any]) -> list[dict[str, Any]]:
    """The documents of the cursor ``reply`` opened, read to its end."""
    cursor = reply["cursor"]
    docs = list(cursor.get("firstBatch", ()))
    coll = cursor["ns"].split(".", 1)[1]
    while cursor.get("id"):
        reply = await runner.run(db, {"getMore": cursor["id"], "collection": coll})
        cursor = reply["cursor"]
        docs.extend(cursor.get("nextBatch", ()))
    return docs


async def find_ids(runner: Runner, db: str, coll: str, ids: list[Any]) -> list[dict[str, Any]]:
    """The documents of ``coll`` with these ``_id``s, read in the runner's transaction."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(ids), ID_CHUNK):
        flt = {"_id": {"$in": ids[start : start + ID_CHUNK]}}
        found.extend(await find_all(runner, db, {"find": coll, "filter": flt}))
    return found


async def view_docs(
    runner: Runner, view: View, ids: list[Any], *, id_only: bool = False
) -> dict[Any, dict[str, Any]]:
    """The view's documents with these ``_id``s, keyed by ``hashable_id``, read in
    the runner's transaction.

    Each layer is asked for the ids alone (tombstones included) and the nearest
    layer holding an id decides, so the queries stay plain ``_id`` lookups that
    the upstream answers from its index, however large the batch or the overlays
    (a filter with the tombstone test or exclusions beside a long ``$in`` makes
    some upstreams scan the collection).
    """
    found: dict[Any, dict[str, Any]] = {}
    held: set[Any] = set()  # ids a nearer layer holds (documents or tombstones)
    for layer in view.layers:
        wanted = [i for i in ids if hashable_id(i) not in held]
        for start in range(0, len(wanted), ID_CHUNK):
            cmd: dict[str, Any] = {
                "find": layer.coll,
                "filter": {"_id": {"$in": wanted[start : start + ID_CHUNK]}},
            }
            if id_only:
                cmd["projection"] = {"_id": 1, TOMBSTONE: 1}
            for doc in await find_all(runner, view.db, cmd):
                key = hashable_id(doc["_id"])
                held.add(key)
                if not doc.get(TOMBSTONE):
                    found[key] = doc
    return found


async def view_find(
    runner: Runner,
    view: View,
    flt: dict[str, Any],
    *,
    limit: int = 0,
    sort: dict[str, Any] | None = None,
    collation: Any = None,
    let: Any = None,
    hint: Any = None,
) -> list[dict[str, Any]]:
    """Full documents of the view matching ``flt`` (mongod evaluates the filter,
    with the command's ``let`` variables). ``hint`` is used where the view is the
    collection itself: an overlay need not have the index it names."""
    shared: dict[str, Any] = {}
    if collation:
        shared["collation"] = collation
    if let is not None:
        shared["let"] = let
    if hint is not None and view.passthrough:
        shared["hint"] = hint
    if sort:
        pipeline = [*view.pipeline(flt, let), {"$sort": sort}]
        if limit:
            pipeline.append({"$limit": limit})
        cmd: dict[str, Any] = {"aggregate": view.coll, "pipeline": pipeline, "cursor": {}}
        return await find_all(runner, view.db, {**cmd, **shared})
    if len(view.layers) > 1 and looks_up_ids(flt):
        # Each layer answers from its _id index: ask them all in one round trip,
        # and drop here what nearer layers hold (``Layer.match``). A layer holds
        # at most one document per id it hides.
        finds = []
        for layer in view.layers:
            cmd = {"find": layer.coll, "filter": layer.match(flt, hide=False), **shared}
            if limit:
                cmd["limit"] = limit + len(layer.exclude)
            finds.append((view.db, cmd))
        replies = await run_together(runner, finds)
        by_layer = [
            layer.visible(await _rest(runner, view.db, reply))
            for layer, reply in zip(view.layers, replies, strict=True)
        ]
        hits = [doc for docs in by_layer for doc in docs]
        return hits[:limit] if limit else hits
    found: list[dict[str, Any]] = []
    for layer in view.layers:
        cmd = {"find": layer.coll, "filter": layer.match(flt), **shared}
        if limit:
            cmd["limit"] = limit - len(found)
        found.extend(await find_all(runner, view.db, cmd))
        if limit and len(found) >= limit:
            break
    return found


def below(view: View) -> View:
    """The view without the branch's own overlay: what an upserted ``_id`` may collide with."""
    return View(view.db, view.coll, view.layers[1:])


async def put_own(
    runner: Runner,
    ctx: WriteContext,
    own: Overlay,
    doc: dict[str, Any],
    outcome: Outcome,
) -> None:
    """Write ``doc`` as the branch's version of its ``_id`` (replacing any tombstone),
    with the command's options (``bypassDocumentValidation``): a plain insert when
    the overlay is known not to hold the id, so mongod judges it as an insert."""
    # Nothing the statement does next depends on the reply: it goes with the next command.
    if own.ids is not None and hashable_id(doc["_id"]) not in own.ids:
        command = {"insert": own.name, "documents": [doc]}
    else:
        command = {
            "update": own.name,
            "updates": [{"q": {"_id": doc["_id"]}, "u": doc, "upsert": True}],
        }
    await run_or_defer(runner, ctx.db, ctx.data_command(command))
    outcome.cache.append((own, [doc["_id"]], False))


async def tombstone_own(
    runner: Runner,
    ctx: WriteContext,
    own: Overlay,
    doc_id: Any,
    outcome: Outcome,
) -> None:
    """Delete ``doc_id`` on the branch: a tombstone in its overlay hides every
    version below. Goes with the statement's next command."""
    await run_or_defer(
        runner,
        ctx.db,
        {
            "update": own.name,
            "updates": [
                {"q": {"_id": doc_id}, "u": {"_id": doc_id, TOMBSTONE: True}, "upsert": True}
            ],
            **BYPASS,
        },
    )
    outcome.cache.append((own, [doc_id], True))
