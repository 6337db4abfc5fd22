"""The client commands of ``argon``: typer sub-apps built on the ``argon`` SDK.

Each module holds one command group (``branch``, ``tag``, ``merge``, ...) or a
few top-level commands (``diff``, ``reset``/``log``/``blame``/``undo``,
``status``/``uri``/``gc``); ``register`` adds them all to the root app next to
``serve``. ``session`` has the shared options and exit codes, ``output`` and
``render`` the printing.
"""

from __future__ import annotations

import typer

from . import (
    access,
    branch,
    diff,
    history,
    merge,
    projects,
    proxy,
    snapshot,
    tag,
    timetravel,
    users,
)


def register(app: typer.Typer) -> None:
    """Add every client command to the root ``argon`` app."""
    app.add_typer(branch.app, name="branch")
    app.add_typer(branch.app, name="branches", help="Same as `argon branch`.")
    app.add_typer(tag.app, name="tag")
    app.add_typer(snapshot.app, name="snapshot")
    app.add_typer(merge.app, name="merge")
    app.add_typer(timetravel.app, name="time-travel")
    app.add_typer(projects.app, name="projects")
    app.add_typer(users.app, name="user")
    app.add_typer(access.app, name="access")
    diff.register(app)
    history.register(app)
    proxy.register(app)
