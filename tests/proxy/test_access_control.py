"""Per-branch access control through real clients: roles on branch patterns,
administrators, protected branches changed only through allowed merges."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure
from typer.testing import CliRunner

import argon
from argon.collaboration import BranchManager
from argon_proxy.cli import app

from ..processes import Process, start_proxy, start_upstream

Client = MongoClient[dict[str, Any]]
UPSTREAMS: dict[int, str] = {}  # the upstream of each module proxy, by its port


def _upstream_uri(proxy: Process) -> str:
    return UPSTREAMS[proxy.port]


@pytest.fixture(scope="module")
def stack() -> Iterator[Process]:
    """An Argon with auth on; its first user ``root`` (an administrator) made
    through the localhost exception, and branches to grant on."""
    upstream = start_upstream()
    proxy = start_proxy(upstream.uri, env={"ARGON_AUTH": "true"})
    UPSTREAMS[proxy.port] = upstream.uri
    try:
        anonymous: Client = MongoClient(proxy.uri)
        anonymous.admin.command({"argon": "createUser", "name": "root", "password": "pw"})
        anonymous.close()
        root = _login(proxy, "root")
        root.shop.orders.insert_one({"_id": 1, "state": "main"})
        for name in ("exp-a", "exp-b", "other"):
            root.admin.command({"argon": "createBranch", "name": name})
        for user in ("ana", "ben"):
            root.admin.command({"argon": "createUser", "name": user, "password": "pw"})
        root.close()
        yield proxy
    finally:
        proxy.stop()
        upstream.stop()


def _login(proxy: Process, user: str, **kw: Any) -> Client:
    uri = f"mongodb://{user}:pw@127.0.0.1:{proxy.port}/?directConnection=true"
    return MongoClient(uri, **kw)


def _refused(run: Any, *words: str) -> None:
    with pytest.raises(OperationFailure) as caught:
        run()
    assert caught.value.code == 13, caught.value.details
    for word in words:
        assert word in str(caught.value), str(caught.value)


def _grant(proxy: Process, user: str, role: str, branches: str, *, revoke: bool = False) -> None:
    root = _login(proxy, "root")
    action = "revokeAccess" if revoke else "grantAccess"
    root.admin.command({"argon": action, "user": user, "role": role, "branches": branches})
    root.close()


def test_read_on_a_pattern_reads_there_and_nowhere_else(stack: Process) -> None:
    _grant(stack, "ana", "read", "exp-*")
    ana = _login(stack, "ana")
    try:
        assert ana["shop@exp-a"].orders.find_one() == {"_id": 1, "state": "main"}
        assert ana["shop@exp-b"].orders.count_documents({}) == 1
        _refused(lambda: ana["shop@exp-a"].orders.insert_one({"_id": 2}), "'ana'", "exp-a")
        _refused(lambda: ana["shop@exp-a"].orders.drop(), "drop")
        _refused(lambda: ana["shop@other"].orders.find_one(), "'other'")
        _refused(lambda: ana.shop.orders.find_one(), "'main'")  # main's fast path too
        _refused(lambda: ana.admin.command("serverStatus"), "serverStatus")
        # The upstream's own databases are read with Argon's rights: administrators only.
        _grant(stack, "ana", "read", "main")
        assert ana.shop.orders.count_documents({}) >= 1
        _refused(lambda: ana.admin["system.users"].find_one(), "find")
        _refused(
            lambda: ana.admin.command("aggregate", 1, pipeline=[{"$currentOp": {}}], cursor={})
        )
        _refused(lambda: ana.config.transactions.find_one())
        _grant(stack, "ana", "write", "main")
        into_admin: list[dict[str, Any]] = [{"$merge": {"into": {"db": "admin", "coll": "x"}}}]
        _refused(lambda: list(ana.shop.orders.aggregate(into_admin)), "aggregate")
        _grant(stack, "ana", "write", "main", revoke=True)
        _grant(stack, "ana", "read", "main", revoke=True)
        _refused(lambda: ana.admin.command({"argon": "deleteBranch", "name": "exp-a"}))
        _refused(lambda: ana.admin.command({"argon": "createUser", "name": "x", "password": "y"}))
        listed = ana.admin.command({"argon": "listBranches"})["branches"]
        assert {b["name"] for b in listed} == {"exp-a", "exp-b"}
        assert ana.admin.command("ping")["ok"] == 1 and ana.list_database_names()
    finally:
        ana.close()
        _grant(stack, "ana", "read", "exp-*", revoke=True)


def test_write_and_admin_roles(stack: Process) -> None:
    _grant(stack, "ben", "write", "exp-b")
    _grant(stack, "ben", "admin", "ben-*")
    ben = _login(stack, "ben")
    try:
        ben["shop@exp-b"].orders.insert_one({"_id": "ben"})
        ben["shop@exp-b"].orders.update_one({"_id": 1}, {"$set": {"state": "ben"}})
        _refused(lambda: ben["shop@exp-a"].orders.insert_one({"_id": "ben"}), "exp-a")
        _refused(lambda: ben.admin.command({"argon": "deleteBranch", "name": "exp-b"}), "exp-b")
        # admin on ben-*: create from a branch he may read, and delete, there only
        ben.admin.command({"argon": "createBranch", "name": "ben-try", "from": "exp-b"})
        assert ben["shop@ben-try"].orders.count_documents({}) == 2
        _refused(
            lambda: ben.admin.command({"argon": "createBranch", "name": "ben-x", "from": "other"}),
            "'other'",
        )
        _refused(lambda: ben.admin.command({"argon": "createBranch", "name": "nope"}), "'nope'")
        ben.admin.command({"argon": "deleteBranch", "name": "ben-try"})
        entries = ben.admin.command({"argon": "log", "branch": "exp-b"})["entries"]
        assert {e["client"]["user"] for e in entries} == {"ben"}
        root = _login(stack, "root")
        root["shop@exp-b"].orders.insert_one({"_id": "root"})
        mine = root.admin.command({"argon": "log", "branch": "exp-b", "user": "ben"})["entries"]
        assert len(mine) == 2 and {e["client"]["user"] for e in mine} == {"ben"}
        lsns = [
            e["lsn"] for e in root.admin.command({"argon": "log", "branch": "exp-b"})["entries"]
        ]
        undo = {"argon": "undo", "branch": "exp-b", "fromLsn": min(lsns), "toLsn": max(lsns)}
        root.admin.command({**undo, "user": "ben"})  # ben's changes go, root's stays
        left = {d["_id"]: d.get("state") for d in root["shop@exp-b"].orders.find()}
        assert left == {1: "main", "root": None}, left
        root.close()
    finally:
        ben.close()
        _grant(stack, "ben", "write", "exp-b", revoke=True)
        _grant(stack, "ben", "admin", "ben-*", revoke=True)


def test_a_protected_branch_changes_only_through_allowed_merges(stack: Process) -> None:
    root = _login(stack, "root")
    ana = _login(stack, "ana")
    try:
        root.admin.command({"argon": "createBranch", "name": "feature"})
        root["shop@feature"].orders.insert_one({"_id": "feature"})
        root.admin.command({"argon": "protectBranch", "name": "main"})
        with pytest.raises(OperationFailure) as caught:  # administrators included
            root.shop.orders.insert_one({"_id": "direct"})
        assert caught.value.code == 2020 and "protected" in str(caught.value)
        with pytest.raises(OperationFailure) as caught:
            root.admin.command({"argon": "resetBranch", "name": "main", "lsn": 0})
        assert caught.value.code == 2020
        root.admin.command({"argon": "protectBranch", "name": "feature"})
        with pytest.raises(OperationFailure) as caught:  # unprotect it first
            root.admin.command({"argon": "deleteBranch", "name": "feature"})
        assert caught.value.code == 2020
        root.admin.command({"argon": "protectBranch", "name": "feature", "protected": False})
        _grant(stack, "ana", "write", "main")  # writing is not merging, and main is protected
        _grant(stack, "ana", "read", "feature")
        _refused(lambda: ana.admin.command({"argon": "merge", "source": "feature"}), "merge")
        with pytest.raises(OperationFailure) as caught:
            ana.shop.orders.insert_one({"_id": "ana"})
        assert caught.value.code == 2020
        _grant(stack, "ana", "merge", "main")
        merged = ana.admin.command({"argon": "merge", "source": "feature", "into": "main"})
        assert merged["merge"]["status"] == "applied", merged
        assert root.shop.orders.find_one({"_id": "feature"}) == {"_id": "feature"}
    finally:
        root.admin.command({"argon": "protectBranch", "name": "main", "protected": False})
        for role, branches in (("write", "main"), ("read", "feature"), ("merge", "main")):
            _grant(stack, "ana", role, branches, revoke=True)
        root.close()
        ana.close()


def test_grants_take_effect_and_end_at_once(stack: Process) -> None:
    ana = _login(stack, "ana", maxPoolSize=1)
    try:
        _refused(lambda: ana["shop@other"].orders.find_one())
        _grant(stack, "ana", "read", "other")
        assert ana["shop@other"].orders.count_documents({}) == 1
        _grant(stack, "ana", "read", "other", revoke=True)
        _refused(lambda: ana["shop@other"].orders.find_one())
    finally:
        ana.close()


def test_the_sdk_grants_as_the_source_documents_do(stack: Process) -> None:
    root = argon.Client(f"mongodb://root:pw@127.0.0.1:{stack.port}/?directConnection=true")
    try:
        root.users.create("alice@company.com", "pw")
        manager = BranchManager(root)
        branch = manager.create_branch("churn/alice", from_branch="main", description="alice's")
        branch.grant_access("alice@company.com", "write")
        grants = root.access.list("alice@company.com")
        assert [(g.role, g.branches) for g in grants] == [("write", "churn/alice")]
        with pytest.raises(argon.BadValue):
            branch.grant_access("alice@company.com", "owner")
        with pytest.raises(argon.ArgonError) as missing:
            branch.grant_access("nobody@company.com", "read")
        assert missing.value.code == 11
        branch.protect()
        assert root.branches.get("churn/alice").protected
    finally:
        root.close()
    alice = argon.Client(
        f"mongodb://alice%40company.com:pw@127.0.0.1:{stack.port}/?directConnection=true"
    )
    try:
        with pytest.raises(argon.Unauthorized):
            alice.branches.delete("churn/alice")
        assert [b.name for b in alice.branches.list()] == ["churn/alice"]
    finally:
        alice.close()


def test_the_cli_grants_and_lists(stack: Process) -> None:
    uri = f"mongodb://root:pw@127.0.0.1:{stack.port}/?directConnection=true"
    runner = CliRunner()

    def argon_cli(*args: str) -> Any:
        return runner.invoke(app, list(args), env={"ARGON_MONGODB_URI": uri})

    made = argon_cli("access", "grant", "ben", "read", "--branches", "exp-*")
    assert made.exit_code == 0, made.output
    listed = argon_cli("access", "list", "--user", "ben", "--json")
    assert listed.exit_code == 0, listed.output
    want = {"user": "ben", "role": "read", "branches": "exp-*", "project": None}
    assert want in json.loads(listed.stdout)
    gone = argon_cli("access", "revoke", "ben", "read", "--branches", "exp-*")
    assert gone.exit_code == 0 and "revoked" in gone.stdout, gone.output
    protected = argon_cli("branch", "protect", "other")
    assert protected.exit_code == 0 and "protected" in protected.stdout, protected.output
    assert argon_cli("branch", "protect", "other", "--off").exit_code == 0


def test_a_project_grant_covers_the_project_branches_only(stack: Process) -> None:
    root = _login(stack, "root")
    ana = _login(stack, "ana")
    try:
        root.admin.command({"argon": "createProject", "name": "churn", "databases": ["shop"]})
        root.admin.command({"argon": "createBranch", "name": "churn-1", "project": "churn"})
        grant = {"argon": "grantAccess", "user": "ana", "role": "write", "project": "churn"}
        root.admin.command(grant)
        ana["shop@churn-1"].orders.insert_one({"_id": "ana-in-churn"})
        _refused(lambda: ana["shop@exp-a"].orders.find_one(), "exp-a")  # not the project's
        _refused(lambda: ana.shop.orders.find_one(), "'main'")  # main: granted by name only
        with pytest.raises(OperationFailure) as caught:
            root.admin.command({**grant, "branches": "exp-*"})  # one or the other
        assert caught.value.code == 2
        listed = root.admin.command({"argon": "listAccess", "user": "ana"})["grants"]
        assert {"user": "ana", "role": "write", "project": "churn"} in listed
    finally:
        root.admin.command(
            {"argon": "revokeAccess", "user": "ana", "role": "write", "project": "churn"}
        )
        root.close()
        ana.close()


def test_statements_of_a_transaction_are_judged_one_by_one(stack: Process) -> None:
    _grant(stack, "ben", "write", "exp-a")
    _grant(stack, "ben", "read", "exp-b")
    ben = _login(stack, "ben")
    try:
        with ben.start_session() as session, session.start_transaction():
            ben["shop@exp-a"].orders.insert_one({"_id": "txn"}, session=session)
        assert ben["shop@exp-a"].orders.find_one({"_id": "txn"}) == {"_id": "txn"}
        with ben.start_session() as session:
            session.start_transaction()
            ben["shop@exp-a"].orders.insert_one({"_id": "txn-2"}, session=session)
            _refused(
                lambda: ben["shop@exp-b"].orders.insert_one({"_id": "x"}, session=session),
                "exp-b",
            )
            with pytest.raises(OperationFailure):  # the refusal ended the transaction
                session.commit_transaction()
        assert ben["shop@exp-a"].orders.find_one({"_id": "txn-2"}) is None
    finally:
        ben.close()
        _grant(stack, "ben", "write", "exp-a", revoke=True)
        _grant(stack, "ben", "read", "exp-b", revoke=True)


def test_grants_made_through_another_proxy_apply_within_moments(stack: Process) -> None:
    upstream_uri = _upstream_uri(stack)
    other = start_proxy(upstream_uri, env={"ARGON_AUTH": "true"})
    ana = _login(other, "ana", maxPoolSize=1)
    try:
        _refused(lambda: ana["shop@other"].orders.find_one())
        _grant(stack, "ana", "read", "other")  # through the first proxy
        deadline = time.monotonic() + 30  # a bound, not a timing assertion
        while time.monotonic() < deadline:
            try:
                ana["shop@other"].orders.find_one()
                break
            except OperationFailure as exc:
                assert exc.code == 13
                time.sleep(0.2)
        assert ana["shop@other"].orders.count_documents({}) == 1
    finally:
        ana.close()
        other.stop()
        _grant(stack, "ana", "read", "other", revoke=True)
