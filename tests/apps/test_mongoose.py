"""The shop app on Mongoose (Node) through Argon, on main then on a branch chosen by appName."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..processes import CLIENTS, Process
from ..stacks import own_stack
from .scenario import (
    ABORTED_ITEMS,
    COMMITTED_ITEMS,
    NEW_ORDERS,
    POSITIONAL_ORDER,
    SEED_ORDERS,
    SEED_USERS,
    check_app,
    check_positional_update,
    renamed,
)

APP = Path(__file__).with_name("mongoose_app.js")
DB = "appdb_mg"
BRANCH = "mg-feature"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (CLIENTS / "mongoose").exists(),
    reason="run `make install` for Node clients",
)


def _node(port: int, db: str, branch: str | None, action: str, args: dict[str, Any]) -> Any:
    """Run the app's ``action`` with ``args`` on ``db`` of main or of ``branch``."""
    uri = f"mongodb://127.0.0.1:{port}/{db}?directConnection=true"
    if branch is not None:
        uri += f"&appName=argon:{branch}"
    done = subprocess.run(
        ["node", str(APP), uri, action, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=CLIENTS.parent,
        env={**os.environ, "NODE_PATH": str(CLIENTS)},  # the app lives outside tests/clients
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Process, Process]]:
    with own_stack() as pair:
        yield pair


def test_mongoose_app_on_main_then_on_a_branch(stack: tuple[Process, Process]) -> None:
    def run(who: str, seed: bool) -> Any:
        scenario = {
            "seed_users": SEED_USERS,
            "seed_orders": SEED_ORDERS,
            "new_orders": NEW_ORDERS,
            "committed_items": COMMITTED_ITEMS,
            "aborted_items": ABORTED_ITEMS,
            "renamed": renamed(who),
        }
        branch = None if who == "main" else BRANCH
        return _node(
            stack[1].port, DB, branch, "run", {"who": who, "seed": seed, "scenario": scenario}
        )

    check_app(stack, DB, BRANCH, run)


def test_mongoose_positional_update_on_a_branch(stack: tuple[Process, Process]) -> None:
    db, branch = "appdb_mg_pos", "mg-positional"

    def bump(who: str, seed: bool) -> Any:
        args = {"seed": seed, "positional_order": POSITIONAL_ORDER}
        return _node(stack[1].port, db, None if who == "main" else branch, "bump", args)

    check_positional_update(stack, db, branch, bump)
