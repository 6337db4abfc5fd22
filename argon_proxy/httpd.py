"""HTTP endpoint for operations: ``/metrics`` (Prometheus) and ``/healthz``.

Theory of operation: a small threaded WSGI server beside the Trio loop, so a
slow scrape never delays a MongoDB request. The health answer is read from a
``Health`` object that the Trio side updates; reading a few attributes from
another thread needs no lock.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app


@dataclass
class Health:
    """What ``/healthz`` reports."""

    upstream: str = ""
    upstream_ok: bool = False
    checked_at: float = 0.0
    error: str = ""
    started_at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.upstream_ok else "degraded",
            "upstream": self.upstream,
            "upstream_ok": self.upstream_ok,
            "checked_at": self.checked_at,
            "error": self.error,
            "uptime_seconds": round(time.time() - self.started_at, 1),
        }


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def make_app(health: Health) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    metrics_app = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            body = json.dumps(health.as_dict()).encode()
            status = "200 OK" if health.upstream_ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics or /healthz\n"]

    return app


class MetricsServer:
    """Serves the app on a daemon thread until ``close``."""

    def __init__(self, host: str, port: int, health: Health) -> None:
        self._server = make_server(
            host, port, make_app(health), server_class=_Server, handler_class=_QuietHandler
        )
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
