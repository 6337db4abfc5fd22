"""Reading the upstream's connection string: what Argon takes from it, what it refuses."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from argon_proxy.upstream_target import Address, parse_target, redacted


def test_seeds_credentials_and_options() -> None:
    target = parse_target(
        "mongodb://ops%40corp:p%3Aw@db1:27018,db2/shop?authSource=admin&replicaSet=rs0"
        "&connectTimeoutMS=2500"
    )
    assert target.seeds == (Address("db1", 27018), Address("db2", 27017))
    assert target.credential is not None
    assert (target.credential.username, target.credential.password) == ("ops@corp", "p:w")
    assert (target.credential.source, target.credential.mechanism) == ("admin", "DEFAULT")
    assert target.replica_set == "rs0" and target.discovers and not target.direct
    assert target.connect_timeout == 2.5
    assert target.tls is None
    assert str(target) == "db1:27018,db2:27017"


def test_one_host_is_used_directly() -> None:
    target = parse_target("mongodb://127.0.0.1:5/?directConnection=true")
    assert target.seeds == (Address("127.0.0.1", 5),) and not target.discovers
    assert target.credential is None
    assert not parse_target("mongodb://[::1]:7").discovers
    assert str(parse_target("mongodb://[::1]:7")) == "[::1]:7"


def test_tls_options_make_a_verifying_context(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    strict = parse_target(f"mongodb://h/?tls=true&tlsCAFile={tmp_path / 'ca.pem'}").tls
    assert strict is not None
    assert strict.verify_mode == ssl.CERT_REQUIRED and strict.check_hostname
    lax = parse_target("mongodb://h/?tls=true&tlsAllowInvalidHostnames=true").tls
    assert lax is not None and not lax.check_hostname and lax.verify_mode == ssl.CERT_REQUIRED
    insecure = parse_target("mongodb://h/?ssl=true&tlsInsecure=true").tls
    assert insecure is not None and insecure.verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("mongodb://h/?readPreference=secondary", "readpreference"),
        ("mongodb://h/?loadBalanced=true", "loadbalanced"),
        ("mongodb://h/?connectTimeoutMs=x", "(?i)connectTimeoutMS"),
        ("mongodb://h/?retryWritez=true", "(?i)unknown option: retryWritez"),
        ("mongodb://u:p@h/?authMechanism=GSSAPI", "GSSAPI"),
        ("mongodb://h/?tls=true&tlsCAFile=/nonexistent/ca.pem", "ca.pem"),
        ("http://h", "mongodb"),
    ],
)
def test_what_argon_cannot_honour_is_refused(uri: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_target(uri)


def test_primary_read_preference_is_accepted() -> None:
    assert parse_target("mongodb://h/?readPreference=primary").seeds == (Address("h", 27017),)


def test_passwords_are_masked() -> None:
    assert redacted("mongodb://u:secret@h:1/db") == "mongodb://u:***@h:1/db"
    assert redacted("mongodb+srv://u@cluster.example/") == "mongodb+srv://u@cluster.example/"
    assert redacted("mongodb://h:1/?x=a@b") == "mongodb://h:1/?x=a@b"
