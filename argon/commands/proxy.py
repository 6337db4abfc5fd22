"""``argon status``, ``argon uri`` and ``argon gc``: the proxy as a whole."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .output import add_row, emit, fmt_value, make_table, progress
from .session import Json, Uri, connected


def status(uri: Uri = None, json: Json = False) -> None:
    """The proxy's version, default branch, number of branches, LSN and upstream."""
    with connected(uri, json=json) as client:
        st = client.status()
    if json:
        emit(st, json=True)
        return
    table = make_table("field", "value", show_header=False)
    for key, value in (
        ("version", st.version),
        ("default branch", st.default_branch),
        ("branches", str(st.branches)),
        ("LSN", str(st.lsn)),
        ("upstream", st.upstream),
    ):
        add_row(table, key, value)
    emit(table, json=False)


def uri_command(
    ref: Annotated[str, typer.Argument(help="A branch, a tag, or branch@lsn-N / branch@TIME.")],
    db: Annotated[
        str | None, typer.Option(help="Database; required for tags and points in time.")
    ] = None,
    uri: Uri = None,
    json: Json = False,
) -> None:
    """Print a connection string that reads REF.

    A branch is selected for the whole connection with appName=argon:<branch>.
    Tags and points in time are read-only and only addressable per database
    (db@ref in the path), so they need --db.
    """
    with connected(uri, json=json) as client:
        text = client.uri_for(ref, db)
    if json:
        emit({"uri": text}, json=True)
    else:
        # Plain write: a terminal-wide wrap would break the string when copied.
        sys.stdout.write(text + "\n")


def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would go.")] = False,
    uri: Uri = None,
    json: Json = False,
) -> None:
    """Remove WAL entries past retention, unused snapshots and expired branches."""
    with connected(uri, json=json) as client, progress("collecting garbage", json=json):
        result = client.gc(dry_run)
    if json:
        emit(result, json=True)
        return
    verb = "would remove" if dry_run else "removed"
    emit(
        f"{verb}: {result.wal_removed} WAL entries, snapshots {fmt_value(result.snapshots_removed)}"
        f", expired branches {fmt_value(result.expired_branches)}",
        json=False,
    )


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("uri")(uri_command)
    app.command("gc")(gc)
