"""Structured logging: every line carries the connection id when there is one.

Theory of operation: the stdlib logger with a formatter that renders records
as ``key=value`` text or as one JSON object per line; code passes the client
connection id as ``extra={"conn": id}``.
"""

from __future__ import annotations

import json
import logging
import sys
import time


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        conn = getattr(record, "conn", None)
        where = f" conn={conn}" if conn is not None else ""
        line = f"{stamp}.{int(record.msecs):03d}Z {record.levelname:<7} {record.name}{where} "
        line += record.getMessage()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        conn = getattr(record, "conn", None)
        if conn is not None:
            doc["conn"] = conn
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send Argon's logs to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger("argon")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
