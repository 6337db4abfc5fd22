"""Production debugging: snapshot main, debug on a branch of the snapshot
while production keeps writing, test a fix, export the findings, clean up."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path
from typing import Any

import argon

DB = "shop_database"


def run(uri: str | None = None, issue_id: str = "INCIDENT-2024-001") -> dict[str, Any]:
    with argon.Client(uri) as client:
        argon.set_default_client(client)
        try:
            prod = client.connect("main", DB)
            prod.orders.delete_many({})
            prod.orders.insert_many(
                [
                    {"_id": i, "user_id": i % 4, **({"status": "paid"} if i % 3 else {})}
                    for i in range(12)
                ]
            )
            debug_branch, snapshot_name = f"debug/{issue_id}", f"pre-debug-{issue_id}"
            for name in (debug_branch, snapshot_name):
                if name in [b.name for b in argon.list_branches(all=True)]:
                    argon.delete_branch(name)
            snapshot = argon.create_snapshot(branch="main", name=snapshot_name)
            argon.create_branch(name=debug_branch, from_snapshot=snapshot)
            db = argon.connect(debug_branch, DB)

            prod.orders.insert_one({"_id": 100, "user_id": 9, "status": "paid"})  # live traffic
            missing = db.orders.count_documents({"status": {"$exists": False}})
            db.issue_analysis.insert_one(
                {"issue": issue_id, "orders_without_status": missing, "at": dt.datetime.now(dt.UTC)}
            )
            db.orders.create_index([("user_id", 1), ("status", 1)])
            db.orders.update_many({"status": {"$exists": False}}, {"$set": {"status": "pending"}})
            fixed = db.orders.count_documents({"status": {"$exists": False}}) == 0

            out = Path(tempfile.mkdtemp()) / f"debug_{issue_id}_findings.json"
            exported = argon.export_collection(
                branch=debug_branch, collection="issue_analysis", output_file=out, db=DB
            )
            result = {
                "orders_without_status": missing,
                "fixed_on_branch": fixed,
                "production_unchanged": prod.orders.count_documents({"status": "pending"}) == 0,
                "branch_sees_live_traffic": db.orders.count_documents({"_id": 100}) == 1,
                "exported": exported,
                "export_file": str(out),
            }
            argon.delete_branch(debug_branch)
            argon.delete_branch(snapshot_name)
            return result
        finally:
            argon.set_default_client(None)


if __name__ == "__main__":
    for key, value in run(os.environ.get("ARGON_MONGODB_URI")).items():
        print(f"{key}: {value}")
