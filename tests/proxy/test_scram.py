"""The server side of SCRAM against a client written from RFC 5802 here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo.auth_shared import _password_digest
from pymongo.saslprep import saslprep

from argon_proxy.scram import (
    MECHANISMS,
    Conversation,
    ScramError,
    StoredCredential,
    derive,
    parse_client_first,
)

_DIGEST = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-1": "sha1"}


def _preparable(password: str) -> bool:
    """Whether SASLprep accepts it (it refuses unassigned and prohibited code points)."""
    try:
        saslprep(password)
    except ValueError:
        return False
    return True


names = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=12)
passwords = st.text(
    st.characters(exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1
).filter(_preparable)


def _client(mechanism: str, user: str, password: str, server: Conversation) -> tuple[bytes, bytes]:
    """The client's final message and the server signature it expects."""
    nonce = server.first.nonce
    server_first = server.server_first().decode()
    fields = dict(part.split("=", 1) for part in server_first.split(","))
    assert fields["r"].startswith(nonce)
    digest = _DIGEST[mechanism]
    secret = (
        saslprep(password) if mechanism == "SCRAM-SHA-256" else _password_digest(user, password)
    )
    salted = hashlib.pbkdf2_hmac(
        digest, secret.encode(), base64.b64decode(fields["s"]), int(fields["i"])
    )
    client_key = hmac.digest(salted, b"Client Key", digest)
    stored = hashlib.new(digest, client_key).digest()
    without_proof = f"c=biws,r={fields['r']}"
    auth_message = f"{server.first.bare},{server_first},{without_proof}".encode()
    signature = hmac.digest(stored, auth_message, digest)
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    final = f"{without_proof},p={base64.b64encode(proof).decode()}".encode()
    server_key = hmac.digest(salted, b"Server Key", digest)
    return final, b"v=" + base64.b64encode(hmac.digest(server_key, auth_message, digest))


def _first(user: str) -> bytes:
    escaped = user.replace("=", "=3D").replace(",", "=2C")
    return f"n,,n={escaped},r={secrets.token_hex(12)}".encode()


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(MECHANISMS), names, passwords)
def test_the_right_password_is_accepted_and_proves_the_server(
    mechanism: str, user: str, password: str
) -> None:
    stored = derive(mechanism, user, password)
    assert StoredCredential.from_doc(mechanism, stored.to_doc()) == stored
    first = parse_client_first(_first(user))
    assert first.username == user
    server = Conversation(first, stored)
    final, expected = _client(mechanism, user, password, server)
    assert server.client_final(final) == expected


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_a_wrong_password_or_a_foreign_nonce_is_refused(mechanism: str) -> None:
    stored = derive(mechanism, "alice", "right")
    server = Conversation(parse_client_first(_first("alice")), stored)
    final, _ = _client(mechanism, "alice", "wrong", server)
    with pytest.raises(ScramError, match="wrong password"):
        server.client_final(final)
    other = Conversation(parse_client_first(_first("alice")), stored)
    final, _ = _client(mechanism, "alice", "right", other)
    with pytest.raises(ScramError):
        server.client_final(final)  # another conversation's nonce


def test_a_password_saslprep_refuses_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="SASLprep"):
        derive("SCRAM-SHA-256", "alice", "\ua4c7")


@pytest.mark.parametrize(
    "payload", [b"", b"y,,n=a,r=x", b"n,,r=x", b"n,,n=a", b"\xff", b"n,,n=a,r=x,bad"]
)
def test_malformed_first_messages_are_refused(payload: bytes) -> None:
    with pytest.raises(ScramError):
        parse_client_first(payload)
