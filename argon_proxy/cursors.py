"""Cursors the proxy serves itself: the rest of a merged branch read.

Theory of operation: a ``find`` on a branch that the per-layer merge answers
(``merge_find.py``) yields at most ``MAX_MERGED`` documents. The client gets
the first batch it asked for (``batchSize``, else mongod's 101) and a cursor
id; the remaining documents wait here, and ``getMore`` / ``killCursors`` with
that id are answered from them, batch by batch, exactly as mongod would.
Memory is bounded: at most ``limit`` cursors of at most ``MAX_MERGED``
documents each, the least recently used dropped first, and cursors idle for
``idle`` seconds are dropped like mongod's cursor timeout. Ids are random
63-bit numbers, so they do not collide with the upstream's cursors in
practice; a ``getMore`` for an id not held here goes to the upstream.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import bson

CURSOR_NOT_FOUND = 43


@dataclass
class _Held:
    ns: str
    docs: list[dict[str, Any]]
    used: float
    lasting: bool = False  # noCursorTimeout: never dropped for being idle


class HeldCursors:
    """The rest of merged results, waiting for ``getMore``."""

    def __init__(self, limit: int = 1000, idle: float = 600.0) -> None:
        self.limit = limit
        self.idle = idle
        self._held: OrderedDict[int, _Held] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, cursor_id: object) -> bool:
        return cursor_id in self._held

    def first_reply(
        self, ns: str, docs: list[dict[str, Any]], first: int, *, lasting: bool = False
    ) -> dict[str, Any]:
        """The reply to the ``find`` itself: ``first`` documents and, if more remain,
        the id of a cursor holding them (``lasting``: not dropped when idle)."""
        cursor_id = 0
        if len(docs) > first:
            cursor_id = self._open(ns, docs[first:], lasting)
        batch = {"firstBatch": docs[:first], "id": bson.Int64(cursor_id), "ns": ns}
        return {"cursor": batch, "ok": 1.0}

    def get_more(self, cursor_id: int, batch_size: int | None) -> dict[str, Any]:
        """The next batch of a held cursor (the whole rest without ``batchSize``)."""
        self._expire()
        held = self._held.get(cursor_id)
        if held is None:
            return {
                "ok": 0.0,
                "code": CURSOR_NOT_FOUND,
                "codeName": "CursorNotFound",
                "errmsg": f"cursor id {cursor_id} not found",
            }
        size = batch_size if batch_size and batch_size > 0 else len(held.docs)
        batch, held.docs = held.docs[:size], held.docs[size:]
        held.used = time.monotonic()
        self._held.move_to_end(cursor_id)
        remaining = cursor_id if held.docs else 0
        if not held.docs:
            del self._held[cursor_id]
        reply = {"nextBatch": batch, "id": bson.Int64(remaining), "ns": held.ns}
        return {"cursor": reply, "ok": 1.0}

    def kill(self, ids: list[Any]) -> list[Any]:
        """Forget the held ones among ``ids``; returns them."""
        return [i for i in ids if self._held.pop(i, None) is not None]

    def _open(self, ns: str, docs: list[dict[str, Any]], lasting: bool) -> int:
        self._expire()
        while len(self._held) >= self.limit:
            self._held.popitem(last=False)
        cursor_id = secrets.randbits(63) or 1
        self._held[cursor_id] = _Held(ns, docs, time.monotonic(), lasting)
        return cursor_id

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.idle
        idle = [k for k, held in self._held.items() if held.used < cutoff and not held.lasting]
        for cursor_id in idle:
            del self._held[cursor_id]
