"""``client.users``: the users clients authenticate as when Argon runs with ``auth``."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING

from .models import User

if TYPE_CHECKING:
    from .client import Client


class Users:
    """Argon's users (SCRAM-SHA-256 and SHA-1; passwords are never stored)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(self, name: str, password: str, *, admin: bool = False) -> None:
        """Create a user; ``admin`` ones may do everything. The first user, which may be
        created unauthenticated from the proxy's machine, is always an administrator."""
        self._client.command("createUser", {"name": name, "password": password, "admin": admin})

    def set_password(self, name: str, password: str) -> None:
        """Change a user's password; connections already open stay authenticated."""
        self._client.command("updateUser", {"name": name, "password": password})

    def delete(self, name: str) -> None:
        """Delete a user."""
        self._client.command("dropUser", {"name": name})

    def list(self) -> builtins.list[User]:
        """Every user, by name."""
        return [User.from_doc(d) for d in self._client.command("listUsers").get("users", [])]
