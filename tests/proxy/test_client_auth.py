"""Clients authenticate at Argon (SCRAM, answered by Argon itself): pymongo with
SCRAM-SHA-256 and SHA-1, mongosh with credentials; 13 until then; one client's
login never lends rights to another sharing the upstream pool."""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure
from typer.testing import CliRunner, Result

from argon_proxy.cli import app

from ..processes import CLIENTS, Process, start_proxy, start_upstream
from .test_clients import MONGOSH, needs_node

Client = MongoClient[dict[str, Any]]
ADMIN, ADMIN_PASSWORD = "root-user", "p@ss:w/rd"


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Process, Process]]:
    """Its own upstream (users live there) and an Argon with auth on, whose first
    user is created through the localhost exception."""
    upstream = start_upstream()
    proxy = start_proxy(upstream.uri, env={"ARGON_AUTH": "true"})
    try:
        anonymous: Client = MongoClient(proxy.uri)
        anonymous.admin.command({"argon": "createUser", "name": ADMIN, "password": ADMIN_PASSWORD})
        anonymous.close()
        yield upstream, proxy
    finally:
        proxy.stop()
        upstream.stop()


def _login(proxy: Process, user: str = ADMIN, password: str = ADMIN_PASSWORD, **kw: Any) -> Client:
    return MongoClient(
        f"mongodb://127.0.0.1:{proxy.port}/?directConnection=true",
        username=user,
        password=password,
        **kw,
    )


def test_everything_but_the_handshake_needs_authentication(stack: tuple[Process, Process]) -> None:
    _, proxy = stack
    anonymous: Client = MongoClient(proxy.uri)
    try:
        assert anonymous.admin.command("ping")["ok"] == 1
        for run in (
            lambda: anonymous.shop.c.find_one(),
            lambda: anonymous.shop.c.insert_one({"x": 1}),
            lambda: anonymous.admin.command({"argon": "listBranches"}),
            lambda: anonymous.list_database_names(),
        ):
            with pytest.raises(OperationFailure) as caught:
                run()
            assert caught.value.code == 13, caught.value.details
            assert "requires authentication" in str(caught.value)
        # The localhost exception ends with the first user.
        with pytest.raises(OperationFailure) as caught:
            anonymous.admin.command({"argon": "createUser", "name": "x", "password": "y"})
        assert caught.value.code == 13
    finally:
        anonymous.close()


@pytest.mark.parametrize("mechanism", ["DEFAULT", "SCRAM-SHA-256", "SCRAM-SHA-1"])
def test_pymongo_authenticates_and_the_wal_names_the_user(
    stack: tuple[Process, Process], mechanism: str
) -> None:
    _, proxy = stack
    options = {} if mechanism == "DEFAULT" else {"authMechanism": mechanism}
    client = _login(proxy, **options)
    try:
        client.authdb.c.insert_one({"_id": mechanism})
        branch = f"auth-{mechanism.lower()}"
        client.admin.command({"argon": "createBranch", "name": branch})
        client[f"authdb@{branch}"].c.insert_one({"_id": "on-branch"})
        assert client[f"authdb@{branch}"].c.count_documents({}) >= 2
        status = client.admin.command("connectionStatus")
        assert status["authInfo"]["authenticatedUsers"] == [{"user": ADMIN, "db": "admin"}]
        entries = client.admin.command({"argon": "log", "branch": branch})["entries"]
        assert entries and all(e["client"]["user"] == ADMIN for e in entries), entries
    finally:
        client.close()


@pytest.mark.parametrize(("user", "password"), [(ADMIN, "wrong"), ("nobody", ADMIN_PASSWORD)])
def test_a_wrong_password_or_user_fails_like_mongod(
    stack: tuple[Process, Process], user: str, password: str
) -> None:
    _, proxy = stack
    client = _login(proxy, user, password, serverSelectionTimeoutMS=5000)
    with pytest.raises(OperationFailure) as caught:
        client.admin.command("ping")
    assert caught.value.code == 18
    assert "Authentication failed" in str(caught.value)
    client.close()


