"""``client.projects``: sets of databases that branches version together."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .models import Project

if TYPE_CHECKING:
    from .client import Client


class Projects:
    """The project actions of one ``Client``."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self, name: str, databases: Iterable[str] | None = None, description: str | None = None
    ) -> Project:
        """A new project covering ``databases`` (default: every database). Branches
        created with ``project=name`` then refuse databases outside it."""
        args = {
            "name": name,
            "databases": None if databases is None else list(databases),
            "description": description,
        }
        return Project.from_doc(self._client.result("createProject", "project", args))

    def list(self) -> builtins.list[Project]:
        """Every project, the implicit ``default`` (every database) first."""
        reply = self._client.command("listProjects")
        return [Project.from_doc(d) for d in reply.get("projects", [])]

    def delete(self, name: str) -> str:
        """Delete a project that no branch belongs to any more."""
        return str(self._client.result("deleteProject", "deleted", {"name": name}))
