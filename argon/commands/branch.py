"""``argon branch ...`` (alias ``argon branches``): create, list, inspect, switch, compare,
merge, archive and delete branches."""

from __future__ import annotations

from typing import Annotated

import typer

from argon.addressing import app_name, with_options
from argon.branches import Strategy as StrategyName

from .output import emit, err, parse_time, progress
from .render import branch_details, branch_table, render_diff, render_merge
from .session import Json, Project, Uri, connected

app = typer.Typer(help="Create, list, switch, compare, merge and delete branches.")

Name = Annotated[str, typer.Argument(help="Branch name, e.g. feature-x or churn/alice.")]
Strategy = Annotated[
    StrategyName,
    typer.Option(
        "--strategy",
        help="On conflicts: fail (default) or manual stop and list them; ours keeps the "
        "target's side, theirs takes the source's.",
    ),
]


@app.command("create")
def create(
    name: Name,
    from_: Annotated[
        str, typer.Option("--from", help="Branch, tag or snapshot to start from.")
    ] = "main",
    lsn: Annotated[int | None, typer.Option(help="Start from this LSN of --from.")] = None,
    time: Annotated[
        str | None, typer.Option(help="Start from --from as it was at this ISO time.")
    ] = None,
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
    project: Project = None,
    uri: Uri = None,
    json: Json = False,
) -> None:
    """Create a branch. Nothing is copied: it costs nothing until written."""
    when = parse_time(time) if time else None
    with connected(uri, json=json) as client:
        info = client.branches.create(
            name, from_, lsn=lsn, time=when, description=description, project=project
        )
        if json:
            emit(info, json=True)
            return
        emit(f"created branch {info.name} from {info.parent} at LSN {info.base_lsn}", json=False)
        err.print(
            f"connect: {with_options(client.uri, app=app_name(info.name))}",
            markup=False,
            soft_wrap=True,
        )


@app.command("list")
def list_(
    all_: Annotated[
        bool, typer.Option("--all", "-a", help="Include archived branches and snapshots.")
    ] = False,
    project: Project = None,
    uri: Uri = None,
    json: Json = False,
) -> None:
    """List branches; * marks the proxy's default branch."""
    with connected(uri, json=json) as client:
        branches = client.branches.list(all=all_, project=project)
        emit(branches if json else branch_table(branches), json=json)


@app.command("get")
def get(name: Name, uri: Uri = None, json: Json = False) -> None:
    """Show one branch with what it has changed."""
    with connected(uri, json=json) as client:
        info = client.branches.get(name)
        emit(info if json else branch_details(info), json=json)


@app.command("switch")
def switch(name: Name, uri: Uri = None, json: Json = False) -> None:
    """Make NAME the proxy's default branch, for every connection that names none."""
    with connected(uri, json=json) as client:
        default = client.branches.switch(name)
        if json:
            emit({"default_branch": default}, json=True)
        else:
            emit(f"default branch is now {default}", json=False)


@app.command("delete")
def delete(name: Name, uri: Uri = None, json: Json = False) -> None:
    """Delete a branch and its overlay collections."""
    with connected(uri, json=json) as client:
        gone = client.branches.delete(name)
        if json:
            emit(gone, json=True)
        else:
            emit(
                f"deleted branch {gone.name} ({gone.overlays_dropped} overlays dropped)", json=False
            )


@app.command("archive")
def archive(name: Name, uri: Uri = None, json: Json = False) -> None:
    """Make a branch read-only and hide it from `branch list` (see --all)."""
    with connected(uri, json=json) as client:
        info = client.branches.archive(name)
        emit(info if json else f"archived branch {info.name}", json=json)


@app.command("protect")
def protect(
    name: Name,
    off: Annotated[bool, typer.Option("--off", help="Allow direct changes again.")] = False,
    uri: Uri = None,
    json: Json = False,
) -> None:
    """Refuse direct changes to a branch: it then changes only through merges."""
    with connected(uri, json=json) as client:
        info = client.branches.protect(name, not off)
        state = "no longer protected" if off else "protected: it changes only through merges"
        emit(info if json else f"branch {info.name} is {state}", json=json)


@app.command("compare")
def compare(
    name: Name,
    with_: Annotated[str, typer.Option("--with", help="The ref to compare against.")] = "main",
    db: Annotated[str | None, typer.Option(help="Only this database.")] = None,
    collection: Annotated[str | None, typer.Option(help="Only this collection.")] = None,
    limit: Annotated[int, typer.Option(help="Documents listed per collection.")] = 100,
    uri: Uri = None,
    json: Json = False,
) -> None:
    """What NAME changed relative to --with (default main).

    Same as `argon diff WITH NAME`: `added` documents are in NAME only.
    """
    with connected(uri, json=json) as client, progress("comparing", json=json):
        diff = client.diff(with_, name, db=db, collection=collection, limit=limit)
    if json:
        emit(diff, json=True)
    else:
        render_diff(diff)


@app.command("merge")
def merge(
    source: Annotated[str, typer.Argument(help="Branch to merge.")],
    into: Annotated[
        str | None, typer.Option("--into", help="Target branch (default: the source's parent).")
    ] = None,
    strategy: Strategy = "fail",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Compute a preview; write nothing.")
    ] = False,
    uri: Uri = None,
    json: Json = False,
) -> None:
    """Merge SOURCE into --into. Exit 5 if conflicts stop it (they are listed)."""
    with connected(uri, json=json) as client, progress("merging", json=json):
        result = client.branches.merge(source, into, strategy, dry_run)
    if json:
        emit(result, json=True)
    else:
        render_merge(result)
