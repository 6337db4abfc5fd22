"""``argon serve``: wires upstream, pool, proxy server and HTTP endpoint together.

Theory of operation: everything lives in one Trio nursery. SIGINT and SIGTERM
make the server drain (see ``server.py``), or abandon a start-up still under
way (``_Stopper``); then the embedded upstream, if any, is stopped. A
background task checks the upstream every few seconds for ``/healthz``;
another keeps this proxy's record in ``__argon.proxies`` fresh and ends what
killed proxies left open (``incarnation.py``).

Start-up checks everything it can before it starts anything: the settings'
values, the data directory, and that the proxy and metrics addresses are free,
so that a mistake ends ``argon serve`` at once with one line naming it (see
``StartupError``) instead of after the embedded upstream has started. Only an
external upstream that does not answer yet is waited for: in a deployment the
database may well start after the proxy.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import logging
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from .catalog import Catalog
from .config import ConfigError, Settings
from .dbclient import CommandError
from .embedded import EmbeddedError, embedded_upstream, prepare_data_dir
from .engine import Engine
from .errors import UNAUTHORIZED, UpstreamIOError, UpstreamUnavailable
from .httpd import Health, MetricsServer
from .listener_tls import server_context
from .server import ProxyServer
from .timetravel import SnapshotLimits
from .upstream import UpstreamPool
from .upstream_connect import UpstreamRefused
from .upstream_target import UpstreamTarget, parse_target, redacted

log = logging.getLogger("argon.app")

_HEALTH_INTERVAL = 5.0
_CATALOG_INTERVAL = 1.0  # how soon another proxy's switchBranch or createBranch is seen

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")


class StartupError(Exception):
    """``argon serve`` cannot start; ``exit_code`` is the documented exit status."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


EXIT_CONFIG = 3  # bad configuration or address in use: the documented exit status
EXIT_UPSTREAM = 4  # the upstream cannot be used (it refused Argon's credentials or TLS)


