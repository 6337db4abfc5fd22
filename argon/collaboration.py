"""Team workflows: ``BranchManager`` creates personal and integration branches."""

from __future__ import annotations

from .branch import Branch
from .client import Client
from .defaults import default_client


class BranchManager:
    """Branch operations for a team, on ``client`` (default: ``argon.default_client()``)."""

    def __init__(self, client: Client | None = None) -> None:
        self.client = client or default_client()

    def create_branch(
        self, name: str, from_branch: str = "main", description: str | None = None
    ) -> Branch:
        """Create branch ``name`` (for example ``churn/alice``) with a description."""
        return Branch.create(name, from_branch, description=description, client=self.client)

    def get_branch(self, name: str) -> Branch:
        """An existing branch."""
        return Branch(name, self.client)

    def list_branches(self) -> list[Branch]:
        """Every (unarchived) branch as a ``Branch``."""
        return [Branch.from_info(info, self.client) for info in self.client.branches.list()]

    def grant_access(self, branch: str, user: str, level: str) -> None:
        """Give ``user`` the role ``level`` on ``branch`` (a name or a pattern)."""
        self.client.access.grant(user, level, branch)
