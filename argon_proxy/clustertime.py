"""The upstream's cluster time, gossiped in the replies Argon builds itself.

Theory of operation: drivers learn the cluster time (``$clusterTime``) and an
operation's time (``operationTime``) from replies, send the cluster time back
with their next commands, and start a causally consistent read after the
operation time they last saw (``afterClusterTime``). Replies the upstream
sends pass through unchanged. Replies Argon builds itself (writes it runs as
several commands, branch reads it merges, its own errors) carry the newest
cluster time and operation time any upstream reply has shown this proxy: no
earlier than the operation's own, so a read after it waits only for what it
must see. One clock per process: a proxy has one upstream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bson import Timestamp


class ClusterClock:
    """The newest ``$clusterTime`` and ``operationTime`` seen on upstream replies."""

    def __init__(self) -> None:
        self.cluster_time: Mapping[str, Any] | None = None  # the signed document, as sent
        self.operation_time: Timestamp | None = None

    def note(self, reply: Mapping[str, Any]) -> None:
        """Learn the times an upstream reply carries, keeping the newest."""
        gossip = reply.get("$clusterTime")
        if isinstance(gossip, Mapping) and isinstance(gossip.get("clusterTime"), Timestamp):
            held = self.cluster_time["clusterTime"] if self.cluster_time else None
            if held is None or gossip["clusterTime"] > held:
                self.cluster_time = gossip
        op_time = reply.get("operationTime")
        if isinstance(op_time, Timestamp) and (
            self.operation_time is None or op_time > self.operation_time
        ):
            self.operation_time = op_time

    def stamp(self, reply: dict[str, Any]) -> dict[str, Any]:
        """``reply`` with the times it lacks, as mongod puts them on every reply."""
        if self.cluster_time is not None:
            reply.setdefault("$clusterTime", dict(self.cluster_time))
        if self.operation_time is not None:
            reply.setdefault("operationTime", self.operation_time)
        return reply


CLOCK = ClusterClock()
