"""ETL development on a branch: extract, transform, validate, tag the branch
`validated`, then merge it into main with strategy theirs."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import argon

BRANCH = "etl-pipeline-dev"
DB = "etl_database"


def extract() -> int:
    db = argon.connect(BRANCH, DB)
    raw = [{"userId": u, "event": ["Click", "VIEW", "click"][u % 3], "time": u} for u in range(30)]
    db.raw_data.insert_many(raw)
    return len(raw)


def transform() -> int:
    db = argon.connect(BRANCH, DB)
    transformed = []
    for doc in db.raw_data.find({"processed": {"$ne": True}}):
        transformed.append(
            {
                "user_id": doc["userId"],
                "event_type": doc["event"].lower(),
                "timestamp": dt.datetime.fromtimestamp(doc["time"], dt.UTC),
            }
        )
        db.raw_data.update_one({"_id": doc["_id"]}, {"$set": {"processed": True}})
    if transformed:
        db.transformed_data.insert_many(transformed)
    return len(transformed)


def validate() -> bool:
    db = argon.connect(BRANCH, DB)
    checks = {
        "complete": db.transformed_data.count_documents({}) == db.raw_data.count_documents({}),
        "normalised": db.transformed_data.count_documents(
            {"event_type": {"$ne": "click", "$nin": ["view"]}}
        )
        == 0,
    }
    db.validation_results.insert_one({"timestamp": dt.datetime.now(dt.UTC), "results": checks})
    if all(checks.values()):
        argon.tag_branch(BRANCH, "validated")
    return all(checks.values())


def run(uri: str | None = None) -> dict[str, Any]:
    with argon.Client(uri) as client:
        argon.set_default_client(client)
        try:
            for name in ("validated",):
                if name in [t.name for t in client.tags.list()]:
                    client.tags.delete(name)
            if BRANCH in [b.name for b in argon.list_branches()]:
                argon.delete_branch(BRANCH)
            main = client.connect("main", DB)
            for coll in ("raw_data", "transformed_data", "validation_results"):
                main[coll].delete_many({})
            argon.create_branch(BRANCH, from_branch="main")
            extracted, transformed = extract(), transform()
            valid = validate()
            merged = None
            if "validated" in argon.get_branch_tags(BRANCH):
                merged = argon.merge_branch(BRANCH, "main", strategy="theirs").status
            return {
                "extracted": extracted,
                "transformed": transformed,
                "validated": valid,
                "tags": argon.get_branch_tags(BRANCH),
                "merged": merged,
                "main_transformed": main.transformed_data.count_documents({}),
            }
        finally:
            argon.set_default_client(None)


if __name__ == "__main__":
    for key, value in run(os.environ.get("ARGON_MONGODB_URI")).items():
        print(f"{key}: {value}")
