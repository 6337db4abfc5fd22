"""Argon's own users: who may connect when authentication is on.

Theory of operation: users live in ``__argon.users``, one document per user
(``_id`` the name), holding for each SCRAM mechanism only what the server side
of the conversation needs (``scram.StoredCredential``), never the password.
Users are Argon-wide: a client may authenticate against any database
(``authSource``), as every Argon user reaches every branch it is allowed to.
The admin actions ``createUser``, ``updateUser``, ``dropUser`` and
``listUsers`` manage them; the CLI's ``argon user`` commands send those.
"""

from __future__ import annotations

from typing import Any

import trio

from .catalog import now
from .dbclient import CommandError, DbClient
from .errors import BAD_VALUE, USER_EXISTS, USER_NOT_FOUND, ArgonError
from .naming import INTERNAL_DB
from .scram import MECHANISMS, StoredCredential, derive
from .write_context import DUPLICATE_KEY

USERS = "users"


class UserStore:
    """The users collection, read and written through Argon's upstream client."""

    def __init__(self, db: DbClient) -> None:
        self.db = db

    async def credential(self, name: str, mechanism: str) -> StoredCredential | None:
        """What ``name`` authenticates with under ``mechanism``, or None."""
        found = await self.db.find(INTERNAL_DB, USERS, {"_id": name}, limit=1)
        stored = found[0].get("credentials", {}).get(mechanism) if found else None
        return StoredCredential.from_doc(mechanism, stored) if stored else None

    async def mechanisms(self, name: str) -> list[str]:
        """The mechanisms ``name`` can use (empty if there is no such user)."""
        found = await self.db.find(INTERNAL_DB, USERS, {"_id": name}, limit=1)
        held = found[0].get("credentials", {}) if found else {}
        return [m for m in MECHANISMS if m in held]

    async def any(self) -> bool:
        """Whether any user exists (none: the first may be created from loopback)."""
        return bool(await self.db.find(INTERNAL_DB, USERS, {}, limit=1))

    async def is_admin(self, name: str) -> bool:
        """Whether ``name`` is an administrator (may do everything: access.py)."""
        found = await self.db.find(INTERNAL_DB, USERS, {"_id": name}, limit=1)
        return bool(found and found[0].get("admin"))

    async def create(self, name: str, password: str, *, admin: bool = False) -> None:
        """Create a user; the first user of all is an administrator whatever ``admin`` says."""
        credentials = await _credentials(name, password)
        admin = admin or not await self.any()
        doc = {"_id": _name(name), "credentials": credentials, "created": now(), "admin": admin}
        try:
            await self.db.command(INTERNAL_DB, {"insert": USERS, "documents": [doc]})
        except CommandError as exc:
            if exc.code != DUPLICATE_KEY:  # mongod's, on the users collection's _id
                raise
            raise ArgonError(USER_EXISTS, f"User {name!r} already exists") from None

    async def set_password(self, name: str, password: str) -> None:
        credentials = await _credentials(name, password)
        update = {"q": {"_id": name}, "u": {"$set": {"credentials": credentials}}}
        reply = await self.db.command(INTERNAL_DB, {"update": USERS, "updates": [update]})
        if not reply.get("n"):
            raise ArgonError(USER_NOT_FOUND, f"User {name!r} not found")

    async def drop(self, name: str) -> None:
        delete = {"q": {"_id": name}, "limit": 1}
        reply = await self.db.command(INTERNAL_DB, {"delete": USERS, "deletes": [delete]})
        if not reply.get("n"):
            raise ArgonError(USER_NOT_FOUND, f"User {name!r} not found")

    async def names(self) -> list[dict[str, Any]]:
        docs = await self.db.find(INTERNAL_DB, USERS, {}, projection={"credentials": 0})
        return [
            {
                "user": d["_id"],
                "created": d.get("created"),
                "admin": bool(d.get("admin")),
                "mechanisms": list(MECHANISMS),
            }
            for d in sorted(docs, key=lambda d: str(d["_id"]))
        ]

    # -- admin actions -----------------------------------------------------------

    async def create_action(self, cmd: dict[str, Any]) -> dict[str, Any]:
        admin = bool(cmd.get("admin", False))
        await self.create(_required(cmd, "name"), _required(cmd, "password"), admin=admin)
        return {"user": cmd["name"], "admin": await self.is_admin(cmd["name"])}

    async def update_action(self, cmd: dict[str, Any]) -> dict[str, Any]:
        await self.set_password(_required(cmd, "name"), _required(cmd, "password"))
        return {"user": cmd["name"]}

    async def drop_action(self, cmd: dict[str, Any]) -> dict[str, Any]:
        await self.drop(_required(cmd, "name"))
        return {"user": cmd["name"]}

    async def list_action(self, cmd: dict[str, Any]) -> dict[str, Any]:
        return {"users": await self.names()}


def _required(cmd: dict[str, Any], key: str) -> str:
    value = cmd.get(key)
    if not isinstance(value, str) or not value:
        raise ArgonError(BAD_VALUE, f"argon {cmd.get('argon')}: {key!r} must be a non-empty string")
    return value


def _name(name: str) -> str:
    if len(name) > 256 or any(c in name for c in "\x00"):
        raise ArgonError(BAD_VALUE, f"invalid user name {name!r}")
    return name


async def _credentials(name: str, password: str) -> dict[str, Any]:
    """The stored form of the password for every mechanism (key stretching runs in a
    worker thread: it takes tens of milliseconds by design)."""
    out = {}
    for mechanism in MECHANISMS:
        try:
            stored = await trio.to_thread.run_sync(derive, mechanism, name, password)
        except ValueError as exc:  # SASLprep refuses unassigned and prohibited characters
            raise ArgonError(BAD_VALUE, f"the password cannot be used: {exc}") from None
        out[mechanism] = stored.to_doc()
    return out
