"""``argon projects ...``: refused, because the proxy has no projects yet.

The admin-command contract has no project actions, and a project kept only
by the CLI (in a file, or in a collection of the user's data) would be a
second, divergent source of truth that mongosh and other proxies never see.
So these commands exist to say so clearly, with exit code 1.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .session import projects_unavailable

app = typer.Typer(help="Projects (not available yet: the proxy has no project actions).")


@app.command("create")
def create(
    name: Annotated[str | None, typer.Argument(help="Project name.")] = None,
    name_opt: Annotated[str | None, typer.Option("--name", help="Project name.")] = None,
    db: Annotated[list[str] | None, typer.Option("--db", help="A database of the project.")] = None,
) -> None:
    """Not available yet: exits 1 and says so."""
    projects_unavailable()


@app.command("list")
def list_() -> None:
    """Not available yet: exits 1 and says so."""
    projects_unavailable()
