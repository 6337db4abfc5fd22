"""Multi-document updates and deletes, in parts no transaction outgrows.

Theory of operation: a multi-document update or delete that matches more than
``SPLIT_AT`` documents runs as several transactions over parts of the
``_id``s it matched (mongod's multi-writes are not atomic either), so no
transaction outgrows what the upstream holds: the freeze into every child and
the WAL entries all ride in the statement's transaction. Inside a client's
transaction a statement is never split: the client's transaction holds it
all anyway.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from .view import pin
from .write_context import Outcome, WriteContext

# Documents one multi-document statement changes per transaction: the freeze into
# every child and the WAL entries all ride in it, and upstreams bound a
# transaction's size (mongod: TransactionTooLargeForCache).
SPLIT_AT = 1000


class Split(Exception):
    """A multi-document statement matched more than ``SPLIT_AT`` documents."""

    def __init__(self, ids: list[Any]) -> None:
        super().__init__(f"{len(ids)} documents")
        self.ids = ids


def maybe_split(ctx: WriteContext, matched: list[dict[str, Any]]) -> None:
    """Stop a statement that matched too many documents to change in one transaction."""
    if len(matched) > SPLIT_AT and ctx.joined is None:
        raise Split([d["_id"] for d in matched])


async def in_parts(
    ctx: WriteContext,
    stmt: dict[str, Any],
    once: Callable[[WriteContext, dict[str, Any]], Awaitable[Outcome]],
) -> Outcome:
    """Run a multi-document statement; one that matches more than a transaction
    should hold runs again as statements over parts of the ``_id``s it matched,
    each in its own transaction, as mongod's own multi-writes are not atomic."""
    try:
        return await once(ctx, stmt)
    except Split as split:
        ids = split.ids
    total = Outcome()
    part_ctx = replace(ctx, retry=None)  # multi-writes are never retryable
    flt = stmt.get("q") or {}
    for start in range(0, len(ids), SPLIT_AT):
        part = {k: v for k, v in stmt.items() if k != "upsert"}
        part["q"] = pin({"$in": ids[start : start + SPLIT_AT]}, flt)
        done = await once(part_ctx, part)
        total.matched += done.matched
        total.modified += done.modified
        if done.lsns:
            total.lsns = [total.lsns[0] if total.lsns else done.lsns[0], done.lsns[-1]]
    return total
