"""``argon projects ...``: sets of databases that branches version together."""

from __future__ import annotations

from typing import Annotated

import typer

from .output import add_row, emit, fmt_list, fmt_time, make_table
from .session import Json, Uri, connected, fail

app = typer.Typer(help="Projects: sets of databases their branches version together.")


@app.command("create")
def create(
    name: Annotated[str | None, typer.Argument(help="Project name.")] = None,
    name_opt: Annotated[str | None, typer.Option("--name", help="Project name.")] = None,
    db: Annotated[
        list[str] | None,
        typer.Option("--db", help="A database of the project (repeat; default: every one)."),
    ] = None,
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
    uri: Uri = None,
    json: Json = False,
) -> None:
    """Create a project. Branches made with `-p NAME` then cover only its databases."""
    chosen = name or name_opt
    if not chosen:
        fail("give the project a name: `argon projects create NAME` or `--name NAME`", 2)
    with connected(uri, json=json) as client:
        project = client.projects.create(chosen, db or None, description)
    if json:
        emit(project, json=True)
        return
    covers = fmt_list(project.databases) if project.databases is not None else "every database"
    emit(f"created project {project.name} ({covers})", json=False)


@app.command("list")
def list_(uri: Uri = None, json: Json = False) -> None:
    """List projects, with their databases and branches."""
    with connected(uri, json=json) as client:
        projects = client.projects.list()
    if json:
        emit(projects, json=True)
        return
    table = make_table("project", "databases", "branches", "created")
    for p in projects:
        dbs = fmt_list(p.databases) if p.databases is not None else "(every database)"
        add_row(table, p.name, dbs, fmt_list(p.branches), fmt_time(p.created_at))
    emit(table, json=False)


@app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="Project name.")],
    uri: Uri = None,
    json: Json = False,
) -> None:
    """Delete a project that has no branches left."""
    with connected(uri, json=json) as client:
        gone = client.projects.delete(name)
    emit({"deleted": gone} if json else f"deleted project {gone}", json=json)
