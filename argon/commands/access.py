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
    str, typer.Option("--branches", "-b", help="Branch name or pattern (exp/*, main, *).")
]


@app.command("grant")
def grant(user: str, role: Role, branches: Branches, uri: Uri = None, json: Json = False) -> None:
    """Give USER the ROLE on the branches matching --branches."""
    with connected(uri, json=json) as client:
        made = client.access.grant(user, role, branches)
    emit(made if json else f"granted {role} on {branches} to {user}", json=json)


@app.command("revoke")
def revoke(user: str, role: Role, branches: Branches, uri: Uri = None, json: Json = False) -> None:
    """Take back a grant."""
    with connected(uri, json=json) as client:
        gone = client.access.revoke(user, role, branches)
    message = f"revoked {role} on {branches} from {user}" if gone else "no such grant"
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
        add_row(table, g.user, g.role, g.branches)
    emit(table, json=False)
