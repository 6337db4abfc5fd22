"""The ``argon`` command line (also installed as ``argonctl``).

``serve`` runs the proxy; every other command (``branch``, ``tag``, ``merge``,
``diff``, ``log``, ...) is a client of a running proxy, defined in
``argon_proxy.commands`` on top of the ``argon`` SDK.
"""

from __future__ import annotations

from typing import Annotated, Any

import trio
import typer
from rich.console import Console

from . import __version__
from .commands import register as register_client_commands
from .config import ConfigError, load_settings
from .embedded import EmbeddedError
from .logs import setup_logging

app = typer.Typer(
    name="argon",
    help="Argon: Git for MongoDB. Branches, merges, diffs and time travel through a proxy.",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True)

# Exit codes: 0 ok, 1 operation failed, 2 usage, 3 configuration, 4 upstream (for
# `serve`) or proxy (for client commands) unavailable, 5 merge stopped on conflicts.
EXIT_CONFIG = 3
EXIT_UPSTREAM = 4


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
    max_connections: Annotated[int | None, typer.Option(help="Client connection limit.")] = None,
    pool_size: Annotated[int | None, typer.Option(help="Upstream connection pool size.")] = None,
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
        "max_connections": max_connections,
        "pool_size": pool_size,
        "log_level": log_level,
        "log_format": log_format,
    }
    try:
        settings = load_settings(config, overrides=overrides)
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG) from None
    setup_logging(settings.log_level, settings.log_format)
    from .app import serve as run_server

    try:
        trio.run(run_server, settings)
    except EmbeddedError as exc:
        err.print(f"[red]cannot start the embedded upstream:[/red] {exc}")
        raise typer.Exit(EXIT_UPSTREAM) from None
    except OSError as exc:
        err.print(f"[red]cannot listen on {settings.host}:{settings.port}:[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG) from None
    except KeyboardInterrupt:
        pass


register_client_commands(app)


def main() -> None:
    """Console-script entry point."""
    app()
