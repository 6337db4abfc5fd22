"""The SDK against a real proxy and upstream: every call, its models and its errors."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pymongo
import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

import argon
from argon import addressing
from argon.collaboration import BranchManager
from argon_proxy import naming

from ..processes import Process, free_port
from ..stacks import own_stack

Doc = dict[str, object]


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Process, Process]]:
    with own_stack() as pair:
        yield pair


@pytest.fixture
def client(stack: tuple[Process, Process]) -> Iterator[argon.Client]:
    with argon.Client(stack[1].uri) as c:
        yield c


@pytest.fixture
def default(client: argon.Client) -> Iterator[argon.Client]:
    """``client`` as the default of the module-level functions, for this test only."""
    argon.set_default_client(client)
    yield client
    argon.set_default_client(None)


@pytest.fixture
def direct(stack: tuple[Process, Process]) -> Iterator[MongoClient[Doc]]:
    """The upstream itself, behind the proxy's back: where main's data really is."""
    c: MongoClient[Doc] = MongoClient(stack[0].uri)
    yield c
    c.close()


# -- branches ------------------------------------------------------------------


def test_status(client: argon.Client) -> None:
    st = client.status()
    assert st.version and st.default_branch == "main"
    assert st.branches >= 1 and st.lsn >= 0 and st.upstream


def test_create_list_get_delete(client: argon.Client) -> None:
    info = client.branches.create("sdk-crud", description="for the test")
    assert (info.name, info.parent) == ("sdk-crud", "main")
    assert isinstance(info.created_at, dt.datetime)
    assert info.stats is None  # only getBranch answers stats

    names = [b.name for b in client.branches.list()]
    assert names[0] == "main" and "sdk-crud" in names

    got = client.branches.get("sdk-crud")
    assert got.stats is not None and got.stats.changes == 0
    assert got.description == "for the test"

    with pytest.raises(argon.BranchExists) as exists:
        client.branches.create("sdk-crud")
    assert (exists.value.code, exists.value.code_name) == (2002, "BranchExists")

    gone = client.branches.delete("sdk-crud")
    assert gone.name == "sdk-crud"
    with pytest.raises(argon.BranchNotFound) as missing:
        client.branches.get("sdk-crud")
    assert missing.value.code == 2001
    assert "sdk-crud" in missing.value.message
    assert missing.value.details["codeName"] == "BranchNotFound"


def test_errors_carry_codes(client: argon.Client) -> None:
    with pytest.raises(argon.BadValue) as bad:
        client.branches.create("bad name!")
    assert bad.value.code == 2 and "invalid branch name" in bad.value.message
    assert isinstance(bad.value, argon.ArgonError)
    with pytest.raises(argon.CommandNotFound) as unknown:
        client.command("noSuchAction")
    assert unknown.value.code == 59


def test_connect_writes_on_the_branch_only(client: argon.Client, direct: MongoClient[Doc]) -> None:
    client.connect("main", "sdk_shop").orders.insert_many([{"_id": i, "qty": i} for i in range(3)])
    client.branches.create("sdk-orders")
    db = client.connect("sdk-orders", "sdk_shop")
    assert db.name == "sdk_shop"
    db.orders.update_one({"_id": 1}, {"$set": {"qty": 100}})
    db.orders.insert_one({"_id": 10, "qty": 10})
    assert db.orders.count_documents({}) == 4

    assert direct.sdk_shop.orders.count_documents({}) == 3
    assert direct.sdk_shop.orders.find_one({"_id": 1}) == {"_id": 1, "qty": 1}
    assert client.connect("main", "sdk_shop").orders.count_documents({}) == 3

    # one cached MongoClient per branch
    assert client.connect("sdk-orders").client is db.client
    stats = client.branches.get("sdk-orders").stats
    assert stats is not None and stats.changes == 2 and "sdk_shop.orders" in stats.collections


def test_default_database_comes_from_the_uri(stack: tuple[Process, Process]) -> None:
    proxy = stack[1]
    with argon.Client(f"mongodb://127.0.0.1:{proxy.port}/ml_database") as c:
        assert c.connect("main").name == "ml_database"
    with argon.Client(proxy.uri) as c:
        assert c.connect("main").name == "test"
        assert c.connect("main", "other").name == "other"


def test_switch_changes_the_default_branch(
    client: argon.Client, stack: tuple[Process, Process]
) -> None:
    client.branches.create("sdk-switch")
    plain: MongoClient[Doc] = MongoClient(stack[1].uri)
    try:
        assert client.branches.switch("sdk-switch") == "sdk-switch"
        assert client.status().default_branch == "sdk-switch"
        plain.sdk_sw.c.insert_one({"_id": 1})  # names no branch: goes to the default
    finally:
        client.branches.switch("main")
        plain.close()
    assert client.connect("main", "sdk_sw").c.count_documents({}) == 0
    assert client.connect("sdk-switch", "sdk_sw").c.count_documents({}) == 1


def test_unreachable_proxy_is_its_own_error() -> None:
    uri = f"mongodb://127.0.0.1:{free_port()}"
    with argon.Client(uri, timeout_ms=300) as c, pytest.raises(argon.ProxyUnreachable) as info:
        c.status()
    assert "argon serve" in info.value.message


def test_uri_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(addressing.ENV_URI, raising=False)
    assert argon.Client().uri == "mongodb://127.0.0.1:27018"
    monkeypatch.setenv(addressing.ENV_URI, "mongodb://envhost:1")
    assert argon.Client().uri == "mongodb://envhost:1"
    assert argon.Client("mongodb://arg:2").uri == "mongodb://arg:2"


def test_addressing_matches_the_proxy() -> None:
    for db, branch, at in [
        ("ml", "exp/alice", None),
        ("ml", "v1.2", "lsn-12"),
        ("x", "main", None),
    ]:
        ref = f"{branch}@{at}" if at else branch
        assert addressing.db_name(db, ref) == naming.format_db(db, branch, at)
    assert addressing.redact("mongodb://u:secret@h:1/db") == "mongodb://u:***@h:1/db"


# -- handles, collaboration and the module-level functions ----------------------


def test_branch_handle(default: argon.Client) -> None:
    b = argon.Branch.create("sdk-handle", from_branch="main")
    assert (b.name, b.parent) == ("sdk-handle", "main")
    assert isinstance(b.created_at, dt.datetime)
    b.connect("sdk_h").c.insert_one({"_id": 1})
    stats = b.get_stats()
    assert stats.changes == 1 and stats.collections == ("sdk_h.c",)
    assert argon.Branch("sdk-handle").name == "sdk-handle"
    with pytest.raises(argon.BranchNotFound):
        argon.Branch("sdk-no-such-branch")
    # Without auth on the proxy a grant would protect nothing: refused, not ignored.
    with pytest.raises(argon.ArgonError) as refused:
        b.grant_access("alice@company.com", "write")
    assert refused.value.code == 20 and "needs authentication" in str(refused.value)


def test_branch_manager(client: argon.Client) -> None:
    manager = BranchManager(client)
    b = manager.create_branch(
        name="churn/alice", from_branch="main", description="Personal branch for alice"
    )
    assert isinstance(b, argon.Branch) and b.parent == "main"
    assert client.branches.get("churn/alice").description == "Personal branch for alice"
    with pytest.raises(argon.ArgonError, match="needs authentication"):
        manager.grant_access("churn/alice", "alice@company.com", "write")


def test_seed_functions(default: argon.Client, tmp_path: Path) -> None:
    argon.create_branch("etl-pipeline-dev")
    db = argon.connect("etl-pipeline-dev", "etl")
    db.raw_data.insert_many([{"_id": i, "userId": i, "event": "click"} for i in range(3)])
    assert argon.connect("main", "etl").raw_data.count_documents({}) == 0

    listed = {b.name: b for b in argon.list_branches()}
    dev = listed["etl-pipeline-dev"]
    assert dev.parent == "main" and isinstance(dev.created_at, dt.datetime)
    assert isinstance(dev.last_activity, dt.datetime)
    assert dev.last_activity < dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(1)

    argon.tag_branch("etl-pipeline-dev", "validated")
    assert argon.get_branch_tags("etl-pipeline-dev") == ["validated"]

    out = tmp_path / "raw.json"
    assert argon.export_collection("etl-pipeline-dev", "raw_data", out, db="etl") == 3
    lines = out.read_text().splitlines()
    assert [json.loads(line)["_id"] for line in lines] == [0, 1, 2]

    merged = argon.merge_branch("etl-pipeline-dev", "main", strategy="theirs")
    assert merged.status == "applied" and merged.counts.inserted == 3
    assert argon.connect("main", "etl").raw_data.count_documents({}) == 3


def test_snapshot_then_branch_from_it(default: argon.Client) -> None:
    argon.connect("main", "snap").c.insert_one({"_id": 1, "v": "before"})
    snap = argon.create_snapshot(branch="main", name="pre-debug-INC-1")
    assert snap.snapshot and snap.read_only
    argon.connect("main", "snap").c.update_one({"_id": 1}, {"$set": {"v": "after"}})
    debug = argon.create_branch(name="debug/INC-1", from_snapshot=snap)
    assert debug.parent == "pre-debug-INC-1"
    assert argon.connect("debug/INC-1", "snap").c.find_one({"_id": 1}) == {"_id": 1, "v": "before"}
    with pytest.raises(OperationFailure) as ro:  # data operations raise pymongo's errors
        argon.connect("pre-debug-INC-1", "snap").c.insert_one({"_id": 2})
    assert ro.value.code == 2004
    argon.delete_branch("debug/INC-1")


def test_archive(default: argon.Client) -> None:
    argon.create_branch("experiment/old")
    archived = argon.archive_branch("experiment/old")
    assert archived.archived and archived.read_only
    assert "experiment/old" not in [b.name for b in argon.list_branches()]
    assert "experiment/old" in [b.name for b in argon.list_branches(all=True)]


# -- merges ----------------------------------------------------------------------


def _conflicting_branch(client: argon.Client, name: str, db: str) -> None:
    """Branch ``name`` and main both change document 1 of ``db.c``."""
    client.connect("main", db).c.insert_many([{"_id": 1, "v": 0}, {"_id": 2, "v": 0}])
    client.branches.create(name)
    client.connect(name, db).c.update_one({"_id": 1}, {"$set": {"v": "branch"}})
    client.connect(name, db).c.update_one({"_id": 2}, {"$set": {"v": "branch"}})
    client.connect("main", db).c.update_one({"_id": 1}, {"$set": {"v": "main"}})


def test_merge_conflict_carries_the_merge(client: argon.Client) -> None:
    _conflicting_branch(client, "sdk-conflict", "mc")
    with pytest.raises(argon.MergeConflictError) as info:
        client.branches.merge("sdk-conflict", into="main")
    assert info.value.code == 2010
    merge = info.value.merge
    assert merge is not None and merge.status == "conflicts"
    assert merge.counts.conflicts == 1
    (conflict,) = merge.conflicts
    assert (conflict.ns, conflict.doc_id, conflict.kind) == ("mc.c", 1, "both-changed")
    assert conflict.paths == ("v",)
    assert client.connect("main", "mc").c.find_one({"_id": 2}) == {"_id": 2, "v": 0}

    assert [c.doc_id for c in client.merges.conflicts(merge.id)] == [1]
    with pytest.raises(argon.MergeConflictError):  # unresolved conflicts: refused
        client.merges.apply(merge.id)


def test_resolve_then_apply(client: argon.Client) -> None:
    _conflicting_branch(client, "sdk-resolve", "mr")
    with pytest.raises(argon.MergeConflictError) as info:
        client.branches.merge("sdk-resolve")
    merge = info.value.merge
    assert merge is not None
    resolved = client.merges.resolve(merge.id, "mr.c", 1, "theirs")
    assert resolved.id == merge.id
    (conflict,) = client.merges.conflicts(merge.id)
    assert conflict.resolution is not None
    applied = client.merges.apply(merge.id)
    assert applied.status == "applied" and applied.applied_lsns is not None
    assert client.connect("main", "mr").c.find_one({"_id": 1}) == {"_id": 1, "v": "branch"}


def test_manual_strategy_is_fail(client: argon.Client) -> None:
    _conflicting_branch(client, "sdk-manual", "mm")
    with pytest.raises(argon.MergeConflictError):
        client.branches.merge("sdk-manual", strategy="manual")


def test_ours_keeps_the_target(client: argon.Client) -> None:
    _conflicting_branch(client, "sdk-ours", "mo")
    merge = client.branches.merge("sdk-ours", strategy="ours")
    assert merge.status == "applied"
    docs = list(client.connect("main", "mo").c.find().sort("_id", 1))
    assert docs == [{"_id": 1, "v": "main"}, {"_id": 2, "v": "branch"}]


def test_preview_then_stale(client: argon.Client) -> None:
    client.connect("main", "ms").c.insert_one({"_id": 1, "v": 0})
    client.branches.create("sdk-stale")
    client.connect("sdk-stale", "ms").c.insert_one({"_id": 2, "v": 0})
    preview = client.branches.merge("sdk-stale", dry_run=True)
    assert preview.status == "preview" and preview.counts.inserted == 1
    assert client.connect("main", "ms").c.count_documents({}) == 1
    client.connect("main", "ms").c.insert_one({"_id": 3})
    with pytest.raises(argon.StaleMergeError) as stale:
        client.merges.apply(preview.id)
    assert stale.value.code == 2011
    with pytest.raises(argon.MergeNotFound):
        client.merges.apply("no-such-merge")


def test_merge_carries_index_changes(client: argon.Client) -> None:
    client.connect("main", "mx").c.insert_one({"_id": 1, "a": 1})
    client.branches.create("sdk-index")
    client.connect("sdk-index", "mx").c.create_index("a", unique=True)
    merge = client.branches.merge("sdk-index", into="main")
    assert [(c.ns, c.name, c.op) for c in merge.index_changes] == [("mx.c", "a_1", "create")]
    assert client.connect("main", "mx").c.index_information()["a_1"]["unique"] is True


def test_projects(client: argon.Client) -> None:
    made = client.projects.create("sdk-proj", ["projdb"], description="two teams")
    assert (made.name, made.databases, made.description) == ("sdk-proj", ("projdb",), "two teams")
    with pytest.raises(argon.ProjectExists):
        client.projects.create("sdk-proj")
    info = client.branches.create("sdk-proj/feat", project="sdk-proj")
    assert info.project == "sdk-proj"
    child = client.branches.create("sdk-proj/feat/sub", from_branch="sdk-proj/feat")
    assert child.project == "sdk-proj"  # inherited
    with pytest.raises(argon.ProjectNotFound):
        client.branches.create("sdk-nope", project="missing")
    listed = {p.name: p for p in client.projects.list()}
    assert listed["default"].databases is None
    assert listed["sdk-proj"].branches == ("sdk-proj/feat", "sdk-proj/feat/sub")
    assert [b.name for b in client.branches.list(project="sdk-proj")] == [
        "main",
        "sdk-proj/feat",
        "sdk-proj/feat/sub",
    ]
    client.connect("sdk-proj/feat", "projdb").c.insert_one({"_id": 1})
    with pytest.raises(pymongo.errors.OperationFailure) as err:
        client.connect("sdk-proj/feat", "elsewhere").c.find_one()
    assert err.value.code == 2018
    with pytest.raises(argon.ProjectInUse):
        client.projects.delete("sdk-proj")
    client.branches.delete("sdk-proj/feat/sub")
    client.branches.delete("sdk-proj/feat")
    assert client.projects.delete("sdk-proj") == "sdk-proj"


def test_merge_granularity(client: argon.Client) -> None:
    got = client.set_merge_granularity("mg", "c", "document")
    assert (got.db, got.collection, got.granularity) == ("mg", "c", "document")


# -- diff, tags, history -----------------------------------------------------------


def test_diff(client: argon.Client) -> None:
    client.connect("main", "df").c.insert_many([{"_id": 1, "a": 1}, {"_id": 2, "a": 2}])
    client.branches.create("sdk-diff")
    on = client.connect("sdk-diff", "df").c
    on.update_one({"_id": 1}, {"$set": {"a": 10}})
    on.delete_one({"_id": 2})
    on.insert_one({"_id": 3, "a": 3})
    diff = client.diff("main", "sdk-diff", db="df", collection="c")
    assert (diff.from_ref, diff.to_ref) == ("main", "sdk-diff")
    assert (diff.summary.added, diff.summary.removed, diff.summary.modified) == (1, 1, 1)
    (col,) = diff.collections
    changes = {d.doc_id: d for d in col.documents}
    assert changes[3].change == "added" and changes[2].change == "removed"
    (field,) = changes[1].fields
    assert (field.path, field.change, field.before, field.after) == ("a", "modified", 1, 10)


def test_tags(client: argon.Client) -> None:
    client.branches.create("sdk-tags")
    client.connect("sdk-tags", "tg").c.insert_one({"_id": 1})
    tag = client.tags.create("sdk-v1", "sdk-tags", message="first")
    assert (tag.name, tag.branch, tag.message) == ("sdk-v1", "sdk-tags", "first")
    assert tag.lsn == client.branches.get("sdk-tags").head_lsn
    assert [t.name for t in client.tags.list("sdk-tags")] == ["sdk-v1"]
    assert "sdk-v1" in client.branches.get("sdk-tags").tags
    with pytest.raises(argon.TagExists):
        client.tags.create("sdk-v1", "sdk-tags")
    client.tags.delete("sdk-v1")
    with pytest.raises(argon.TagNotFound):
        client.tags.delete("sdk-v1")


def test_uri_for_branches_tags_and_points(client: argon.Client) -> None:
    client.branches.create("sdk-uri")
    client.connect("sdk-uri", "ur").c.insert_one({"_id": 1, "v": 1})
    lsn = client.branches.get("sdk-uri").head_lsn
    client.tags.create("sdk-uri-tag", "sdk-uri")
    client.connect("sdk-uri", "ur").c.update_one({"_id": 1}, {"$set": {"v": 2}})

    branch_uri = client.uri_for("sdk-uri", db="ur")
    assert "appName=argon:sdk-uri" in branch_uri
    at_uri = client.uri_for(f"sdk-uri@lsn-{lsn}", db="ur")
    tag_uri = client.uri_for("sdk-uri-tag", db="ur")
    for uri, v in ((branch_uri, 2), (at_uri, 1), (tag_uri, 1)):
        c: MongoClient[Doc] = MongoClient(uri)
        try:
            assert c.get_default_database().c.find_one({"_id": 1}) == {"_id": 1, "v": v}
        finally:
            c.close()
    with pytest.raises(argon.BadValue):
        client.uri_for("sdk-uri-tag")
    with pytest.raises(argon.BranchNotFound):
        client.uri_for("sdk-no-such-ref", db="ur")


def test_time_travel_and_branch_from_the_past(client: argon.Client) -> None:
    client.branches.create("sdk-tt")
    client.connect("sdk-tt", "tt").c.insert_one({"_id": 1, "v": 1})
    (span,) = client.time_travel_info("sdk-tt")
    assert span.branch == "sdk-tt" and span.latest_lsn > span.earliest_lsn
    client.connect("sdk-tt", "tt").c.update_one({"_id": 1}, {"$set": {"v": 2}})
    past = client.branches.create("sdk-tt-past", from_branch="sdk-tt", lsn=span.latest_lsn)
    assert past.parent is not None
    assert client.connect("sdk-tt-past", "tt").c.find_one({"_id": 1}) == {"_id": 1, "v": 1}
    with pytest.raises(argon.PointOutOfRange):
        client.branches.create("sdk-tt-never", from_branch="sdk-tt", lsn=0)


def test_log_and_blame(client: argon.Client) -> None:
    client.branches.create("sdk-log")
    c = client.connect("sdk-log", "lg").c
    c.insert_one({"_id": "k", "a": 1, "b": 1})
    c.update_one({"_id": "k"}, {"$set": {"b": 2}})
    entries = client.log("sdk-log", db="lg", collection="c")
    assert [e.op for e in entries] == ["update", "insert"]  # newest first
    assert entries[0].lsn > entries[1].lsn and entries[0].branch == "sdk-log"
    assert all(e.ns == "lg.c" and e.doc_id == "k" for e in entries)
    assert isinstance(entries[0].ts, dt.datetime)
    assert len(client.log("sdk-log", db="lg", collection="c", doc_id="k", limit=1)) == 1

    blame = client.blame("sdk-log", "lg", "c", "k")
    by_path = {f.path: f.lsn for f in blame.fields}
    assert by_path["b"] == entries[0].lsn and by_path["a"] == entries[1].lsn
    assert blame.document == {"_id": "k", "a": 1, "b": 2}


def test_reset_to_a_tag(client: argon.Client) -> None:
    client.branches.create("sdk-reset")
    c = client.connect("sdk-reset", "rs").c
    c.insert_one({"_id": 1, "v": 1})
    client.tags.create("sdk-reset-good", "sdk-reset")
    c.update_one({"_id": 1}, {"$set": {"v": 2}})
    c.insert_one({"_id": 2})

    preview = client.reset("sdk-reset", tag="sdk-reset-good", dry_run=True)
    assert preview.discarded_documents == 2 and preview.applied_lsns is None
    assert c.count_documents({}) == 2
    done = client.reset("sdk-reset", tag="sdk-reset-good")
    assert done.applied_lsns is not None
    assert list(c.find()) == [{"_id": 1, "v": 1}]
    with pytest.raises(argon.BadValue):
        client.reset("sdk-reset")


def test_undo_a_range(client: argon.Client) -> None:
    client.branches.create("sdk-undo")
    c = client.connect("sdk-undo", "ud").c
    c.insert_one({"_id": 1, "v": 1})
    c.update_one({"_id": 1}, {"$set": {"v": 2}})
    (last, *_) = client.log("sdk-undo")
    preview = client.undo("sdk-undo", last.lsn, last.lsn, dry_run=True)
    assert preview.documents == 1 and not preview.refused
    done = client.undo("sdk-undo", last.lsn, last.lsn)
    assert done.documents == 1 and done.applied_lsns is not None
    assert c.find_one({"_id": 1}) == {"_id": 1, "v": 1}


def test_gc_dry_run(client: argon.Client) -> None:
    result = client.gc(dry_run=True)
    assert result.wal_removed >= 0
