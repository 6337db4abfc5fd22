"""``argon snapshot create``: an immutable, named branch."""

from __future__ import annotations

from typing import Annotated

import typer

from .output import emit
from .session import Json, Uri, connected

app = typer.Typer(help="Snapshots: read-only branches, readable as db@name, usable as --from.")


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Snapshot name.")],
    branch: Annotated[str, typer.Option("--branch", "-b", help="Branch to freeze.")] = "main",
    uri: Uri = None,
    json: Json = False,
) -> None:
    """Freeze a branch as it is now. Delete it with `argon branch delete`."""
    with connected(uri, json=json) as client:
        info = client.snapshots.create(name, branch)
    emit(info if json else f"snapshot {info.name} of {branch} at LSN {info.head_lsn}", json=json)