def test_one_login_lends_nothing_to_other_clients(stack: tuple[Process, Process]) -> None:
    _, proxy = stack
    alice = _login(proxy, maxPoolSize=1)
    anonymous: Client = MongoClient(proxy.uri, maxPoolSize=1)
    try:
        for i in range(5):  # interleaved on the same few upstream connections
            alice.lend.c.insert_one({"i": i})
            with pytest.raises(OperationFailure) as caught:
                anonymous.lend.c.find_one()
            assert caught.value.code == 13
    finally:
        alice.close()
        anonymous.close()


def test_sasl_never_reaches_the_upstream(stack: tuple[Process, Process]) -> None:
    """A user the upstream has and Argon has not cannot log in through Argon: the
    conversation is Argon's, never the pooled upstream connections'."""
    upstream, proxy = stack
    direct: Client = MongoClient(upstream.uri)
    direct.admin.command("createUser", "upstream-only", pwd="pw", roles=["root"])
    direct.close()
    client = _login(proxy, "upstream-only", "pw", serverSelectionTimeoutMS=5000)
    with pytest.raises(OperationFailure) as caught:
        client.admin.command("ping")
    assert caught.value.code == 18
    client.close()


def test_users_are_managed_with_admin_actions(stack: tuple[Process, Process]) -> None:
    _, proxy = stack
    admin = _login(proxy)
    try:
        admin.admin.command({"argon": "createUser", "name": "bob", "password": "one"})
        with pytest.raises(OperationFailure) as caught:
            admin.admin.command({"argon": "createUser", "name": "bob", "password": "x"})
        assert caught.value.code == 51003
        with pytest.raises(OperationFailure) as caught:  # SASLprep refuses it
            admin.admin.command({"argon": "createUser", "name": "eve", "password": "\ua4c7"})
        assert caught.value.code == 2 and "password" in str(caught.value)
        listed = admin.admin.command({"argon": "listUsers"})["users"]
        assert {"bob", ADMIN} <= {u["user"] for u in listed}
        assert "credentials" not in str(listed) and "one" not in str(listed)
        bob = _login(proxy, "bob", "one")
        status = bob.admin.command("connectionStatus")["authInfo"]
        assert status["authenticatedUsers"] == [{"user": "bob", "db": "admin"}]
        bob.close()
        admin.admin.command({"argon": "updateUser", "name": "bob", "password": "two"})
        stale = _login(proxy, "bob", "one", serverSelectionTimeoutMS=5000)
        with pytest.raises(OperationFailure):
            stale.admin.command("ping")
        stale.close()
        admin.admin.command({"argon": "dropUser", "name": "bob"})
        gone = _login(proxy, "bob", "two", serverSelectionTimeoutMS=5000)
        with pytest.raises(OperationFailure):
            gone.admin.command("ping")
        gone.close()
    finally:
        admin.close()


def test_logout_ends_the_login(stack: tuple[Process, Process]) -> None:
    _, proxy = stack
    client = _login(proxy, maxPoolSize=1)
    try:
        assert client.admin.command("ping")["ok"] == 1
        client.admin.command("logout")
        with pytest.raises(OperationFailure) as caught:
            client.logout_db.c.find_one()
        assert caught.value.code == 13
    finally:
        client.close()


