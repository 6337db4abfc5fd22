"""The proxy's own cursors (the rest of merged branch reads): bounded, timed out when
idle like mongod's, except those opened with ``noCursorTimeout`` (pure)."""

from __future__ import annotations

from argon_proxy.cursors import HeldCursors


def test_idle_cursors_go_unless_opened_without_timeout() -> None:
    cursors = HeldCursors(idle=0.0)  # every cursor is idle at once
    docs = [{"_id": i} for i in range(5)]
    lasting = cursors.first_reply("db.c", docs, 2, lasting=True)["cursor"]["id"]
    passing = cursors.first_reply("db.c", docs, 2)["cursor"]["id"]
    assert lasting in cursors and passing in cursors
    reply = cursors.get_more(lasting, 2)  # reading expires the idle ones first
    assert [d["_id"] for d in reply["cursor"]["nextBatch"]] == [2, 3]
    assert passing not in cursors and cursors.get_more(passing, 2)["code"] == 43
    assert lasting in cursors


def test_the_least_recently_used_cursor_goes_first_when_full() -> None:
    cursors = HeldCursors(limit=2)
    docs = [{"_id": i} for i in range(3)]
    first, second = (cursors.first_reply("db.c", docs, 1)["cursor"]["id"] for _ in range(2))
    cursors.get_more(first, 1)  # used: the second is now the oldest
    third = cursors.first_reply("db.c", docs, 1)["cursor"]["id"]
    assert first in cursors and third in cursors and second not in cursors
