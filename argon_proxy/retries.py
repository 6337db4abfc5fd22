"""Retryable writes: each statement leaves a record of what it did.

Theory of operation: a retryable statement (one with the client's ``lsid``
and ``txnNumber``) inserts a record of its outcome in its own transaction,
under an ``_id`` made of the retry identity and the statement's index. A
retry of a statement that committed therefore fails on that record (and
changes nothing), and only then is the record looked up and its outcome
answered: first attempts pay one insert and no lookup. A group of statements
(``statement_groups.py``) writes one record per statement, exactly as the
statements alone would, so a retry finds each whichever way it first ran.
"""

from __future__ import annotations

from typing import Any

from .catalog import Catalog, now
from .dbclient import CommandError
from .naming import INTERNAL_DB
from .txn import Runner
from .write_context import DUPLICATE_KEY, GroupFallback, Outcome, WriteContext, chunks

_OUTCOME_FIELDS = ("matched", "modified", "upserted", "did_upsert", "reply_value")


def _retry_id(ctx: WriteContext) -> dict[str, Any]:
    assert ctx.retry is not None
    return {**ctx.retry, "stmt": ctx.statement}


async def retried(catalog: Catalog, ctx: WriteContext) -> Outcome | None:
    """The outcome of this retryable statement if an earlier attempt applied it.

    The record is written in the statement's own transaction, under its own
    ``_id``: a retry of a statement that committed fails (and changes nothing),
    and only then is the record looked up, so first attempts pay nothing extra.
    """
    found = await catalog.db.find(INTERNAL_DB, "retries", {"_id": _retry_id(ctx)})
    if not found:
        return None
    saved = found[0]["outcome"]
    outcome = Outcome(**{k: saved.get(k) for k in _OUTCOME_FIELDS if k in saved})
    outcome.did_upsert = bool(saved.get("did_upsert", saved.get("upserted") is not None))
    return outcome


async def remember_group(runner: Runner, ctx: WriteContext, outcomes: list[Outcome]) -> None:
    """The retry records of a group's statements, one per statement as ``remember``
    writes them: a retry finds each whether the group or its statements ran. An
    earlier attempt's record fails the group, whose statements then run one by one."""
    assert isinstance(ctx.statement, int)
    records = [
        {
            "_id": {**(ctx.retry or {}), "stmt": ctx.statement + i},
            "at": now(),
            "outcome": {k: getattr(out, k) for k in _OUTCOME_FIELDS},
        }
        for i, out in enumerate(outcomes)
    ]
    try:
        for part in chunks(records):
            await runner.run(INTERNAL_DB, {"insert": "retries", "documents": part})
    except CommandError as exc:
        if exc.code == DUPLICATE_KEY or "writeErrors" in exc.reply:
            raise GroupFallback from None
        raise


async def remember(runner: Runner, ctx: WriteContext, outcome: Outcome) -> None:
    """The retry record of one statement, written in its transaction."""
    saved = {k: getattr(outcome, k) for k in _OUTCOME_FIELDS}
    await runner.run(
        "__argon",
        {
            "insert": "retries",
            "documents": [{"_id": _retry_id(ctx), "at": now(), "outcome": saved}],
        },
    )
