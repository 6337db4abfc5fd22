"""What every client command shares: its options, its client, and its exit codes.

Exit codes: 0 ok, 1 the operation failed (the server's error is printed as
``error <codeName> (<code>): <errmsg>``), 2 usage, 4 no proxy answered,
5 a merge stopped on conflicts (they are listed with how to resolve them).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer

from argon import ArgonError, Client, MergeConflictError, ProxyUnreachable
from argon.addressing import DEFAULT_URI, ENV_URI

from .output import emit, err
from .render import render_conflict_stop

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 4
EXIT_CONFLICTS = 5

# Short, so a forgotten `argon serve` is reported in seconds rather than pymongo's 30.
TIMEOUT_MS = 5_000

Uri = Annotated[
    str | None,
    typer.Option(
        "--uri",
        envvar=ENV_URI,
        show_envvar=True,
        help=f"Connection string of the Argon proxy (default {DEFAULT_URI}).",
    ),
]
Json = Annotated[
    bool,
    typer.Option("--json", help="Print machine-readable JSON (relaxed Extended JSON)."),
]
Project = Annotated[
    str | None,
    typer.Option(
        "--project", "-p", help="Project (see `argon projects`; default: every database)."
    ),
]


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``message`` as an error and exit with ``code``."""
    err.print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(code)


@contextmanager
def connected(uri: str | None, *, json: bool = False) -> Iterator[Client]:
    """A client for the proxy at ``uri``; failures become messages and exit codes."""
    client = Client(uri, timeout_ms=TIMEOUT_MS)
    try:
        yield client
    except ProxyUnreachable as exc:
        fail(exc.message, EXIT_UNREACHABLE)
    except MergeConflictError as exc:
        err.print(f"error {exc.code_name} ({exc.code}): {exc.message}", markup=False)
        merge = exc.merge
        if merge is not None and json:
            emit(merge, json=True)
        elif merge is not None:
            render_conflict_stop(merge)
        raise typer.Exit(EXIT_CONFLICTS) from None
    except ArgonError as exc:
        err.print(
            f"error {exc.code_name} ({exc.code}): {exc.message}", markup=False, highlight=False
        )
        raise typer.Exit(EXIT_FAILED) from None
    finally:
        client.close()
