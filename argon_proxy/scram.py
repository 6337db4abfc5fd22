"""SCRAM-SHA-256 and SCRAM-SHA-1 as a server (RFC 5802, RFC 7677), as mongod speaks them.

Theory of operation: a user's password is never stored. ``derive`` turns it
into what the server keeps per mechanism (salt, iteration count, StoredKey =
H(ClientKey), ServerKey), mongod's way: SCRAM-SHA-256 salts the SASLprepped
password, SCRAM-SHA-1 the hex MD5 of ``user:mongo:password`` (so drivers that
speak SHA-1 can log in). A conversation is two messages from the client:

1. ``n,,n=USER,r=CNONCE`` (``parse_client_first``), answered with
   ``r=CNONCE+SNONCE,s=SALT,i=ITERATIONS`` (``Conversation.server_first``);
2. ``c=biws,r=NONCE,p=PROOF`` (``Conversation.client_final``): the proof
   XORed with HMAC(StoredKey, AuthMessage) must hash to StoredKey. The
   answer is ``v=`` HMAC(ServerKey, AuthMessage), which proves to the client
   that the server knew the password's keys too.

No I/O here: ``auth.py`` runs conversations over ``saslStart`` and
``saslContinue``. Comparisons of secrets are constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from pymongo.auth_shared import _password_digest
from pymongo.saslprep import saslprep

MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1")
_DIGEST = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-1": "sha1"}
_ITERATIONS = {"SCRAM-SHA-256": 15000, "SCRAM-SHA-1": 10000}  # mongod's defaults
_GS2_HEADER = "n,,"  # no channel binding, no authorization identity


class ScramError(Exception):
    """The client's message is malformed or its proof is wrong."""


@dataclass(frozen=True, slots=True)
class StoredCredential:
    """What the server keeps of one user's password for one mechanism."""

    mechanism: str
    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    def to_doc(self) -> dict[str, Any]:
        return {
            "iterationCount": self.iterations,
            "salt": base64.b64encode(self.salt).decode(),
            "storedKey": base64.b64encode(self.stored_key).decode(),
            "serverKey": base64.b64encode(self.server_key).decode(),
        }

    @classmethod
    def from_doc(cls, mechanism: str, doc: dict[str, Any]) -> StoredCredential:
        return cls(
            mechanism,
            int(doc["iterationCount"]),
            base64.b64decode(doc["salt"]),
            base64.b64decode(doc["storedKey"]),
            base64.b64decode(doc["serverKey"]),
        )


def derive(mechanism: str, username: str, password: str) -> StoredCredential:
    """The stored form of ``password`` for ``mechanism``, with a fresh salt."""
    salt = secrets.token_bytes(28 if mechanism == "SCRAM-SHA-256" else 16)
    return _keys(mechanism, username, password, salt, _ITERATIONS[mechanism])


def matches(credential: StoredCredential, username: str, password: str) -> bool:
    """Whether ``password`` is the one ``credential`` was derived from (for a
    login outside the wire protocol, such as the console's)."""
    again = _keys(credential.mechanism, username, password, credential.salt, credential.iterations)
    return hmac.compare_digest(again.stored_key, credential.stored_key)


def _keys(
    mechanism: str, username: str, password: str, salt: bytes, iterations: int
) -> StoredCredential:
    digest = _DIGEST[mechanism]
    if mechanism == "SCRAM-SHA-256":
        secret = saslprep(password).encode()
    else:
        secret = _password_digest(username, password).encode()
    salted = hashlib.pbkdf2_hmac(digest, secret, salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", digest)
    server_key = hmac.digest(salted, b"Server Key", digest)
    stored_key = hashlib.new(digest, client_key).digest()
    return StoredCredential(mechanism, iterations, salt, stored_key, server_key)


@dataclass(frozen=True, slots=True)
class ClientFirst:
    """The client's first message: who it claims to be and its nonce."""

    username: str
    nonce: str
    bare: str  # the message without its GS2 header, part of the AuthMessage


def parse_client_first(payload: bytes) -> ClientFirst:
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        raise ScramError("the SCRAM message is not UTF-8") from None
    if not text.startswith(_GS2_HEADER):
        raise ScramError("SCRAM channel binding and authorization identities are not supported")
    bare = text[len(_GS2_HEADER) :]
    fields = _fields(bare)
    if "n" not in fields or "r" not in fields or not fields["r"]:
        raise ScramError("the first SCRAM message lacks the user name or the nonce")
    username = fields["n"].replace("=2C", ",").replace("=3D", "=")
    return ClientFirst(username, fields["r"], bare)


class Conversation:
    """The server side of one SCRAM conversation, after the client's first message."""

    def __init__(self, first: ClientFirst, credential: StoredCredential) -> None:
        self.first = first
        self.credential = credential
        self.nonce = first.nonce + base64.b64encode(secrets.token_bytes(24)).decode()
        salt = base64.b64encode(credential.salt).decode()
        self._server_first = f"r={self.nonce},s={salt},i={credential.iterations}"

    def server_first(self) -> bytes:
        return self._server_first.encode()

    def client_final(self, payload: bytes) -> bytes:
        """Check the client's proof; returns the server's final message (``v=``)."""
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            raise ScramError("the SCRAM message is not UTF-8") from None
        without_proof, _, proof_field = text.rpartition(",p=")
        fields = _fields(without_proof)
        if not proof_field or fields.get("r") != self.nonce or fields.get("c") != "biws":
            raise ScramError("the final SCRAM message does not continue this conversation")
        try:
            proof = base64.b64decode(proof_field, validate=True)
        except ValueError:
            raise ScramError("the SCRAM proof is not base64") from None
        digest = _DIGEST[self.credential.mechanism]
        auth_message = f"{self.first.bare},{self._server_first},{without_proof}".encode()
        signature = hmac.digest(self.credential.stored_key, auth_message, digest)
        if len(proof) != len(signature):
            raise ScramError("the SCRAM proof has the wrong length")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(
            hashlib.new(digest, client_key).digest(), self.credential.stored_key
        ):
            raise ScramError("wrong password")
        verifier = hmac.digest(self.credential.server_key, auth_message, digest)
        return b"v=" + base64.b64encode(verifier)


def _fields(message: str) -> dict[str, str]:
    """``a=1,b=2`` as a mapping; values may hold ``=`` (base64)."""
    out: dict[str, str] = {}
    for part in message.split(","):
        key, sep, value = part.partition("=")
        if not sep or len(key) != 1:
            raise ScramError(f"malformed SCRAM attribute {part!r}")
        out.setdefault(key, value)
    return out
