"""Clients reach Argon over TLS: pymongo, mongosh and the Node driver; client
certificates when Argon requires them; plain clients are turned away."""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from pymongo import MongoClient
from pymongo.errors import ServerSelectionTimeoutError

from argon_proxy.config import ConfigError, Settings
from argon_proxy.listener_tls import server_context

from ..processes import CLIENTS, Process, start_proxy
from .test_clients import MONGOSH, needs_node

Client = MongoClient[dict[str, object]]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    files = tmp_path_factory.mktemp("client-tls")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(files / "argon.crt"))
    server.private_key_pem.write_to_path(str(files / "argon.key"))
    ca.cert_pem.write_to_path(str(files / "ca.pem"))
    ca.issue_cert("app").private_key_and_cert_chain_pem.write_to_path(str(files / "app.pem"))
    return files


@pytest.fixture(scope="module")
def tls_proxy(upstream: Process, certs: Path) -> Iterator[Process]:
    env = {
        "ARGON_TLS_CERT_FILE": str(certs / "argon.crt"),
        "ARGON_TLS_KEY_FILE": str(certs / "argon.key"),
    }
    proxy = start_proxy(upstream.uri, env=env)
    yield proxy
    proxy.stop()


def _tls_uri(proxy: Process, certs: Path, **extra: str) -> str:
    options = {"tls": "true", "tlsCAFile": str(certs / "ca.pem"), **extra}
    return f"mongodb://127.0.0.1:{proxy.port}/?" + "&".join(f"{k}={v}" for k, v in options.items())


def test_pymongo_over_tls_on_main_and_a_branch(tls_proxy: Process, certs: Path) -> None:
    client: Client = MongoClient(_tls_uri(tls_proxy, certs))
    try:
        client.tls_db.c.drop()
        client.tls_db.c.insert_one({"_id": 1, "v": "main"})
        client.admin.command({"argon": "createBranch", "name": "tls-exp"})
        client["tls_db@tls-exp"].c.update_one({"_id": 1}, {"$set": {"v": "branch"}})
        assert client["tls_db@tls-exp"].c.find_one() == {"_id": 1, "v": "branch"}
        assert client.tls_db.c.find_one() == {"_id": 1, "v": "main"}
    finally:
        client.admin.command({"argon": "deleteBranch", "name": "tls-exp"})
        client.close()


def test_a_plain_client_is_turned_away(tls_proxy: Process, certs: Path) -> None:
    plain: Client = MongoClient(tls_proxy.uri, serverSelectionTimeoutMS=1500)
    with pytest.raises(ServerSelectionTimeoutError):
        plain.admin.command("ping")
    plain.close()
    secured: Client = MongoClient(_tls_uri(tls_proxy, certs))
    assert secured.admin.command("ping")["ok"] == 1  # the listener is unharmed
    secured.close()
    assert "TLS handshake failed" in tls_proxy.log()


@needs_node
def test_mongosh_over_tls(tls_proxy: Process, certs: Path) -> None:
    script = "const c = db.getSiblingDB('tls_sh').c; c.insertOne({n: 1}); print(c.countDocuments())"
    done = subprocess.run(
        [
            str(MONGOSH),
            f"mongodb://127.0.0.1:{tls_proxy.port}/",
            "--tls",
            "--tlsCAFile",
            str(certs / "ca.pem"),
            "--quiet",
            "--norc",
            "--eval",
            script,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip().splitlines()[-1]) >= 1


@needs_node
def test_node_driver_over_tls(tls_proxy: Process, certs: Path) -> None:
    script = textwrap.dedent(
        f"""
        const {{ MongoClient }} = require('mongodb');
        (async () => {{
          const client = new MongoClient('{_tls_uri(tls_proxy, certs)}');
          const coll = client.db('tls_node').collection('c');
          await coll.deleteMany({{}});
          await coll.insertMany([{{ i: 1 }}, {{ i: 2 }}]);
          console.log(JSON.stringify({{ n: await coll.countDocuments({{}}) }}));
          await client.close();
        }})().catch((e) => {{ console.error(e); process.exit(1); }});
        """
    )
    done = subprocess.run(
        ["node", "-e", script], capture_output=True, text=True, timeout=120, cwd=CLIENTS.parent
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"n": 2}


def test_client_certificates_when_required(upstream: Process, certs: Path) -> None:
    env = {
        "ARGON_TLS_CERT_FILE": str(certs / "argon.crt"),
        "ARGON_TLS_KEY_FILE": str(certs / "argon.key"),
        "ARGON_TLS_CA_FILE": str(certs / "ca.pem"),
        "ARGON_TLS_REQUIRE_CLIENT_CERT": "true",
    }
    proxy = start_proxy(upstream.uri, env=env)
    try:
        anonymous: Client = MongoClient(_tls_uri(proxy, certs), serverSelectionTimeoutMS=1500)
        with pytest.raises(ServerSelectionTimeoutError):
            anonymous.admin.command("ping")
        anonymous.close()
        known: Client = MongoClient(
            _tls_uri(proxy, certs, tlsCertificateKeyFile=str(certs / "app.pem"))
        )
        assert known.admin.command("ping")["ok"] == 1
        known.close()
    finally:
        proxy.stop()


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"tls_cert_file": "/nonexistent/argon.crt"}, "No such file"),
        ({"tls_ca_file": "ca.pem"}, "need tls_cert_file"),
        ({"tls_require_client_cert": True}, "need tls_cert_file"),
    ],
)
def test_unusable_tls_settings_are_refused(settings: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        server_context(Settings(**settings))  # type: ignore[arg-type]


def test_client_certificates_need_their_ca(certs: Path) -> None:
    settings = Settings(
        tls_cert_file=str(certs / "argon.crt"),
        tls_key_file=str(certs / "argon.key"),
        tls_require_client_cert=True,
    )
    with pytest.raises(ConfigError, match="needs tls_ca_file"):
        server_context(settings)