def check_settings(settings: Settings) -> None:
    """Refuse values Argon cannot run with, naming the setting (raises ``ConfigError``)."""
    if settings.log_level.upper() not in LOG_LEVELS:
        raise ConfigError(f"log_level {settings.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    if settings.log_format not in LOG_FORMATS:
        raise ConfigError(f"log_format {settings.log_format!r} is not one of text, json")
    for name in ("port", "metrics_port", "console_port", "embedded_port"):
        value = getattr(settings, name)
        if not 0 <= value <= 65535:
            raise ConfigError(f"{name} {value} is not a port number (0 to 65535)")
    for name in ("max_connections", "pool_size"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"{name} must be at least 1")
    if settings.advertise:
        try:
            settings.member_address()
        except ValueError as exc:
            raise ConfigError(f"advertise {settings.advertise!r}: {exc}") from None
    server_context(settings)  # the listener's TLS files are usable
    if not settings.auth and not settings.allow_unauthenticated and not _loopback(settings.host):
        raise ConfigError(
            f"host {settings.host!r} listens beyond loopback without authentication: set "
            "auth = true (ARGON_AUTH) and create users with `argon user create`, or set "
            "allow_unauthenticated = true (ARGON_ALLOW_UNAUTHENTICATED) if whoever reaches "
            "the port may read and write every database"
        )
    if settings.upstream:
        _check_upstream_uri(settings.upstream)
    else:
        try:
            prepare_data_dir(settings.data_dir)
        except EmbeddedError as exc:
            raise ConfigError(str(exc)) from None


def _loopback(host: str) -> bool:
    """Whether ``host`` names only loopback addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_upstream_uri(uri: str) -> None:
    if uri.startswith("mongodb+srv://"):
        return  # resolving it takes DNS: done at start-up, where failures are reported
    try:
        parse_target(uri)
    except ValueError as exc:
        raise ConfigError(f"upstream {redacted(uri)!r}: {exc}") from None


async def _target(uri: str) -> UpstreamTarget:
    """The upstream the URI names (SRV lookups run in a worker thread)."""
    try:
        return await trio.to_thread.run_sync(parse_target, uri)
    except ValueError as exc:
        raise ConfigError(f"upstream {redacted(uri)!r}: {exc}") from None


def check_addresses_free(settings: Settings) -> None:
    """Fail fast if the proxy or metrics address is taken, before anything is started."""
    _check_free("proxy", settings.host, settings.port)
    if settings.metrics_port:
        _check_free("metrics", settings.metrics_host, settings.metrics_port)
    if settings.console_port:
        _check_free("console", settings.console_host, settings.console_port)


def _check_free(what: str, host: str, port: int) -> None:
    if port == 0:
        return  # the system picks a free one
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise StartupError(f"cannot listen on {host}:{port} ({what}): {exc}", EXIT_CONFIG) from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as sock:
            # The same options as the real listener, so the probe agrees with it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise listen_error(what, host, port, exc) from None


def listen_error(what: str, host: str, port: int, exc: OSError) -> StartupError:
    """The one-line error for an address Argon cannot listen on."""
    setting = "--port" if what == "proxy" else f"--{what}-port"
    reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or exc
    hint = f"; choose another with {setting}" if exc.errno == errno.EADDRINUSE else ""
    if what != "proxy" and exc.errno == errno.EADDRINUSE:
        hint += f" (0 turns the {what} endpoint off)"
    return StartupError(f"cannot listen on {host}:{port} ({what}): {reason}{hint}", EXIT_CONFIG)


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
        except Exception as exc:  # any other failure is a sick upstream, not a dead proxy
            health.upstream_ok, health.error = False, f"health check failed: {exc!r}"
        health.checked_at = trio.current_time()
        await trio.sleep(_HEALTH_INTERVAL)


async def _follow_catalog(catalog: Catalog) -> None:
    """Pick up other proxies' metadata changes (the default branch above all, which
    decides the fast path) within ``_CATALOG_INTERVAL`` even while only main is read."""
    while True:
        await trio.sleep(_CATALOG_INTERVAL)
        try:
            await catalog.refresh()
        except Exception as exc:  # the upstream is away (the health check reports it)
            log.debug("catalog refresh failed: %r", exc)


async def _start_engine(engine: Engine) -> None:
    """Load branch metadata, waiting for the upstream if it is not up yet."""
    delay = 0.5
    while True:
        try:
            await engine.start()
            return
        except UpstreamRefused as exc:
            raise StartupError(f"cannot use the upstream: {exc}", EXIT_UPSTREAM) from None
        except CommandError as exc:
            if exc.code != UNAUTHORIZED:
                raise
            raise StartupError(
                f"cannot use the upstream: it requires authentication ({exc.errmsg}); put "
                "the credentials of a user with the root role in the upstream URI "
                "(mongodb://USER:PASSWORD@HOST/?authSource=admin)",
                EXIT_UPSTREAM,
            ) from None
        except (UpstreamUnavailable, UpstreamIOError) as exc:
            log.warning("%s; retrying in %.1fs", exc, delay)
            await trio.sleep(delay)
            delay = min(delay * 2, 10.0)


class _Stopper:
    """What SIGINT/SIGTERM do: before the server runs, abandon start-up (a wait for an
    upstream that never comes must not make the proxy unstoppable); once it runs, drain;
    a second signal during the drain stops at once."""

    def __init__(self, scope: trio.CancelScope) -> None:
        self.scope = scope
        self.server: ProxyServer | None = None
        self.draining = False

    async def watch(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            name = signal.Signals(signum).name
            if self.server is None:
                log.info("received %s during start-up: stopping", name)
                self.scope.cancel()
            elif not self.draining:
                log.info("received %s: draining and shutting down", name)
                self.draining = True
                self.server.request_stop()
            else:
                log.warning("received %s again: stopping without waiting for the drain", name)
                self.scope.cancel()


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
    """Run the proxy until SIGINT/SIGTERM or cancellation. Reports the bound port.

    Raises ``ConfigError`` or ``StartupError`` if it cannot start."""
    check_settings(settings)
    check_addresses_free(settings)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            stopper = _Stopper(nursery.cancel_scope)
            nursery.start_soon(stopper.watch, signals)
            await _start_and_run(settings, stopper, task_status)
            nursery.cancel_scope.cancel()


async def _start_and_run(
    settings: Settings, stopper: _Stopper, task_status: trio.TaskStatus[int]
) -> None:
    async with _upstream_uri(settings) as uri:
        target = await _target(uri)
        pool = UpstreamPool(
            target,
            size=settings.pool_size,
            idle=settings.pool_idle,
            connect_timeout=target.connect_timeout or settings.connect_timeout,
            reply_timeout=settings.upstream_timeout,
        )
        health = Health(upstream=str(pool.address))
        http = _open_metrics(settings, health)
        try:
            engine = Engine(
                pool,
                SnapshotLimits(settings.snapshots_kept, settings.snapshot_grace),
                bundle_at=settings.bundle_at,
            )
            try:
                await _start_engine(engine)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await pool.aclose()
                raise
            await _run(settings, pool, engine, health, http, stopper, task_status)
        finally:
            if http is not None:
                http.close()


async def _start_console(settings: Settings, engine: Engine, nursery: trio.Nursery) -> str:
    """Serve the web console and REST API (``console/``) in ``nursery``; its URL,
    or "" when turned off."""
    if not settings.console_port:
        return ""
    from hypercorn.config import Config
    from hypercorn.trio import serve as serve_http

    from .console.web import Console

    config = Config()
    config.bind = [_bind_address(settings.console_host, settings.console_port)]
    config.accesslog = None
    server_log = logging.getLogger("argon.console.http")
    server_log.setLevel(logging.WARNING)  # its "Running on" line: Argon logs the URL itself
    config.errorlog = server_log
    app = Console(engine, auth=settings.auth)
    try:
        binds = await nursery.start(functools.partial(serve_http, app, config, mode="asgi"))
    except OSError as exc:
        raise listen_error("console", settings.console_host, settings.console_port, exc) from None
    return f"{binds[0]}/" if binds else ""


def _bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _open_metrics(settings: Settings, health: Health) -> MetricsServer | None:
    if not settings.metrics_port:
        return None
    try:
        http = MetricsServer(settings.metrics_host, settings.metrics_port, health)
    except OSError as exc:
        raise listen_error("metrics", settings.metrics_host, settings.metrics_port, exc) from None
    http.start()
    return http


async def _run(
    settings: Settings,
    pool: UpstreamPool,
    engine: Engine,
    health: Health,
    http: MetricsServer | None,
    stopper: _Stopper,
    task_status: trio.TaskStatus[int],
) -> None:
    """Serve clients until a signal or cancellation, then drain."""
    server = ProxyServer(settings, pool, engine, tls=server_context(settings))
    stopper.server = server
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_health, pool, health)
        nursery.start_soon(_follow_catalog, engine.catalog)
        nursery.start_soon(engine.catalog.release_ended)
        nursery.start_soon(engine.incarnation.keep_alive)
        console = await _start_console(settings, engine, nursery)
        await nursery.start(_serve_then_cancel, server, nursery.cancel_scope)
        log.info(
            "Argon listening on %s:%d, upstream %s%s",
            settings.host,
            server.port,
            pool.address,
            f", metrics on http://{settings.metrics_host}:{http.port}/metrics" if http else "",
        )
        if console:
            log.info("Argon console on %s", console)
        task_status.started(server.port)
    with trio.move_on_after(2), contextlib.suppress(Exception):
        await engine.incarnation.retire()  # a clean stop leaves nothing to reclaim
