"""The client commands of ``argon`` against a real proxy: output, JSON and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient
from pymongo.errors import OperationFailure
from typer.testing import CliRunner, Result

from argon.commands.output import parse_value
from argon_proxy.cli import app

from ..processes import ROOT, Process, free_port
from ..stacks import own_stack

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Process, Process]]:
    with own_stack() as pair:
        yield pair


@pytest.fixture(scope="module")
def mongo(stack: tuple[Process, Process]) -> Iterator[MongoClient[Doc]]:
    """A plain client of the proxy, to put data on branches (``db@branch``)."""
    c: MongoClient[Doc] = MongoClient(stack[1].uri)
    yield c
    c.close()


@pytest.fixture
def argon(stack: tuple[Process, Process]) -> Iterator[Any]:
    """Run ``argon ARGS...`` in-process against the module's proxy."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Result:
        return runner.invoke(app, list(args), input=input, env={"ARGON_MONGODB_URI": stack[1].uri})

    yield run


def ok_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- branches ------------------------------------------------------------------


def test_status_json(argon: Any) -> None:
    st = ok_json(argon("status", "--json"))
    assert set(st) == {"version", "default_branch", "branches", "lsn", "upstream"}
    assert st["default_branch"] == "main"


def test_branch_lifecycle(argon: Any) -> None:
    created = argon("branch", "create", "cli-exp", "--from", "main", "-d", "try it")
    assert created.exit_code == 0, created.output
    assert "created branch cli-exp from main" in created.stdout
    assert "appName=argon:cli-exp" in created.stderr

    listed = ok_json(argon("branch", "list", "--json"))
    assert listed[0]["name"] == "main" and listed[0]["default"] is True
    mine = next(b for b in listed if b["name"] == "cli-exp")
    assert mine["parent"] == "main" and "$date" in mine["created_at"]
    assert "cli-exp" in argon("branch", "list").stdout

    got = ok_json(argon("branch", "get", "cli-exp", "--json"))
    assert got["description"] == "try it" and got["stats"]["changes"] == 0
    assert "try it" in argon("branch", "get", "cli-exp").stdout

    deleted = argon("branch", "delete", "cli-exp")
    assert deleted.exit_code == 0 and "deleted branch cli-exp" in deleted.stdout
    gone = argon("branch", "get", "cli-exp")
    assert gone.exit_code == 1
    assert gone.stderr.startswith("error BranchNotFound (2001): ")


def test_projects_scope_their_branches(argon: Any, mongo: MongoClient[Doc]) -> None:
    assert argon("branches", "create", "cli-plural", "--from", "main").exit_code == 0
    assert "cli-plural" in argon("branches", "list").stdout
    made = argon("projects", "create", "my-app", "--db", "appdb")
    assert made.exit_code == 0, made.stderr
    assert argon("projects", "create", "--name", "my-project").exit_code == 0
    assert argon("projects", "create", "my-app").exit_code == 1  # exists
    assert argon("branches", "create", "feature-x", "-p", "my-app").exit_code == 0
    assert argon("branches", "create", "nope", "-p", "missing").exit_code == 1
    listed = json.loads(argon("projects", "list", "--json").stdout)
    by_name = {p["name"]: p for p in listed}
    assert by_name["default"]["databases"] is None
    assert by_name["my-app"]["databases"] == ["appdb"]
    assert by_name["my-app"]["branches"] == ["feature-x"]
    names = [
        b["name"] for b in json.loads(argon("branches", "list", "-p", "my-app", "--json").stdout)
    ]
    assert names == ["main", "feature-x"]
    info = argon("time-travel", "info", "-p", "my-app", "-b", "main", "--json")
    assert info.exit_code == 0 and json.loads(info.stdout)[0]["branch"] == "main"
    assert argon("time-travel", "info", "-p", "my-app", "-b", "cli-plural").exit_code == 1
    # Through the project's branch only its databases are reachable.
    mongo["appdb@feature-x"].c.insert_one({"_id": 1})
    assert mongo.appdb.c.count_documents({}) == 0
    with pytest.raises(OperationFailure) as err:
        mongo["otherdb@feature-x"].c.insert_one({"_id": 1})
    assert err.value.code == 2018 and "my-app" in str(err.value)
    assert argon("projects", "delete", "my-app").exit_code == 1  # it has a branch
    assert argon("branches", "delete", "feature-x").exit_code == 0
    assert argon("projects", "delete", "my-app").exit_code == 0


