"""``argon serve``: wires upstream, pool, proxy server and HTTP endpoint together.

Theory of operation: everything lives in one Trio nursery. SIGINT and SIGTERM
cancel the server's scope, which makes it drain (see ``server.py``); then
the embedded upstream, if any, is stopped. A background task checks the
upstream every few seconds for ``/healthz``, another keeps this proxy's
record in ``__argon.proxies`` fresh and ends what killed proxies left open
(``incarnation.py``).
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from .config import Settings
from .embedded import embedded_upstream
from .engine import Engine
from .errors import UpstreamIOError, UpstreamUnavailable
from .httpd import Health, MetricsServer
from .server import ProxyServer
from .timetravel import Snapshots
from .upstream import UpstreamPool, parse_upstream_uri

log = logging.getLogger("argon.app")

_HEALTH_INTERVAL = 5.0
_CATALOG_INTERVAL = 1.0  # how soon another proxy's switchBranch or createBranch is seen


@asynccontextmanager
async def _upstream_uri(settings: Settings) -> AsyncIterator[str]:
    if settings.upstream:
        yield settings.upstream
        return
    async with embedded_upstream(
        settings.data_dir,
        command=settings.embedded_command,
        port=settings.embedded_port,
        start_timeout=settings.embedded_start_timeout,
    ) as uri:
        yield uri


async def _watch_health(pool: UpstreamPool, health: Health) -> None:
    while True:
        try:
            # A ping, not just a checkout: a frozen upstream keeps its sockets open.
            async with pool.checkout() as conn:
                ok = await conn.ping(pool.connect_timeout)
            health.upstream_ok = ok
            health.error = "" if ok else f"the upstream at {pool.address} did not answer a ping"
        except UpstreamUnavailable as exc:
            health.upstream_ok, health.error = False, exc.errmsg
        health.checked_at = trio.current_time()
        await trio.sleep(_HEALTH_INTERVAL)


async def _follow_catalog(engine: Engine) -> None:
    """Pick up other proxies' metadata changes (the default branch above all, which
    decides the fast path) within ``_CATALOG_INTERVAL`` even while only main is read."""
    while True:
        await trio.sleep(_CATALOG_INTERVAL)
        try:
            await engine.catalog.refresh()
        except Exception as exc:  # the upstream is away (the health check reports it)
            log.debug("catalog refresh failed: %r", exc)


async def _start_engine(engine: Engine) -> None:
    """Load branch metadata, waiting for the upstream if it is not up yet."""
    delay = 0.5
    while True:
        try:
            await engine.start()
            return
        except (UpstreamUnavailable, UpstreamIOError) as exc:
            log.warning("%s; retrying in %.1fs", exc, delay)
            await trio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def _stop_on_signal(server: ProxyServer) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s: draining and shutting down", signal.Signals(signum).name)
            server.request_stop()
            return


async def _serve_then_cancel(
    server: ProxyServer,
    scope: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the server; once it has drained, stop the helper tasks beside it."""
    await server.serve(task_status=task_status)
    scope.cancel()


async def serve(
    settings: Settings, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the proxy until SIGINT/SIGTERM or cancellation. Reports the bound port."""
    async with _upstream_uri(settings) as uri:
        pool = UpstreamPool(
            parse_upstream_uri(uri),
            size=settings.pool_size,
            idle=settings.pool_idle,
            connect_timeout=settings.connect_timeout,
            reply_timeout=settings.upstream_timeout,
        )
        health = Health(upstream=str(pool.address))
        http = None
        if settings.metrics_port:
            http = MetricsServer(settings.metrics_host, settings.metrics_port, health)
            http.start()
        engine = Engine(pool, Snapshots(settings.snapshots_kept, settings.snapshot_grace))
        await _start_engine(engine)
        server = ProxyServer(settings, pool, engine)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_stop_on_signal, server)
                nursery.start_soon(_watch_health, pool, health)
                nursery.start_soon(_follow_catalog, engine)
                nursery.start_soon(engine.incarnation.keep_alive)
                await nursery.start(_serve_then_cancel, server, nursery.cancel_scope)
                port = server.port
                log.info(
                    "Argon listening on %s:%d, upstream %s%s",
                    settings.host,
                    port,
                    pool.address,
                    f", metrics on http://{settings.metrics_host}:{http.port}/metrics"
                    if http
                    else "",
                )
                task_status.started(port)
            with trio.move_on_after(2), contextlib.suppress(Exception):
                await engine.incarnation.retire()  # a clean stop leaves nothing to reclaim
        finally:
            if http is not None:
                http.close()
