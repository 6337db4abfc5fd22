"""A/B test: two branches get different recommendation algorithms, are
compared, the better one is merged and both are deleted."""

from __future__ import annotations

import os
from typing import Any

import argon

DB = "ab_database"


def recommend(db: Any, boost: float) -> None:
    """The 'algorithm' under test: boost the score of some products."""
    db.products.update_many({"category": "books"}, {"$mul": {"score": boost}})
    db.sessions.insert_many([{"user": u, "converted": u % 10 < 5 * boost} for u in range(30)])


def conversion(db: Any) -> float:
    total = db.sessions.count_documents({})
    return db.sessions.count_documents({"converted": True}) / total if total else 0.0


def run(uri: str | None = None) -> dict[str, Any]:
    with argon.Client(uri) as client:
        argon.set_default_client(client)
        try:
            main = client.connect("main", DB)
            main.products.delete_many({})
            main.sessions.delete_many({})
            main.products.insert_many(
                [{"_id": i, "category": ["books", "music"][i % 2], "score": 1.0} for i in range(10)]
            )
            for name in ("ab-test-control", "ab-test-treatment"):
                if name in [b.name for b in argon.list_branches()]:
                    argon.delete_branch(name)
                argon.create_branch(name, from_branch="main")
            recommend(argon.connect("ab-test-control", DB), 1.0)
            recommend(argon.connect("ab-test-treatment", DB), 1.5)
            control = conversion(argon.connect("ab-test-control", DB))
            treatment = conversion(argon.connect("ab-test-treatment", DB))
            compared = client.diff("ab-test-control", "ab-test-treatment", db=DB)
            merged = None
            if treatment > control:
                merged = argon.merge_branch("ab-test-treatment", "main").status
            argon.delete_branch("ab-test-treatment")
            argon.delete_branch("ab-test-control")
            return {
                "control": round(control, 3),
                "treatment": round(treatment, 3),
                "differences": compared.summary,
                "merged": merged,
                "main_books_score": main.products.find_one({"category": "books"})["score"],
                "branches_left": [b.name for b in argon.list_branches() if "ab-test" in b.name],
            }
        finally:
            argon.set_default_client(None)


if __name__ == "__main__":
    for key, value in run(os.environ.get("ARGON_MONGODB_URI")).items():
        print(f"{key}: {value}")
