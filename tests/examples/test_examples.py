"""The seed use cases, run as written in examples/, through the CLI and the SDK,
against `argon serve` on its embedded default (no upstream given)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from ..processes import ROOT, free_port, wait_for_port

ARGON = str(Path(sys.executable).with_name("argon"))


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARGON_")}
    data = tmp_path_factory.mktemp("argon-data")
    proc = subprocess.Popen(
        [
            ARGON,
            "serve",
            "--port",
            str(port),
            "--metrics-port",
            "0",
            "--console-port",
            "0",
            "--data-dir",
            str(data),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, 90, proc)
        yield f"mongodb://127.0.0.1:{port}/?directConnection=true"
    finally:
        proc.terminate()
        proc.wait(30)


def example(name: str) -> Any:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def cli(uri: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ARGON_MONGODB_URI": uri}
    return subprocess.run([ARGON, *args], env=env, capture_output=True, text=True, timeout=120)


def test_ml_training_through_the_cli(uri: str) -> None:
    """The seed's shell steps, then its unmodified pymongo script on the switched branch."""
    ml = example("ml_training")
    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    client.ml_database.training_data.delete_many({})
    client.ml_database.training_data.insert_many(
        [
            {"_id": i, "category": "outlier" if i % 5 == 0 else "normal", "weight": 1.0}
            for i in range(50)
        ]
    )
    assert cli(uri, "branch", "create", "exp/cli", "--from", "main").returncode == 0
    assert cli(uri, "branch", "switch", "exp/cli").returncode == 0
    try:
        metrics = ml.train(uri)  # no branch in the URI: the proxy's default branch
    finally:
        assert cli(uri, "branch", "switch", "main").returncode == 0
    assert metrics["samples"] == 70
    assert client.ml_database.training_data.count_documents({}) == 50  # main untouched

    compared = cli(
        uri,
        "branch",
        "compare",
        "exp/cli",
        "--with",
        "main",
        "--collection",
        "experiment_results",
        "--json",
    )
    assert compared.returncode == 0, compared.stderr
    assert json.loads(compared.stdout)["summary"]["added"] == 1
    merged = cli(uri, "branch", "merge", "exp/cli", "--into", "main", "--json")
    assert merged.returncode == 0, merged.stderr
    assert json.loads(merged.stdout)["status"] == "applied"
    assert client.ml_database.training_data.count_documents({"weight": 0.1}) == 10
    assert (
        client.ml_database.experiment_results.count_documents({"branch": "model-v2-experiment"})
        == 1
    )
    client.close()


def test_ml_training_example(uri: str) -> None:
    out = example("ml_training").run(uri)
    assert out["main_untouched_before_merge"] is True
    assert out["results_added"] == 1
    assert out["merge_status"] == "applied"
    assert out["main_samples_after_merge"] == 220


def test_ab_testing_example(uri: str) -> None:
    out = example("ab_testing").run(uri)
    assert out["treatment"] > out["control"]
    assert out["merged"] == "applied"
    assert out["main_books_score"] == 1.5
    assert out["differences"].modified > 0
    assert out["branches_left"] == []


def test_etl_pipeline_example(uri: str) -> None:
    out = example("etl_pipeline").run(uri)
    assert out["extracted"] == out["transformed"] == out["main_transformed"] == 30
    assert out["validated"] is True and out["tags"] == ["validated"]
    assert out["merged"] == "applied"


def test_production_debugging_example(uri: str) -> None:
    out = example("production_debugging").run(uri)
    assert out["orders_without_status"] == 4
    assert out["fixed_on_branch"] is True
    assert out["production_unchanged"] is True
    assert out["branch_sees_live_traffic"] is False  # the snapshot froze production
    lines = Path(out["export_file"]).read_text().splitlines()
    assert out["exported"] == len(lines) == 1
    assert json.loads(lines[0])["orders_without_status"] == 4
