"""Argon in front of a real deployment: an upstream with authentication and TLS
(client certificates required), and a seed list, through real clients."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from pymongo import MongoClient

from tests.processes import ROOT, Process, free_port, start_proxy, start_upstream

Client = MongoClient[dict[str, object]]
USER, PASSWORD = "argon", "s3cret:/@"  # URI-reserved characters, percent-encoded below
QUOTED_PASSWORD = "s3cret%3A%2F%40"


@dataclass
class Secured:
    """An upstream that requires SCRAM authentication and TLS with client certificates."""

    process: Process
    files: Path

    def uri(self, *, credentials: str = f"{USER}:{QUOTED_PASSWORD}@", **options: str) -> str:
        tls = {
            "tls": "true",
            "tlsCAFile": str(self.files / "ca.pem"),
            "tlsCertificateKeyFile": str(self.files / "client.pem"),
        }
        query = "&".join(f"{k}={v}" for k, v in {**tls, **options}.items() if v)
        return f"mongodb://{credentials}127.0.0.1:{self.process.port}/?{query}"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    files = tmp_path_factory.mktemp("secured")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(files / "server.crt"))
    server.private_key_pem.write_to_path(str(files / "server.key"))
    ca.cert_pem.write_to_path(str(files / "ca.pem"))
    ca.issue_cert("argon").private_key_and_cert_chain_pem.write_to_path(str(files / "client.pem"))
    other_ca = trustme.CA()  # a CA the upstream's certificate does not come from
    other_ca.cert_pem.write_to_path(str(files / "other-ca.pem"))
    storage = str(files / "data")
    # Users are created before authentication is turned on, as SecantusDB documents.
    plain = start_upstream(storage=storage)
    try:
        setup: Client = MongoClient(plain.uri)
        setup.admin.command("createUser", USER, pwd=PASSWORD, roles=["root"])
        setup.close()
    finally:
        plain.stop()
    tls_args = [
        "--tls-cert-file",
        str(files / "server.crt"),
        "--tls-key-file",
        str(files / "server.key"),
        "--tls-ca-file",
        str(files / "ca.pem"),
        "--tls-require-client-cert",
    ]
    ready = Secured(plain, files).uri().replace(str(plain.port), "{port}")
    process = start_upstream(storage=storage, args=["--auth", *tls_args], ready_uri=ready)
    try:
        yield Secured(process, files)
    finally:
        process.stop()


def test_argon_fronts_an_authenticated_tls_upstream(secured: Secured) -> None:
    argon = start_proxy(secured.uri())
    direct: Client = MongoClient(secured.uri(), directConnection=True)
    client: Client = MongoClient(argon.uri)
    try:
        client.shop.orders.insert_one({"_id": 1, "total": 10})
        client.admin.command({"argon": "createBranch", "name": "exp"})
        client["shop@exp"].orders.update_one({"_id": 1}, {"$set": {"total": 99}})
        client["shop@exp"].orders.insert_one({"_id": 2, "total": 5})
        assert client["shop@exp"].orders.find_one({"_id": 1}) == {"_id": 1, "total": 99}
        assert client.shop.orders.find_one({"_id": 1}) == {"_id": 1, "total": 10}
        assert direct.shop.orders.count_documents({}) == 1  # main is the real data
        log = client.admin.command({"argon": "log", "branch": "exp"})
        assert log["ok"] == 1
    finally:
        client.close()
        direct.close()
        argon.stop()
    assert PASSWORD not in argon.log() and QUOTED_PASSWORD not in argon.log()


def _serve_once(uri: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`argon serve` against ``uri``, which must stop by itself."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "argon_proxy",
            "serve",
            "--port",
            str(free_port()),
            "--metrics-port",
            "0",
            "--console-port",
            "0",
            "--upstream",
            uri,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("argon serve: ")]
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_wrong_password_stops_argon_with_a_clear_error(secured: Secured) -> None:
    result = _serve_once(secured.uri(credentials=f"{USER}:wrong@"))
    line = _one_line(result)
    assert "refused Argon's credentials" in line and f"'{USER}'" in line, line
    assert "wrong" not in result.stderr


def test_no_credentials_stops_argon_with_a_clear_error(secured: Secured) -> None:
    line = _one_line(_serve_once(secured.uri(credentials="")))
    assert "requires authentication" in line and "credentials" in line, line


def test_an_untrusted_upstream_certificate_stops_argon(secured: Secured) -> None:
    uri = secured.uri(tlsCAFile=str(secured.files / "other-ca.pem"))
    line = _one_line(_serve_once(uri))
    assert "certificate" in line and "tlsCAFile" in line, line


def test_a_seed_list_with_a_dead_host_finds_the_primary(upstream: Process) -> None:
    dead = free_port()  # nothing listens there
    argon = start_proxy(f"mongodb://127.0.0.1:{dead},127.0.0.1:{upstream.port}/")
    client: Client = MongoClient(argon.uri)
    try:
        client.seeds.c.insert_one({"_id": "seen"})
        assert client.seeds.c.find_one() == {"_id": "seen"}
        status = client.admin.command({"argon": "status"})
        assert f"127.0.0.1:{upstream.port}" in str(status.get("upstream"))
    finally:
        client.seeds.c.drop()
        client.close()
        argon.stop()