def test_switch_and_write_on_the_branch(
    argon: Any, mongo: MongoClient[Doc], stack: tuple[Process, Process]
) -> None:
    mongo.cli_sw.c.insert_one({"_id": 1, "v": "main"})
    assert argon("branch", "create", "cli-switch").exit_code == 0
    try:
        switched = argon("branch", "switch", "cli-switch")
        assert switched.exit_code == 0 and "default branch is now cli-switch" in switched.stdout
        assert ok_json(argon("status", "--json"))["default_branch"] == "cli-switch"
        plain: MongoClient[Doc] = MongoClient(stack[1].uri)
        plain.cli_sw.c.update_one({"_id": 1}, {"$set": {"v": "branch"}})
        plain.close()
    finally:
        assert argon("branch", "switch", "main").exit_code == 0
    assert mongo.cli_sw.c.find_one({"_id": 1}) == {"_id": 1, "v": "main"}
    assert mongo["cli_sw@cli-switch"].c.find_one({"_id": 1}) == {"_id": 1, "v": "branch"}


def test_archive(argon: Any) -> None:
    argon("branch", "create", "cli-old")
    archived = ok_json(argon("branch", "archive", "cli-old", "--json"))
    assert archived["archived"] is True
    assert "cli-old" not in [b["name"] for b in ok_json(argon("branch", "list", "--json"))]
    everything = ok_json(argon("branch", "list", "--all", "--json"))
    assert "cli-old" in [b["name"] for b in everything]


def test_time_travel_info(argon: Any) -> None:
    (span,) = ok_json(argon("time-travel", "info", "-b", "main", "--json"))
    assert span["branch"] == "main" and span["latest_lsn"] >= span["earliest_lsn"]
    assert "earliest LSN" in argon("time-travel", "info").stdout


# -- exit codes ------------------------------------------------------------------


def test_unreachable_proxy_exits_4() -> None:
    uri = f"mongodb://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(app, ["branch", "list", "--uri", uri])
    assert result.exit_code == 4
    assert "argon serve" in result.stderr


def test_usage_errors_exit_2(argon: Any) -> None:
    assert argon("branch", "merge", "x", "--strategy", "bogus").exit_code == 2
    assert argon("merge", "resolve", "m1", "--ns", "a.b", "--id", "1").exit_code == 2
    bad_json = argon("log", "--id", "{not json")
    assert bad_json.exit_code == 2


def test_entry_point_runs_as_a_program(stack: tuple[Process, Process]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "argon_proxy", "status", "--json", "--uri", stack[1].uri],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["default_branch"] in {"main", "cli-switch"}


def test_parse_value() -> None:
    assert parse_value("abc") == "abc"
    assert parse_value("42") == 42
    assert parse_value('"42"') == "42"
    assert parse_value('{"$oid": "5f0c8a3e9b1e8a3d4c2b1a09"}') == ObjectId(
        "5f0c8a3e9b1e8a3d4c2b1a09"
    )
    assert parse_value("m12ab") == "m12ab"


# -- merges, diff ------------------------------------------------------------------


def _conflict(mongo: MongoClient[Doc], argon: Any, branch: str, db: str) -> None:
    mongo[db].c.insert_many([{"_id": 1, "v": 0}, {"_id": 2, "v": 0}])
    assert argon("branch", "create", branch).exit_code == 0
    on_branch = mongo[f"{db}@{branch}"].c
    on_branch.update_one({"_id": 1}, {"$set": {"v": "branch"}})
    on_branch.update_one({"_id": 2}, {"$set": {"v": "branch"}})
    mongo[db].c.update_one({"_id": 1}, {"$set": {"v": "main"}})


def test_merge_conflicts_exit_5_and_are_listed(argon: Any, mongo: MongoClient[Doc]) -> None:
    _conflict(mongo, argon, "cli-conflict", "cli_mc")
    stopped = argon("branch", "merge", "cli-conflict", "--into", "main")
    assert stopped.exit_code == 5
    assert "error MergeConflict (2010)" in stopped.stderr
    assert "cli_mc.c" in stopped.stdout and "both-changed" in stopped.stdout
    assert "argon merge resolve" in stopped.stdout and "argon merge apply" in stopped.stdout

    as_json = argon("branch", "merge", "cli-conflict", "--into", "main", "--json")
    assert as_json.exit_code == 5
    merge = json.loads(as_json.stdout)
    assert merge["status"] == "conflicts" and merge["counts"]["conflicts"] == 1

    listed = ok_json(argon("merge", "conflicts", merge["id"], "--json"))
    assert [(c["ns"], c["doc_id"], c["paths"]) for c in listed] == [("cli_mc.c", 1, ["v"])]
    assert mongo.cli_mc.c.find_one({"_id": 2}) == {"_id": 2, "v": 0}


