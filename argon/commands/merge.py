"""``argon merge ...``: list and resolve a merge's conflicts, then apply it.

A merge starts with ``argon branch merge``; the id it prints is what these
commands take (typed as printed: a string as is, other ids as JSON).
"""

from __future__ import annotations

from typing import Annotated

import typer

from argon.merges import Take

from .output import emit, parse_value, progress
from .render import conflict_table, render_merge
from .session import Json, Uri, connected

app = typer.Typer(help="Resolve a merge's conflicts and apply it.")

MergeId = Annotated[str, typer.Argument(help="Merge id, as `argon branch merge` printed it.")]


@app.command("conflicts")
def conflicts(merge_id: MergeId, uri: Uri = None, json: Json = False) -> None:
    """List every conflict of a merge."""
    with connected(uri, json=json) as client:
        found = client.merges.conflicts(parse_value(merge_id))
    emit(found if json else conflict_table(found), json=json)


@app.command("resolve")
def resolve(
    merge_id: MergeId,
    ns: Annotated[str, typer.Option("--ns", help="db.collection of the document.")],
    doc_id: Annotated[str, typer.Option("--id", help="The document's _id (JSON if not a string).")],
    take: Annotated[
        Take,
        typer.Option(
            help="ours: the target's version; theirs: the source's; document: --document.",
        ),
    ],
    document: Annotated[
        str | None,
        typer.Option(help="With --take document: the document to write (JSON; null deletes)."),
    ] = None,
    uri: Uri = None,
    json: Json = False,
) -> None:
    """Resolve one conflict of a merge."""
    if (take == "document") != (document is not None):
        raise typer.BadParameter("--document goes with --take document, and only with it")
    body = parse_value(document) if document is not None else None
    with connected(uri, json=json) as client:
        merge = client.merges.resolve(parse_value(merge_id), ns, parse_value(doc_id), take, body)
    if json:
        emit(merge, json=True)
    else:
        render_merge(merge)


@app.command("apply")
def apply(merge_id: MergeId, uri: Uri = None, json: Json = False) -> None:
    """Apply a preview, or a merge whose conflicts are all resolved."""
    with connected(uri, json=json) as client, progress("applying merge", json=json):
        merge = client.merges.apply(parse_value(merge_id))
    if json:
        emit(merge, json=True)
    else:
        render_merge(merge)
