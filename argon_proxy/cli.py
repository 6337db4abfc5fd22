"""The ``argon`` command line (also installed as ``argonctl``).

``serve`` runs the proxy; every other command (``branch``, ``tag``, ``merge``,
``diff``, ``log``, ...) is a client of a running proxy, defined in
``argon.commands`` next to the ``argon`` SDK they call. The proxy itself (Trio,
the engine) is imported only by ``serve``, so client commands start fast.
"""

from __future__ import annotations

import errno
from typing import Annotated, Any, NoReturn

import typer

from argon.commands import register as register_client_commands

from . import __version__
from .config import ConfigError, Settings, load_settings
from .logs import setup_logging

app = typer.Typer(
    name="argon",
    help="Argon: Git for MongoDB. Branches, merges, diffs and time travel through a proxy.",
    no_args_is_help=True,
    add_completion=False,
)

# Exit codes: 0 ok, 1 operation failed, 2 usage, 3 configuration, 4 upstream (for
# `serve`) or proxy (for client commands) unavailable, 5 merge stopped on conflicts.
EXIT_CONFIG = 3
EXIT_UPSTREAM = 4
_LISTEN_ERRNOS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})


def _version(value: bool) -> None:
    if value:
        print(f"argon {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    """Argon command line."""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option("--port", "-p", help="Port to listen on.")] = None,
    upstream: Annotated[
        str | None,
        typer.Option(help="mongodb:// URI of the upstream server; omit to run the embedded one."),
    ] = None,
    data_dir: Annotated[
        str | None, typer.Option(help="Directory for the embedded upstream's data.")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Port for /metrics and /healthz; 0 disables it.")
    ] = None,
    console_port: Annotated[
        int | None, typer.Option(help="Port for the web console and REST API; 0 disables it.")
    ] = None,
    max_connections: Annotated[int | None, typer.Option(help="Client connection limit.")] = None,
    pool_size: Annotated[int | None, typer.Option(help="Upstream connection pool size.")] = None,
    advertise: Annotated[
        str | None,
        typer.Option(
            help="HOST[:PORT] clients reach Argon at: present it as a one-member replica set "
            "there (default: as a router, mongos-like)."
        ),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = None,
    log_format: Annotated[str | None, typer.Option(help="text or json.")] = None,
    config: Annotated[
        str | None, typer.Option("--config", "-c", help="TOML file (default config/argon.toml).")
    ] = None,
) -> None:
    """Run the proxy. Settings: flags > ARGON_* environment > TOML file > defaults."""
    overrides: dict[str, Any] = {
        "host": host,
        "port": port,
        "upstream": upstream,
        "data_dir": data_dir,
        "metrics_port": metrics_port,
        "console_port": console_port,
        "max_connections": max_connections,
        "pool_size": pool_size,
        "advertise": advertise,
        "log_level": log_level,
        "log_format": log_format,
    }
    from .app import check_settings

    try:
        settings = load_settings(config, overrides=overrides)
        check_settings(settings)
    except ConfigError as exc:
        _fail(f"configuration error: {exc}", EXIT_CONFIG)
    setup_logging(settings.log_level, settings.log_format)
    import trio

    from .app import serve as run_server

    try:
        trio.run(run_server, settings)
    except KeyboardInterrupt:
        pass
    except BaseException as exc:
        failure = _startup_failure(exc, settings)
        if failure is None:
            raise
        _fail(*failure)


def _fail(message: str, code: int) -> NoReturn:
    """One line on stderr, then the documented exit status: no traceback."""
    typer.echo(f"argon serve: {message}", err=True)
    raise typer.Exit(code)


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, which Trio's nurseries raise."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _startup_failure(exc: BaseException, settings: Settings) -> tuple[str, int] | None:
    """The message and exit status for an error that stopped ``serve`` from starting."""
    from .app import StartupError, listen_error
    from .embedded import EmbeddedError

    for leaf in _leaves(exc):
        if isinstance(leaf, StartupError):
            return str(leaf), leaf.exit_code
        if isinstance(leaf, ConfigError):
            return f"configuration error: {leaf}", EXIT_CONFIG
        if isinstance(leaf, EmbeddedError):
            return f"cannot start the embedded upstream: {leaf}", EXIT_UPSTREAM
        if isinstance(leaf, OSError) and leaf.errno in _LISTEN_ERRNOS:
            # The address was free when checked and taken before the listener bound it.
            error = listen_error("proxy", settings.host, settings.port, leaf)
            return str(error), error.exit_code
    return None


register_client_commands(app)


def main() -> None:
    """Console-script entry point."""
    app()