def test_resolve_and_apply(argon: Any, mongo: MongoClient[Doc]) -> None:
    _conflict(mongo, argon, "cli-resolve", "cli_mr")
    merge = json.loads(argon("branch", "merge", "cli-resolve", "--json").stdout)
    resolved = argon(
        "merge", "resolve", merge["id"], "--ns", "cli_mr.c", "--id", "1", "--take", "theirs"
    )
    assert resolved.exit_code == 0, resolved.output
    applied = ok_json(argon("merge", "apply", merge["id"], "--json"))
    assert applied["status"] == "applied"
    assert mongo.cli_mr.c.find_one({"_id": 1}) == {"_id": 1, "v": "branch"}


def test_merge_strategies_and_preview(argon: Any, mongo: MongoClient[Doc]) -> None:
    _conflict(mongo, argon, "cli-theirs", "cli_mt")
    preview = ok_json(
        argon("branch", "merge", "cli-theirs", "--strategy", "theirs", "--dry-run", "--json")
    )
    assert preview["status"] == "preview"
    assert mongo.cli_mt.c.find_one({"_id": 1}) == {"_id": 1, "v": "main"}
    human = argon("merge", "apply", preview["id"])
    assert human.exit_code == 0, human.output
    assert "applied" in human.stdout
    assert mongo.cli_mt.c.find_one({"_id": 1}) == {"_id": 1, "v": "branch"}


def test_compare_and_diff_agree(argon: Any, mongo: MongoClient[Doc]) -> None:
    mongo.cli_df.results.insert_many([{"_id": 1, "auc": 0.7}, {"_id": 2, "auc": 0.6}])
    argon("branch", "create", "cli-diff")
    on_branch = mongo["cli_df@cli-diff"].results
    on_branch.update_one({"_id": 1}, {"$set": {"auc": 0.9}})
    on_branch.insert_one({"_id": 3, "auc": 0.8})

    compared = ok_json(
        argon(
            "branch", "compare", "cli-diff", "--with", "main", "--collection", "results", "--json"
        )
    )
    diffed = ok_json(argon("diff", "main", "cli-diff", "--collection", "results", "--json"))
    assert compared == diffed
    assert compared["summary"] == {"added": 1, "removed": 0, "modified": 1}
    (col,) = compared["collections"]
    assert col["ns"] == "cli_df.results"
    human = argon("branch", "compare", "cli-diff", "--with", "main", "--db", "cli_df")
    assert human.exit_code == 0
    assert "1 added, 0 removed, 1 modified" in human.stdout and "auc modified" in human.stdout


# -- tags, snapshots, uri --------------------------------------------------------------


def test_tags_and_snapshots(argon: Any, mongo: MongoClient[Doc]) -> None:
    argon("branch", "create", "cli-tags")
    mongo["cli_tg@cli-tags"].c.insert_one({"_id": 1})
    tag = ok_json(argon("tag", "create", "cli-v1", "--branch", "cli-tags", "-m", "ok", "--json"))
    assert (tag["name"], tag["branch"], tag["message"]) == ("cli-v1", "cli-tags", "ok")
    assert [t["name"] for t in ok_json(argon("tag", "list", "--branch", "cli-tags", "--json"))] == [
        "cli-v1"
    ]
    assert "cli-v1" in argon("tag", "list").stdout
    assert argon("tag", "create", "cli-v1", "--branch", "cli-tags").exit_code == 1
    assert argon("tag", "delete", "cli-v1").exit_code == 0
    missing = argon("tag", "delete", "cli-v1")
    assert missing.exit_code == 1 and "TagNotFound (2013)" in missing.stderr

    snap = ok_json(argon("snapshot", "create", "cli-snap", "--branch", "cli-tags", "--json"))
    assert snap["snapshot"] is True and snap["read_only"] is True


def test_uri(argon: Any, mongo: MongoClient[Doc]) -> None:
    argon("branch", "create", "cli/uri")
    mongo["cli_ur@cli~uri"].c.insert_one({"_id": 1, "v": 1})
    lsn = ok_json(argon("branch", "get", "cli/uri", "--json"))["head_lsn"]
    argon("tag", "create", "cli-uri-tag", "--branch", "cli/uri")
    mongo["cli_ur@cli~uri"].c.update_one({"_id": 1}, {"$set": {"v": 2}})

    branch_uri = argon("uri", "cli/uri").stdout.strip()
    assert "appName=argon:cli/uri" in branch_uri
    point_uri = argon("uri", f"cli/uri@lsn-{lsn}", "--db", "cli_ur").stdout.strip()
    tag_uri = ok_json(argon("uri", "cli-uri-tag", "--db", "cli_ur", "--json"))["uri"]
    for uri, db, v in ((branch_uri, "cli_ur", 2), (point_uri, None, 1), (tag_uri, None, 1)):
        c: MongoClient[Doc] = MongoClient(uri)
        try:
            database = c[db] if db else c.get_default_database()
            assert database.c.find_one({"_id": 1}) == {"_id": 1, "v": v}
        finally:
            c.close()
    needs_db = argon("uri", "cli-uri-tag")
    assert needs_db.exit_code == 1 and "--db" in needs_db.stderr


