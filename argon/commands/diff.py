"""``argon diff FROM TO``: how the data at one ref differs from another."""

from __future__ import annotations

from typing import Annotated

import typer

from .output import emit, progress
from .render import render_diff
from .session import Json, Uri, connected


def diff(
    from_ref: Annotated[str, typer.Argument(metavar="FROM", help="Branch, tag or branch@point.")],
    to_ref: Annotated[str, typer.Argument(metavar="TO", help="Branch, tag or branch@point.")],
    db: Annotated[str | None, typer.Option(help="Only this database.")] = None,
    collection: Annotated[str | None, typer.Option(help="Only this collection.")] = None,
    limit: Annotated[int, typer.Option(help="Documents listed per collection.")] = 100,
    uri: Uri = None,
    json: Json = False,
) -> None:
    """Documents added, removed and modified going from FROM to TO, field by field."""
    with connected(uri, json=json) as client, progress("computing diff", json=json):
        result = client.diff(from_ref, to_ref, db=db, collection=collection, limit=limit)
    if json:
        emit(result, json=True)
    else:
        render_diff(result)


def register(app: typer.Typer) -> None:
    app.command("diff")(diff)
