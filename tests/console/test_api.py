"""The REST API, endpoint by endpoint, against a real proxy and upstream.

Every operation of the OpenAPI document is exercised here (``TESTED`` must
list them all), and the document itself validates as OpenAPI 3.1.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from openapi_spec_validator import validate
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from argon_proxy.errors import (
    BAD_VALUE,
    BRANCH_EXISTS,
    BRANCH_NOT_FOUND,
    PROTECTED_BRANCH,
    STALE_MERGE,
    TAG_NOT_FOUND,
)

from ..processes import Process
from ..stacks import own_stack
from .http import Answer, call

Client = MongoClient[dict[str, Any]]

TESTED = {
    "status_get",
    "listBranches_get",
    "createBranch_post",
    "getBranch_get",
    "deleteBranch_delete",
    "archiveBranch_post",
    "protectBranch_put",
    "setBranchExpiry_put",
    "log_get",
    "timeTravelInfo_get",
    "diff_get",
    "merge_post",
    "mergeConflicts_get",
    "resolveConflict_post",
    "applyMerge_post",
    "listTags_get",
    "createTag_post",
    "deleteTag_delete",
    "createSnapshot_post",
    "documents",
    "rates",
    "whoami",
    "openapi",
}


@pytest.fixture(scope="module")
def proxy() -> Iterator[Process]:
    with own_stack() as (_up, proxy):
        yield proxy


@pytest.fixture(scope="module")
def client(proxy: Process) -> Iterator[Client]:
    with Client(proxy.uri, appname="api-tests") as c:
        yield c


def ok(answer: Answer) -> dict[str, Any]:
    assert answer.status == 200, answer.body
    assert answer.body.get("ok", 1) == 1
    return dict(answer.body)


def refused(answer: Answer, status: int, code: int) -> dict[str, Any]:
    assert answer.status == status, answer.body
    assert answer.body["ok"] == 0 and answer.body["code"] == code, answer.body
    assert answer.body["codeName"] and answer.body["errmsg"]
    return dict(answer.body)


def test_the_openapi_document_validates_and_every_operation_is_tested(proxy: Process) -> None:
    spec = ok(call(proxy, "GET", "/api/v1/openapi.json"))
    validate(spec)
    operations = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    assert operations == TESTED


def test_status_and_whoami(proxy: Process) -> None:
    status = ok(call(proxy, "GET", "/api/v1/status"))
    assert status["default_branch"] == "main" and isinstance(status["lsn"], int)
    assert ok(call(proxy, "GET", "/api/v1/whoami")) == {"user": None, "auth": False}


def test_branches_are_created_listed_described_and_deleted(proxy: Process, client: Client) -> None:
    client.shop.items.insert_many([{"_id": i, "x": i} for i in range(3)])
    made = ok(call(proxy, "POST", "/api/v1/branches", {"name": "api-dev", "from": "main"}))
    assert made["branch"]["name"] == "api-dev" and made["branch"]["parent"] == "main"
    client["shop@api-dev"].items.update_one({"_id": 1}, {"$set": {"x": 10}})

    listed = ok(call(proxy, "GET", "/api/v1/branches?stats=true"))
    by_name = {b["name"]: b for b in listed["branches"]}
    assert by_name["api-dev"]["stats"]["changes"] == 1
    assert by_name["api-dev"]["stats"]["overlay_documents"] == 1
    assert "stats" not in ok(call(proxy, "GET", "/api/v1/branches"))["branches"][0]

    one = ok(call(proxy, "GET", "/api/v1/branches/api-dev"))["branch"]
    assert one["head_lsn"] > one["base_lsn"] and one["stats"]["changes"] == 1

    refused(call(proxy, "POST", "/api/v1/branches", {"name": "api-dev"}), 409, BRANCH_EXISTS)
    ok(call(proxy, "DELETE", "/api/v1/branches/api-dev"))
    refused(call(proxy, "GET", "/api/v1/branches/api-dev"), 404, BRANCH_NOT_FOUND)
    refused(call(proxy, "DELETE", "/api/v1/branches/api-dev"), 404, BRANCH_NOT_FOUND)


def test_bad_requests_are_refused_with_mongodb_errors(proxy: Process) -> None:
    refused(call(proxy, "POST", "/api/v1/branches", raw=b"{not json"), 400, BAD_VALUE)
    refused(call(proxy, "POST", "/api/v1/branches", raw=b"[1, 2]"), 400, BAD_VALUE)
    refused(call(proxy, "GET", "/api/v1/branches/main/log?limit=many"), 400, BAD_VALUE)
    refused(call(proxy, "GET", "/api/v1/branches?stats=maybe"), 400, BAD_VALUE)
    refused(call(proxy, "GET", "/api/v1/documents/shop/items?limit=0"), 400, BAD_VALUE)
    refused(call(proxy, "GET", "/api/v1/documents/shop/items?filter=[1]"), 400, BAD_VALUE)


def test_archive_protect_expiry_and_snapshots(proxy: Process, client: Client) -> None:
    ok(call(proxy, "POST", "/api/v1/branches", {"name": "api-life"}))
    guarded = ok(call(proxy, "PUT", "/api/v1/branches/api-life/protection", {"protected": True}))
    assert guarded["branch"]["protected"] is True
    with pytest.raises(OperationFailure) as caught:
        client["shop@api-life"].items.insert_one({"_id": 99})
    assert caught.value.code == PROTECTED_BRANCH
    refused(call(proxy, "DELETE", "/api/v1/branches/api-life"), 409, PROTECTED_BRANCH)
    ok(call(proxy, "PUT", "/api/v1/branches/api-life/protection", {"protected": False}))

    expiring = {"expires": {"$date": "2099-01-02T03:04:05Z"}}
    dated = ok(call(proxy, "PUT", "/api/v1/branches/api-life/expiry", expiring))
    assert dated["branch"]["expires"] == {"$date": "2099-01-02T03:04:05Z"}
    cleared = ok(call(proxy, "PUT", "/api/v1/branches/api-life/expiry", {"expires": None}))
    assert cleared["branch"]["expires"] is None

    snap = ok(call(proxy, "POST", "/api/v1/snapshots", {"name": "api-snap", "branch": "api-life"}))
    assert snap["branch"]["snapshot"] is True and snap["branch"]["read_only"] is True

    archived = ok(call(proxy, "POST", "/api/v1/branches/api-life/archive"))
    assert archived["branch"]["archived"] is True
    names = [b["name"] for b in ok(call(proxy, "GET", "/api/v1/branches"))["branches"]]
    assert "api-life" not in names
    names = [b["name"] for b in ok(call(proxy, "GET", "/api/v1/branches?all=true"))["branches"]]
    assert "api-life" in names


def test_the_log_shows_each_change_field_by_field_and_filters(
    proxy: Process, client: Client
) -> None:
    ok(call(proxy, "POST", "/api/v1/branches", {"name": "api-log"}))
    on = client["shop@api-log"]
    on.items.update_one({"_id": 2}, {"$set": {"x": 20, "tag": "new"}})
    on.other.insert_one({"_id": "o", "v": 1})
    with Client(proxy.uri, appname="someone-else") as other:
        other["shop@api-log"].items.delete_one({"_id": 0})

    entries = ok(call(proxy, "GET", "/api/v1/branches/api-log/log"))["entries"]
    assert [e["op"] for e in entries] == ["delete", "insert", "update"]
    update = entries[2]
    assert update["before"] == {"_id": 2, "x": 2}
    assert update["after"] == {"_id": 2, "x": 20, "tag": "new"}
    assert {c["path"]: (c.get("before"), c.get("after")) for c in update["changes"]} == {
        "x": (2, 20),
        "tag": (None, "new"),
    }
    assert update["client"]["app"] == "api-tests"

    def log(**params: Any) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode(params)
        return list(ok(call(proxy, "GET", f"/api/v1/branches/api-log/log?{query}"))["entries"])

    assert [e["ns"] for e in log(db="shop", collection="other")] == ["shop.other"]
    assert [e["op"] for e in log(app="someone-else")] == ["delete"]
    # A document's log follows it down the lineage: main's insert, then the branch's update.
    one = log(db="shop", collection="items", docId="2")
    assert [(e["branch"], e["op"]) for e in one] == [("api-log", "update"), ("main", "insert")]
    assert [e["docId"] for e in log(db="shop", collection="other", docId='"o"')] == ["o"]
    assert len(log(limit=1)) == 1
    lsn = update["lsn"]
    assert [e["lsn"] for e in log(sinceLsn=lsn, untilLsn=lsn)] == [lsn]
    assert log(user="nobody") == []


def test_diff_time_travel_and_tags(proxy: Process, client: Client) -> None:
    ok(call(proxy, "POST", "/api/v1/branches", {"name": "api-tt"}))
    on = client["travel@api-tt"].docs
    on.insert_many([{"_id": i, "v": 0} for i in range(3)])
    tag = ok(call(proxy, "POST", "/api/v1/tags", {"name": "api-t0", "branch": "api-tt"}))
    assert (tag["tag"]["name"], tag["tag"]["branch"]) == ("api-t0", "api-tt")
    lsn = ok(call(proxy, "GET", "/api/v1/branches/api-tt"))["branch"]["head_lsn"]
    on.update_one({"_id": 1}, {"$set": {"v": 1}})

    tags = ok(call(proxy, "GET", "/api/v1/tags?branch=api-tt"))["tags"]
    assert [t["name"] for t in tags] == ["api-t0"]

    diff = ok(call(proxy, "GET", "/api/v1/diff?from=api-t0&to=api-tt&collection=docs"))["diff"]
    (docs,) = diff["collections"]
    assert docs["modified"] == 1
    assert docs["documents"][0]["fields"] == [
        {"path": "v", "change": "modified", "before": 0, "after": 1}
    ]

    def documents(ref: str, **params: Any) -> list[Any]:
        query = urllib.parse.urlencode({"ref": ref, **params})
        return list(ok(call(proxy, "GET", f"/api/v1/documents/travel/docs?{query}"))["documents"])

    assert documents("api-t0") == [{"_id": i, "v": 0} for i in range(3)]
    assert documents(f"api-tt@lsn-{lsn}", filter=json.dumps({"_id": 1})) == [{"_id": 1, "v": 0}]
    assert documents("api-tt", filter=json.dumps({"v": 1})) == [{"_id": 1, "v": 1}]
    assert documents("api-tt", limit=1, skip=2) == [{"_id": 2, "v": 0}]
    assert documents("main") == []  # the branch's writes never reach main
    refused(call(proxy, "GET", "/api/v1/documents/travel/docs?ref=nope"), 404, BRANCH_NOT_FOUND)

    (reach,) = ok(call(proxy, "GET", "/api/v1/branches/api-tt/timetravel"))["branches"]
    assert reach["branch"] == "api-tt"
    assert reach["earliest_lsn"] <= lsn < reach["latest_lsn"]

    ok(call(proxy, "DELETE", "/api/v1/tags/api-t0"))
    refused(call(proxy, "DELETE", "/api/v1/tags/api-t0"), 404, TAG_NOT_FOUND)


def test_a_merge_is_previewed_resolved_and_applied(proxy: Process, client: Client) -> None:
    client.merging.docs.insert_many([{"_id": 1, "v": "base"}, {"_id": 2, "v": "base"}])
    ok(call(proxy, "POST", "/api/v1/branches", {"name": "api-merge"}))
    client["merging@api-merge"].docs.update_one({"_id": 1}, {"$set": {"v": "theirs"}})
    client["merging@api-merge"].docs.insert_one({"_id": 3, "v": "new"})
    client.merging.docs.update_one({"_id": 1}, {"$set": {"v": "ours"}})

    body = {"source": "api-merge", "into": "main", "dryRun": True}
    preview = ok(call(proxy, "POST", "/api/v1/merges", body))["merge"]
    assert preview["status"] == "preview"
    conflicts = ok(call(proxy, "GET", f"/api/v1/merges/{preview['id']}/conflicts"))["conflicts"]
    (conflict,) = conflicts
    assert (conflict["base"]["v"], conflict["ours"]["v"], conflict["theirs"]["v"]) == (
        "base",
        "ours",
        "theirs",
    )
    edited = {"_id": 1, "v": "edited"}
    resolution = {"ns": "merging.docs", "docId": 1, "take": "document", "document": edited}
    ok(call(proxy, "POST", f"/api/v1/merges/{preview['id']}/resolutions", resolution))
    applied = ok(call(proxy, "POST", f"/api/v1/merges/{preview['id']}/apply"))["merge"]
    assert applied["status"] == "applied"
    assert list(client.merging.docs.find({}, sort=[("_id", 1)])) == [
        edited,
        {"_id": 2, "v": "base"},
        {"_id": 3, "v": "new"},
    ]

    # A preview the branches have moved past is refused, not applied.
    client["merging@api-merge"].docs.update_one({"_id": 2}, {"$set": {"v": "later"}})
    stale = ok(call(proxy, "POST", "/api/v1/merges", body))["merge"]
    client.merging.docs.insert_one({"_id": 4})
    refused(call(proxy, "POST", f"/api/v1/merges/{stale['id']}/apply"), 409, STALE_MERGE)


def test_rates_count_requests_per_branch(proxy: Process, client: Client) -> None:
    ok(call(proxy, "POST", "/api/v1/branches", {"name": "api-rates"}))
    before = ok(call(proxy, "GET", "/api/v1/rates"))
    for _ in range(5):
        client["shop@api-rates"].items.find_one({"_id": 1})
    after = ok(call(proxy, "GET", "/api/v1/rates"))
    assert after["requests"]["api-rates"] - before["requests"].get("api-rates", 0) >= 5
    assert after["at"] >= before["at"]
