"""Freezing: children keep what their parent held before the parent wrote.

Theory of operation: a branch's children must never see their parent's later
writes. So in the transaction of every statement, each child that does not
hold a document yet gets the statement's pre-image of it (a tombstone where
there was no document), in the child's own overlay: from then on the child
reads its own copy. The children's id caches say which documents they hold,
so the images are plain inserts; a child that held one after all (another
proxy froze it first: ``FreezeRace``) makes the statement run again with a
``careful`` freeze, which upserts and writes only where nothing is yet. A
group of statements freezes each document's first pre-image only
(``first_changes``).
"""

from __future__ import annotations

from typing import Any

from .catalog import Overlay, hashable_id
from .dbclient import CommandError
from .documents import BYPASS
from .naming import TOMBSTONE
from .txn import Runner, checked, run_or_defer
from .write_context import DUPLICATE_KEY, Change, Outcome, WriteContext, chunks


class FreezeRace(Exception):
    """A child already held a document its id cache did not know of."""


async def freeze(
    runner: Runner,
    ctx: WriteContext,
    kids: list[Overlay],
    changes: list[Change],
    outcome: Outcome,
    *,
    careful: bool,
) -> None:
    """Give each child the pre-image (or a tombstone) of documents it does not hold.

    The id caches say which those are, so the images are plain inserts; a
    ``careful`` freeze upserts instead, writing only where nothing is yet.
    """
    for ov in kids:
        if ov.cut:
            # The child hides this layer for good (it dropped the collection, or
            # had none when it forked): an image frozen there would become one
            # of its own documents. Main's renamed collection under a name the
            # child never had is such a case: its pre-images are real documents.
            continue
        await _freeze_into(runner, ctx, ov, changes, outcome, careful=careful)


async def _freeze_into(
    runner: Runner,
    ctx: WriteContext,
    ov: Overlay,
    changes: list[Change],
    outcome: Outcome,
    *,
    careful: bool,
) -> None:
    """Freeze into one child's overlay ``ov``."""
    assert ov.ids is not None
    images: list[dict[str, Any]] = []
    ids: list[Any] = []
    tombs: list[Any] = []
    for ch in changes:
        if hashable_id(ch.doc_id) in ov.ids:
            continue
        images.append(ch.pre if ch.pre is not None else {"_id": ch.doc_id, TOMBSTONE: True})
        (ids if ch.pre is not None else tombs).append(ch.doc_id)
    # Nothing the statement does later depends on these writes' replies: they go
    # with its next command.
    for part in chunks(images):
        if careful:
            updates = [
                {"q": {"_id": d["_id"]}, "u": {"$setOnInsert": _body(d)}, "upsert": True}
                for d in part
            ]
            await run_or_defer(runner, ctx.db, {"update": ov.name, "updates": updates, **BYPASS})
            continue
        insert = {"insert": ov.name, "documents": part, **BYPASS}
        await run_or_defer(runner, ctx.db, insert, _raced)
    if images:
        outcome.cache.append((ov, ids, False))
        outcome.cache.append((ov, tombs, True))


async def _raced(reply: dict[str, Any]) -> None:
    """A freeze's insert that found an image there already: another proxy's write
    froze into the child meanwhile (``FreezeRace``)."""
    try:
        await checked(reply)
    except CommandError as exc:
        if exc.code == DUPLICATE_KEY:
            raise FreezeRace from None
        raise


def first_changes(changes: list[Change]) -> list[Change]:
    """Each document's first change: the image a child must keep is the one from
    before all of them."""
    seen: set[Any] = set()
    firsts = []
    for ch in changes:
        key = hashable_id(ch.doc_id)
        if key not in seen:
            seen.add(key)
            firsts.append(ch)
    return firsts


def _body(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "_id"}
