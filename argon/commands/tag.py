"""``argon tag ...``: name a point of a branch, list and delete those names."""

from __future__ import annotations

from typing import Annotated

import typer

from .output import add_row, emit, fmt_time, make_table, parse_time
from .session import Json, Uri, connected

app = typer.Typer(help="Tags: names for one point (LSN) of a branch, readable as db@tag.")


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Tag name (shares the namespace of branches).")],
    branch: Annotated[str, typer.Option("--branch", "-b", help="Branch to tag.")] = "main",
    lsn: Annotated[int | None, typer.Option(help="Tag this LSN (default: the head).")] = None,
    time: Annotated[str | None, typer.Option(help="Tag the branch as it was at this time.")] = None,
    message: Annotated[str | None, typer.Option("--message", "-m")] = None,
    uri: Uri = None,
    json: Json = False,
) -> None:
    """Tag a branch at its head, or at --lsn or --time."""
    when = parse_time(time) if time else None
    with connected(uri, json=json) as client:
        tag = client.tags.create(name, branch, lsn=lsn, time=when, message=message)
        emit(tag if json else f"tagged {tag.branch} at LSN {tag.lsn} as {tag.name}", json=json)


@app.command("list")
def list_(
    branch: Annotated[str | None, typer.Option("--branch", "-b", help="Only this branch.")] = None,
    uri: Uri = None,
    json: Json = False,
) -> None:
    """List tags."""
    with connected(uri, json=json) as client:
        tags = client.tags.list(branch)
    if json:
        emit(tags, json=True)
        return
    table = make_table("tag", "branch", "LSN", "created", "message")
    for t in tags:
        add_row(table, t.name, t.branch, str(t.lsn), fmt_time(t.created_at), t.message or "-")
    emit(table, json=False)


@app.command("delete")
def delete(name: str, uri: Uri = None, json: Json = False) -> None:
    """Delete a tag (the data it named stays)."""
    with connected(uri, json=json) as client:
        client.tags.delete(name)
    emit({"deleted": name} if json else f"deleted tag {name}", json=json)
