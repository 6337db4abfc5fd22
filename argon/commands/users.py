"""``argon user ...``: the users clients authenticate as when Argon runs with ``auth``."""

from __future__ import annotations

from typing import Annotated

import typer

from .output import add_row, emit, fmt_time, make_table
from .session import Json, Uri, connected

app = typer.Typer(help="Users clients authenticate as (SCRAM) when argon serve runs with auth.")

Password = Annotated[
    str,
    typer.Option(
        prompt=True,
        confirmation_prompt=True,
        hide_input=True,
        envvar="ARGON_USER_PASSWORD",
        help="The password (asked for when not given; or ARGON_USER_PASSWORD).",
    ),
]


@app.command("create")
def create(name: str, password: Password, uri: Uri = None, json: Json = False) -> None:
    """Create a user. While none exists, the first may be created from the same machine."""
    with connected(uri, json=json) as client:
        client.users.create(name, password)
    emit({"created": name} if json else f"created user {name}", json=json)


@app.command("passwd")
def passwd(name: str, password: Password, uri: Uri = None, json: Json = False) -> None:
    """Change a user's password."""
    with connected(uri, json=json) as client:
        client.users.set_password(name, password)
    emit({"updated": name} if json else f"changed the password of {name}", json=json)


@app.command("delete")
def delete(name: str, uri: Uri = None, json: Json = False) -> None:
    """Delete a user (connections it has open stay authenticated until they close)."""
    with connected(uri, json=json) as client:
        client.users.delete(name)
    emit({"deleted": name} if json else f"deleted user {name}", json=json)


@app.command("list")
def list_(uri: Uri = None, json: Json = False) -> None:
    """List users."""
    with connected(uri, json=json) as client:
        users = client.users.list()
    if json:
        emit(users, json=True)
        return
    table = make_table("user", "created", "mechanisms")
    for u in users:
        add_row(table, u.name, fmt_time(u.created_at), ", ".join(u.mechanisms))
    emit(table, json=False)
