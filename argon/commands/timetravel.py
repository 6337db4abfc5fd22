"""``argon time-travel info``: how far back each branch can be read."""

from __future__ import annotations

from typing import Annotated

import typer

from .output import add_row, emit, fmt_time, make_table
from .session import Json, Project, Uri, connected

app = typer.Typer(help="Read branches as they were: db@branch@lsn-N or db@branch@<ISO time>.")


@app.command("info")
def info(
    branch: Annotated[
        str | None, typer.Option("--branch", "-b", help="Only this branch (default: all).")
    ] = None,
    project: Project = None,
    uri: Uri = None,
    json: Json = False,
) -> None:
    """The earliest and latest LSN and time each branch can be read at."""
    with connected(uri, json=json) as client:
        ranges = client.time_travel_info(branch, project)
    if json:
        emit(ranges, json=True)
        return
    table = make_table("branch", "earliest LSN", "earliest time", "latest LSN", "latest time")
    for r in ranges:
        add_row(
            table,
            r.branch,
            str(r.earliest_lsn),
            fmt_time(r.earliest_time),
            str(r.latest_lsn),
            fmt_time(r.latest_time),
        )
    emit(table, json=False)
