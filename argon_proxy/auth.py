"""Authentication of one client connection, answered by Argon itself.

Theory of operation: ``saslStart``, ``saslContinue``, ``logout`` and
``connectionStatus`` never reach the upstream: a pooled upstream connection
serves many clients, so a client authenticating there would lend its rights
to all of them. Argon runs the SCRAM conversation (``scram.py``) against its
own users (``users.py``) and remembers who the connection is (one user per
connection, as mongod since 5.0). With ``auth`` on, every other command but
the handshake, ``ping`` and ``buildInfo`` answers 13 Unauthorized until then,
as mongod does; with it off, authenticating still works (and names the user
in the WAL), as on a mongod without ``--auth``.

The localhost exception: while no user exists, a client on a loopback
address may run the admin action ``createUser`` unauthenticated, to create
the first one (mongod's rule too).

Failures answer as mongod: 18 AuthenticationFailed with a message that does
not say whether the user or the password was wrong.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from bson import Binary

from .errors import (
    AUTHENTICATION_FAILED,
    MECHANISM_UNAVAILABLE,
    PROTOCOL_ERROR,
    UNAUTHORIZED,
    ArgonError,
)
from .scram import MECHANISMS, ClientFirst, Conversation, ScramError, parse_client_first
from .users import UserStore

log = logging.getLogger("argon.auth")

AUTH_COMMANDS = frozenset({"saslStart", "saslContinue", "logout", "connectionStatus"})
# What an unauthenticated client may run (besides the handshake), as on mongod.
OPEN_COMMANDS = AUTH_COMMANDS | {"ping", "buildInfo", "buildinfo"}


def _failed() -> ArgonError:
    return ArgonError(AUTHENTICATION_FAILED, "Authentication failed.")


@dataclass
class ConnectionAuth:
    """Who one client connection is, and its SASL conversation in progress."""

    users: UserStore
    required: bool  # the ``auth`` setting
    loopback: bool  # the client connected from a loopback address
    user: str | None = None
    admin: bool = False  # the user is an administrator (looked up when it logs in)
    _conversation: Conversation | None = None
    _skip_empty: bool = False
    _awaiting_empty: bool = False

    @property
    def checked(self) -> bool:
        """Whether the connection's requests pass access control (access.py): auth
        is on and someone authenticated (until then only ``OPEN_COMMANDS`` and the
        first user's creation get through)."""
        return self.required and self.user is not None

    @property
    def restricted(self) -> bool:
        """Whether even main's reads must go through the engine's access checks."""
        return self.checked and not self.admin

    def refuses(self, name: str) -> bool:
        """Whether command ``name`` must be refused until the client authenticates."""
        return self.required and self.user is None and name not in OPEN_COMMANDS

    def unauthorized(self, name: str) -> ArgonError:
        return ArgonError(UNAUTHORIZED, f"command {name} requires authentication")

    async def may_bootstrap(self) -> bool:
        """The localhost exception: loopback, and no user exists yet."""
        return self.loopback and not await self.users.any()

    async def answer(self, name: str, cmd: dict[str, Any]) -> dict[str, Any]:
        """The reply to one of ``AUTH_COMMANDS`` (raises ``ArgonError`` on failure)."""
        if name == "saslStart":
            return await self._start(cmd)
        if name == "saslContinue":
            reply = self._continue(cmd)
            if self.user is not None:
                self.admin = await self.users.is_admin(self.user)
            return reply
        if name == "logout":
            self.user, self._conversation, self.admin = None, None, False
            return {"ok": 1.0}
        return self._status()

    async def _start(self, cmd: dict[str, Any]) -> dict[str, Any]:
        mechanism = cmd.get("mechanism")
        if mechanism not in MECHANISMS:
            raise ArgonError(
                MECHANISM_UNAVAILABLE,
                f"Received authentication for mechanism {mechanism} which is not enabled; "
                f"Argon accepts {' and '.join(MECHANISMS)}",
            )
        if self.user is not None:
            raise ArgonError(
                PROTOCOL_ERROR,
                f"This connection is already authenticated as {self.user!r}: each "
                "connection authenticates one user (open another one)",
            )
        first = self._first(cmd)
        credential = await self.users.credential(first.username, str(mechanism))
        if credential is None:
            log.info("authentication of unknown user %r refused", first.username)
            raise _failed()
        self._conversation = Conversation(first, credential)
        options = cmd.get("options")
        self._skip_empty = isinstance(options, dict) and bool(options.get("skipEmptyExchange"))
        self._awaiting_empty = False
        return {
            "conversationId": 1,
            "done": False,
            "payload": Binary(self._conversation.server_first()),
            "ok": 1.0,
        }

    def _first(self, cmd: dict[str, Any]) -> ClientFirst:
        try:
            return parse_client_first(bytes(cmd.get("payload") or b""))
        except ScramError as exc:
            raise ArgonError(AUTHENTICATION_FAILED, f"Authentication failed: {exc}") from None

    def _continue(self, cmd: dict[str, Any]) -> dict[str, Any]:
        conversation = self._conversation
        if conversation is None or cmd.get("conversationId") not in (1, None):
            raise ArgonError(PROTOCOL_ERROR, "No SASL session state found")
        if self._awaiting_empty:  # the client's empty message ends the exchange
            self._conversation, self._awaiting_empty = None, False
            self.user = conversation.first.username
            return {"conversationId": 1, "done": True, "payload": Binary(b""), "ok": 1.0}
        try:
            final = conversation.client_final(bytes(cmd.get("payload") or b""))
        except ScramError as exc:
            self._conversation = None
            log.info("authentication of %r refused: %s", conversation.first.username, exc)
            raise _failed() from None
        if self._skip_empty:
            self._conversation = None
            self.user = conversation.first.username
            log.info("authenticated as %r", self.user)
        else:
            self._awaiting_empty = True
        return {"conversationId": 1, "done": self._skip_empty, "payload": Binary(final), "ok": 1.0}

    def _status(self) -> dict[str, Any]:
        users = [{"user": self.user, "db": "admin"}] if self.user else []
        return {
            "authInfo": {"authenticatedUsers": users, "authenticatedUserRoles": []},
            "ok": 1.0,
        }