@needs_node
def test_mongosh_with_credentials(stack: tuple[Process, Process]) -> None:
    _, proxy = stack
    uri = f"mongodb://{ADMIN}:p%40ss%3Aw%2Frd@127.0.0.1:{proxy.port}/?authSource=admin"
    script = (
        "const c = db.getSiblingDB('sh_auth').c; c.insertOne({n: 1}); print(c.countDocuments())"
    )
    done = subprocess.run(
        [str(MONGOSH), uri, "--quiet", "--norc", "--eval", script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip().splitlines()[-1]) >= 1
    refused = subprocess.run(
        [str(MONGOSH), uri.replace("p%40ss", "nope"), "--quiet", "--norc", "--eval", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0
    assert "Authentication failed" in refused.stdout + refused.stderr


def test_the_cli_manages_users(stack: tuple[Process, Process]) -> None:
    _, proxy = stack
    runner = CliRunner()
    admin_uri = (
        f"mongodb://{ADMIN}:p%40ss%3Aw%2Frd@127.0.0.1:{proxy.port}/"
        "?directConnection=true&authSource=admin"
    )

    def argon(*args: str, uri: str = admin_uri, stdin: str | None = None) -> Result:
        return runner.invoke(app, list(args), input=stdin, env={"ARGON_MONGODB_URI": uri})

    made = argon("user", "create", "carol", stdin="pw-1\npw-1\n")  # asked, twice, unseen
    assert made.exit_code == 0, made.output
    assert "pw-1" not in made.stdout.replace("Password", "")
    listed = argon("user", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert "carol" in {u["name"] for u in json.loads(listed.stdout)}
    carol_uri = f"mongodb://carol:pw-1@127.0.0.1:{proxy.port}/?directConnection=true"
    assert argon("status", uri=carol_uri).exit_code == 0  # carol logs in
    assert argon("user", "list", uri=carol_uri).exit_code == 1  # but is no administrator
    changed = argon("user", "passwd", "carol", "--password", "pw-2")
    assert changed.exit_code == 0, changed.output
    refused = argon("status", uri=carol_uri)
    assert refused.exit_code == 1 and "AuthenticationFailed" in refused.output, refused.output
    assert argon("user", "delete", "carol").exit_code == 0
    anonymous = argon("status", uri=proxy.uri)
    assert anonymous.exit_code == 1 and "Unauthorized (13)" in anonymous.output, anonymous.output


def test_an_unreachable_upstream_during_login_is_reported(own_upstream: Process) -> None:
    proxy = start_proxy(own_upstream.uri, env={"ARGON_AUTH": "true"})
    try:
        first: Client = MongoClient(proxy.uri)
        first.admin.command({"argon": "createUser", "name": "ann", "password": "pw"})
        first.close()
        own_upstream.stop()
        client = _login(proxy, "ann", "pw", serverSelectionTimeoutMS=10000)
        with pytest.raises(OperationFailure) as caught:  # not a connection closed mid-hello
            client.admin.command("ping")
        assert caught.value.code == 6 and "cannot reach the upstream" in str(caught.value)
        client.close()
    finally:
        proxy.stop()


@needs_node
def test_node_driver_with_credentials(stack: tuple[Process, Process]) -> None:
    """The Node driver negotiates SCRAM-SHA-256 (it tries speculative authentication in
    its handshake first, which Argon leaves unanswered) and works once logged in."""
    _, proxy = stack
    uri = f"mongodb://{ADMIN}:p%40ss%3Aw%2Frd@127.0.0.1:{proxy.port}/?authSource=admin"
    script = textwrap.dedent(
        f"""
        const {{ MongoClient }} = require('mongodb');
        (async () => {{
          const client = new MongoClient('{uri}');
          const coll = client.db('node_auth').collection('c');
          await coll.insertOne({{ n: 1 }});
          const status = await client.db('admin').command({{ connectionStatus: 1 }});
          console.log(JSON.stringify({{ n: await coll.countDocuments({{}}),
                                        user: status.authInfo.authenticatedUsers[0].user }}));
          await client.close();
        }})().catch((e) => {{ console.error(e); process.exit(1); }});
        """
    )
    done = subprocess.run(
        ["node", "-e", script], capture_output=True, text=True, timeout=120, cwd=CLIENTS.parent
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["user"] == ADMIN and result["n"] >= 1


def test_the_first_user_while_the_upstream_is_away_is_answered(own_upstream: Process) -> None:
    proxy = start_proxy(own_upstream.uri, env={"ARGON_AUTH": "true"})
    try:
        own_upstream.stop()
        anonymous: Client = MongoClient(proxy.uri, serverSelectionTimeoutMS=10000)
        with pytest.raises(OperationFailure) as caught:  # not a connection cut off
            anonymous.admin.command({"argon": "createUser", "name": "a", "password": "b"})
        assert caught.value.code == 6 and "cannot reach the upstream" in str(caught.value)
        anonymous.close()
    finally:
        proxy.stop()
