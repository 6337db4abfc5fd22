"""``argon access ...``: roles of users on branches, when argon serve runs with auth."""

from __future__ import annotations

from typing import Annotated

import typer

from .output import add_row, emit, make_table
from .session import Json, Uri, connected

app = typer.Typer(
    help="Who may do what on which branches: read, write, merge or admin, per name pattern."
)

Role = Annotated[str, typer.Argument(help="read, write, merge or admin.")]
Branches = Annotated[
    str | None, typer.Option("--branches", "-b", help="Branch name or pattern (exp/*, main, *).")
]
Project = Annotated[
    str | None, typer.Option("--project", "-p", help="Or: the branches of this project.")
]


def _where(branches: str | None, project: str | None) -> str:
    return f"project {project}" if project is not None else str(branches)


@app.command("grant")
def grant(
    user: str,
    role: Role,
    branches: Branches = None,
    project: Project = None,
    uri: Uri = None,
    json: Json = False,
) -> None:
    """Give USER the ROLE on the branches matching --branches (or of --project)."""
    with connected(uri, json=json) as client:
        made = client.access.grant(user, role, branches, project=project)
    emit(made if json else f"granted {role} on {_where(branches, project)} to {user}", json=json)


@app.command("revoke")
def revoke(
    user: str,
    role: Role,
    branches: Branches = None,
    project: Project = None,
    uri: Uri = None,
    json: Json = False,
) -> None:
    """Take back a grant."""
    with connected(uri, json=json) as client:
        gone = client.access.revoke(user, role, branches, project=project)
    where = _where(branches, project)
    message = f"revoked {role} on {where} from {user}" if gone else "no such grant"
    emit({"revoked": gone} if json else message, json=json)


@app.command("list")
def list_(
    user: Annotated[str | None, typer.Option(help="Only this user's grants.")] = None,
    uri: Uri = None,
    json: Json = False,
) -> None:
    """List grants."""
    with connected(uri, json=json) as client:
        grants = client.access.list(user)
    if json:
        emit(grants, json=True)
        return
    table = make_table("user", "role", "branches")
    for g in grants:
        add_row(table, g.user, g.role, _where(g.branches, g.project))
    emit(table, json=False)
