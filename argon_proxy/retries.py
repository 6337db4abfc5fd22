"""Retryable writes: each statement leaves a record of what it did.

Theory of operation: a retryable statement (one with the client's ``lsid``
and ``txnNumber``) inserts a record of its outcome in its own transaction,
under an ``_id`` made of the retry identity and the statement's index. A
retry of a statement that committed therefore fails on that record (and
changes nothing), and only then is the record looked up and its outcome
answered: first attempts pay no lookup, and the record travels with the
statement's WAL entries (``write_log.py``). A group of statements
(``statement_groups.py``) writes one record per statement, exactly as the
statements alone would, so a retry finds each whichever way it first ran.
"""

from __future__ import annotations

from typing import Any

from .catalog import Catalog, now
from .dbclient import CommandError
from .naming import INTERNAL_DB
from .txn import Runner
from .write_context import DUPLICATE_KEY, Outcome, WriteContext

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


def records(ctx: WriteContext, outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """The retry records of consecutive statements from ``ctx.statement`` on, one per
    statement: a retry finds each whether a group or its statements ran. (A batch
    of inserts run as one statement is keyed by a label, ``all`` or ``all-N``.)"""
    first = ctx.statement
    if not isinstance(first, int):
        assert len(outcomes) == 1, "a labelled statement has one outcome"
    return [
        {
            "_id": {**(ctx.retry or {}), "stmt": first + i if isinstance(first, int) else first},
            "at": now(),
            "outcome": {k: getattr(out, k) for k in _OUTCOME_FIELDS},
        }
        for i, out in enumerate(outcomes)
    ]


def group_fallback(exc: CommandError) -> bool:
    """Whether a group's retry records failed because an earlier attempt wrote one:
    its statements then run one by one, each answering what its attempt did."""
    return exc.code == DUPLICATE_KEY or "writeErrors" in exc.reply


async def remember(runner: Runner, ctx: WriteContext, outcome: Outcome) -> None:
    """The retry record of one statement, written in its transaction (capped
    collections; the write path writes it with its WAL entries: ``write_log.py``)."""
    saved = {k: getattr(outcome, k) for k in _OUTCOME_FIELDS}
    await runner.run(
        "__argon",
        {
            "insert": "retries",
            "documents": [{"_id": _retry_id(ctx), "at": now(), "outcome": saved}],
        },
    )
