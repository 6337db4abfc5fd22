"""Prometheus metrics of the proxy, served by ``httpd`` on ``/metrics``.

Theory of operation: module-level collectors in prometheus-client's default
registry, updated by the server as requests flow. Label values are bounded:
command names come from a fixed allow-list (anything else is ``other``) so a
client cannot blow up the series count with made-up command names, and branch
labels are bounded too (``branch_label``): a read of the past (``db@main@lsn-1200``,
a tag, a time) counts under its branch as ``<branch>@past``, not under its own
address, and past ``MAX_BRANCH_LABELS`` distinct values every new branch
counts as ``other``, so that neither time travel nor many short-lived branches
grow the series without bound.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "argon_requests_total", "Commands handled, by command and branch", ["command", "branch"]
)
LATENCY = Histogram(
    "argon_request_duration_seconds",
    "Time from a command's arrival to the last byte of its reply",
    ["command"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ERRORS = Counter("argon_errors_total", "Errors answered or seen, by kind", ["kind"])
UPSTREAM_ERRORS = Counter(
    "argon_upstream_errors_total", "Upstream connection failures, by phase", ["phase"]
)
CONNECTIONS = Gauge("argon_client_connections", "Open client connections")
CONNECTIONS_TOTAL = Counter("argon_client_connections_accepted", "Client connections accepted")
POOL_IN_USE = Gauge("argon_upstream_pool_in_use", "Upstream connections checked out")
POOL_OPEN = Gauge("argon_upstream_pool_open", "Upstream connections open")
BYTES_IN = Counter("argon_bytes_received_total", "Bytes received from clients")
COMPRESSED = Counter(
    "argon_compressed_messages_total", "Compressed requests received, by compressor", ["compressor"]
)
BRANCH_READS = Counter(
    "argon_branch_reads_total",
    "Reads on branches by the path that answered: passthrough, merged or pushdown",
    ["path"],
)
BYTES_OUT = Counter("argon_bytes_sent_total", "Bytes sent to clients")
UPSTREAM_ROUND_TRIPS = Counter(
    "argon_upstream_round_trips_total",
    "Round trips of Argon's own commands to the upstream, on a client request's "
    "connection (request) or for Argon's own upkeep (background)",
    ["on"],
)

MAX_BRANCH_LABELS = 100
OTHER = "other"
_branch_labels: set[str] = set()

KNOWN_COMMANDS = frozenset(
    [
        "abortTransaction",
        "aggregate",
        "buildInfo",
        "bulkWrite",
        "collMod",
        "collStats",
        "commitTransaction",
        "connectionStatus",
        "count",
        "create",
        "createIndexes",
        "currentOp",
        "dbStats",
        "delete",
        "distinct",
        "drop",
        "dropDatabase",
        "dropIndexes",
        "endSessions",
        "explain",
        "find",
        "findAndModify",
        "getLastError",
        "getMore",
        "getParameter",
        "hello",
        "hostInfo",
        "insert",
        "isMaster",
        "ismaster",
        "killCursors",
        "killSessions",
        "listCollections",
        "listDatabases",
        "listIndexes",
        "ping",
        "refreshSessions",
        "renameCollection",
        "saslContinue",
        "saslStart",
        "serverStatus",
        "update",
        "validate",
        "whatsmyuri",
        "argon",
    ]
)


def command_label(name: str) -> str:
    """A bounded metric label for a command name."""
    return name if name in KNOWN_COMMANDS else "other"


def branch_label(branch: str) -> str:
    """A bounded metric label for the branch a request ran on (see the module docstring)."""
    name, at, _ = branch.partition("@")  # branch names never hold '@': it marks a point
    label = f"{name}@past" if at else name
    if label in _branch_labels:
        return label
    if len(_branch_labels) >= MAX_BRANCH_LABELS:
        return OTHER
    _branch_labels.add(label)
    return label
