"""ML model training on a branch of the training data.

The seed flow: `argon branch create model-v2-experiment --from main`, an
unmodified pymongo script changes the training data on the branch (selected
by appName in its URI), results are compared with main, and the branch is
merged back. Main is untouched until the merge.
"""

from __future__ import annotations

import datetime as dt
import os
import random
from typing import Any

from pymongo import MongoClient

import argon

BRANCH = "model-v2-experiment"
DB = "ml_database"


def seed(client: argon.Client) -> None:
    """Production training data on main."""
    db = client.connect("main", DB)
    db.training_data.delete_many({})
    rng = random.Random(7)
    db.training_data.insert_many(
        [
            {
                "_id": i,
                "x": rng.random(),
                "category": "outlier" if i % 10 == 0 else "normal",
                "weight": 1.0,
            }
            for i in range(200)
        ]
    )


def train(uri: str) -> dict[str, Any]:
    """What the data scientist's script does, unmodified: only its URI names the branch."""
    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    db = client[DB]
    db.training_data.update_many({"category": "outlier"}, {"$set": {"weight": 0.1}})
    db.training_data.insert_many(
        [{"x": 0.5 + i / 100, "category": "augmented", "weight": 1.0} for i in range(20)]
    )
    total = sum(d["weight"] for d in db.training_data.find({}, {"weight": 1}))
    metrics = {"samples": db.training_data.count_documents({}), "total_weight": round(total, 2)}
    db.experiment_results.insert_one(
        {
            "experiment_id": "model-v2",
            "branch": BRANCH,
            "metrics": metrics,
            "timestamp": dt.datetime.now(dt.UTC),
        }
    )
    client.close()
    return metrics


def run(uri: str | None = None) -> dict[str, Any]:
    with argon.Client(uri) as client:
        seed(client)
        if BRANCH in [b.name for b in client.branches.list()]:
            client.branches.delete(BRANCH)
        client.branches.create(BRANCH, from_branch="main")
        metrics = train(client.uri_for(BRANCH))
        main_db = client.connect("main", DB)
        untouched = main_db.training_data.count_documents({"weight": 0.1}) == 0
        diff = client.diff("main", BRANCH, db=DB, collection="experiment_results")
        merged = client.branches.merge(BRANCH, "main")
        return {
            "metrics": metrics,
            "main_untouched_before_merge": untouched,
            "results_added": diff.summary.added,
            "merge_status": merged.status,
            "merged_counts": merged.counts,
            "main_samples_after_merge": main_db.training_data.count_documents({}),
        }


if __name__ == "__main__":
    for key, value in run(os.environ.get("ARGON_MONGODB_URI")).items():
        print(f"{key}: {value}")