# -- history -----------------------------------------------------------------------


def test_log_blame_undo(argon: Any, mongo: MongoClient[Doc]) -> None:
    argon("branch", "create", "cli-log")
    c = mongo["cli_lg@cli-log"].c
    c.insert_one({"_id": "k", "a": 1})
    c.update_one({"_id": "k"}, {"$set": {"a": 2}})

    entries = ok_json(argon("log", "--branch", "cli-log", "--json"))
    assert [e["op"] for e in entries] == ["update", "insert"]
    one = ok_json(
        argon("log", "-b", "cli-log", "--db", "cli_lg", "--collection", "c", "--id", "k", "--json")
    )
    assert len(one) == 2 and one[0]["doc_id"] == "k"
    assert "update" in argon("log", "--branch", "cli-log").stdout

    blame = ok_json(
        argon(
            "blame", "-b", "cli-log", "--db", "cli_lg", "--collection", "c", "--id", "k", "--json"
        )
    )
    assert blame["document"] == {"_id": "k", "a": 2}
    assert {f["path"]: f["lsn"] for f in blame["fields"]}["a"] == entries[0]["lsn"]

    last = str(entries[0]["lsn"])
    preview = ok_json(
        argon("undo", "-b", "cli-log", "--from-lsn", last, "--to-lsn", last, "--dry-run", "--json")
    )
    assert preview["documents"] == 1
    assert c.find_one({"_id": "k"}) == {"_id": "k", "a": 2}
    done = argon("undo", "-b", "cli-log", "--from-lsn", last, "--to-lsn", last)
    assert done.exit_code == 0 and "restored 1 documents" in done.stdout
    assert c.find_one({"_id": "k"}) == {"_id": "k", "a": 1}


def test_reset_previews_and_asks(argon: Any, mongo: MongoClient[Doc]) -> None:
    argon("branch", "create", "cli-reset")
    c = mongo["cli_rs@cli-reset"].c
    c.insert_one({"_id": 1, "v": 1})
    argon("tag", "create", "cli-reset-good", "--branch", "cli-reset")
    c.update_one({"_id": 1}, {"$set": {"v": 2}})

    preview = ok_json(argon("reset", "cli-reset", "--to", "cli-reset-good", "--dry-run", "--json"))
    assert preview["discarded_documents"] == 1 and preview["applied_lsns"] is None
    assert argon("reset", "cli-reset", "--to", "cli-reset-good", "--json").exit_code == 2

    declined = argon("reset", "cli-reset", "--to", "cli-reset-good", input="n\n")
    assert declined.exit_code == 1 and "would discard" in declined.stdout
    assert c.find_one({"_id": 1}) == {"_id": 1, "v": 2}

    confirmed = argon("reset", "cli-reset", "--to", "cli-reset-good", input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert c.find_one({"_id": 1}) == {"_id": 1, "v": 1}

    c.update_one({"_id": 1}, {"$set": {"v": 3}})
    lsn = ok_json(argon("tag", "list", "--json"))
    target = f"lsn-{next(t['lsn'] for t in lsn if t['name'] == 'cli-reset-good')}"
    forced = ok_json(argon("reset", "cli-reset", "--to", target, "--yes", "--json"))
    assert forced["applied_lsns"] is not None
    assert c.find_one({"_id": 1}) == {"_id": 1, "v": 1}


def test_gc_dry_run(argon: Any) -> None:
    result = ok_json(argon("gc", "--dry-run", "--json"))
    assert result["wal_removed"] >= 0
    assert "would remove" in argon("gc", "--dry-run").stdout


def test_client_commands_do_not_load_the_proxy() -> None:
    """`argon branch list` and friends import the SDK, not Trio and the engine."""
    heavy = "('trio', 'argon_proxy.engine', 'argon_proxy.app')"
    probe = f"import sys, argon_proxy.cli; print([m for m in {heavy} if m in sys.modules])"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
