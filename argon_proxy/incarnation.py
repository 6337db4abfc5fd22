"""This proxy's incarnation: its record in ``__argon.proxies`` and the reclaiming
of what killed incarnations left behind.

Theory of operation: a proxy killed mid-write (``kill -9``, a crash, a lost
host) leaves its upstream transaction open, holding the documents it wrote
until the upstream's transaction lifetime runs out (every write to them
meanwhile conflicts), and the LSNs it leased (``Catalog.allocate_lsns``) in
flight, which readers of the LSN head wait for. Argon's own transactions use
sessions whose ids derive from the incarnation id (``txn.SessionPool``), and
each incarnation records here how many it used, with its host, pid and a
heartbeat. An incarnation is dead when it ran on this host and its pid is
gone (or is ours: a container restarted), or when its heartbeat is older than
``LEASE``; its sessions are then ended with ``killSessions``, which aborts
their transactions, its leases are ended, and its record is deleted. A live proxy sharing the
upstream keeps its heartbeat fresh, so its sessions are never touched.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import uuid
from typing import Any

import trio

from .catalog import LSN_COUNTER
from .dbclient import CommandError, DbClient
from .naming import INTERNAL_DB
from .txn import SessionPool

log = logging.getLogger("argon.incarnation")

HEARTBEAT = 5.0  # seconds between heartbeats
LEASE = 30.0  # an incarnation silent for this long is dead
COLLECTION = "proxies"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


class Incarnation:
    """This proxy's record and the sessions it runs its transactions in."""

    def __init__(self, db: DbClient) -> None:
        self.db = db
        self.id = uuid.uuid4()
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.sessions = SessionPool(self.id, on_new=self._record_sessions)

    async def register(self) -> None:
        """Record this incarnation, then reclaim the dead ones."""
        await self.beat()  # an upsert: a start retried after an outage finds it there
        await self.reclaim()

    async def _record_sessions(self, count: int) -> None:
        # Before the session's first use, so a crash right after it is covered.
        await self.db.command(
            INTERNAL_DB,
            {
                "update": COLLECTION,
                "updates": [{"q": {"_id": str(self.id)}, "u": {"$max": {"sessions": count}}}],
            },
        )

    def _dead(self, record: dict[str, Any]) -> bool:
        if record["_id"] == str(self.id):
            return False
        if record.get("host") == self.host:
            pid = int(record.get("pid", 0))
            if pid == self.pid or not _pid_alive(pid):
                return True
        beat = record.get("heartbeat")
        if beat is None:
            return True
        if beat.tzinfo is None:
            beat = beat.replace(tzinfo=dt.UTC)
        return bool((_now() - beat).total_seconds() > LEASE)

    async def reclaim(self) -> int:
        """End the sessions of every dead incarnation; returns how many were dead."""
        records = await self.db.find(INTERNAL_DB, COLLECTION)
        dead = [r for r in records if self._dead(r)]
        for record in dead:
            await self._end(record)
        return len(dead)

    async def _end(self, record: dict[str, Any]) -> None:
        incarnation = uuid.UUID(record["_id"])
        lsids = [SessionPool.lsid(incarnation, i) for i in range(int(record.get("sessions", 0)))]
        if lsids:
            try:
                await self.db.command("admin", {"killSessions": lsids})
            except CommandError as exc:
                log.warning("could not end the sessions of proxy %s: %s", incarnation, exc.errmsg)
                return  # keep the record: a later pass tries again
        # Its transactions are over: the LSNs they leased will never commit.
        await self.db.command(
            INTERNAL_DB,
            {
                "update": "counters",
                "updates": [
                    {
                        "q": {"_id": LSN_COUNTER},
                        "u": {"$pull": {"inflight": {"by": record["_id"]}}},
                    }
                ],
            },
        )
        await self.db.command(
            INTERNAL_DB,
            {"delete": COLLECTION, "deletes": [{"q": {"_id": record["_id"]}, "limit": 1}]},
        )
        log.info(
            "ended %d upstream session(s) of stopped proxy %s (host %s, pid %s)",
            len(lsids),
            incarnation,
            record.get("host"),
            record.get("pid"),
        )

    async def beat(self) -> None:
        """Keep this incarnation's record fresh (re-creating it if it was removed)."""
        await self.db.command(
            INTERNAL_DB,
            {
                "update": COLLECTION,
                "updates": [
                    {
                        "q": {"_id": str(self.id)},
                        "u": {
                            "$set": {"heartbeat": _now(), "host": self.host, "pid": self.pid},
                            "$max": {"sessions": self.sessions.count},
                            "$setOnInsert": {"started": _now()},
                        },
                        "upsert": True,
                    }
                ],
            },
        )

    async def keep_alive(self) -> None:
        """Heartbeat and reclaim for as long as the proxy runs."""
        while True:
            await trio.sleep(HEARTBEAT)
            try:
                await self.beat()
                await self.reclaim()
            except Exception as exc:  # upstream away or too slow: never the proxy's end
                log.warning("heartbeat failed, trying again later: %r", exc)

    async def retire(self) -> None:
        """Remove this incarnation's record on a clean shutdown."""
        await self.db.command(
            INTERNAL_DB,
            {"delete": COLLECTION, "deletes": [{"q": {"_id": str(self.id)}, "limit": 1}]},
        )
