"""Run the driver's tests against one target: its processes, pytest, the time limits.

Each target gets processes of its own, started with the helpers the project's
tests use (``tests/processes.py``): a SecantusDB on a free loopback port with
in-memory storage and, for ``main`` and ``branch``, an Argon in front of it.
For ``branch`` a branch is created from main and made the default before the
tests start. Fresh processes per target keep one target's leftovers (data,
branches, sessions, a crashed server) out of the next one's numbers.

pytest runs in a subprocess of the project's interpreter, in the extracted
suite's directory (so its ``pytest.ini`` and ``test`` package are found), with:

* ``DB_IP``/``DB_PORT``: where pymongo's suite (``test/helpers_shared.py``)
  looks for its server;
* plugin auto-loading off, so the project's own pytest plugins (trio,
  hypothesis) stay out of the driver's process, and only pytest-timeout (the
  per-test limit; its signal method fails the test, the run goes on) and
  ``conformance.plugin`` loaded by name;
* ``-m default``: the synchronous suite, as the release's configuration selects
  it (its conftest marks every unmarked test ``default``).

The run as a whole has a deadline too: past it the pytest process group (a
session of its own, started here) is terminated, and the tests it had not
reported count as errors. Whatever happens, the processes started here, and
only those, are stopped, and their logs are kept beside the results.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pymongo import MongoClient

from tests.processes import Process, start_proxy, start_upstream
from tests.stacks import argon

from . import plugin
from .results import TargetResult, read_outcomes
from .source import Suite

TARGETS = ("direct", "main", "branch")
BRANCH = "conformance"
TEST_FILES = (
    "test_collection",
    "test_cursor",
    "test_crud_unified",
    "test_bulk",
    "test_database",
    "test_session",
    "test_change_stream",
    "test_transactions",
    "test_retryable_writes",
    "test_examples",
)
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Limits:
    """Time limits of a run, in seconds."""

    test: float = 120.0  # one test, setup and teardown included
    slow: float = 600.0  # one of plugin.SLOW_TESTS
    run: float = 2700.0  # the whole pytest process of one target
    progress: float = 60.0  # how often a long run says how far it got


@dataclass
class Serving:
    """The processes of a target, and the port the tests connect to."""

    port: int
    processes: dict[str, Process] = field(default_factory=dict)

    def exits(self) -> list[str]:
        """Notes on the processes that died while they should have been serving."""
        return [
            f"{name} exited with code {p.proc.returncode} during the run (log: {name}.log)"
            for name, p in self.processes.items()
            if p.proc.poll() is not None
        ]


def _keep_log(process: Process, name: str, directory: Path) -> None:
    """Move a stopped process's log from the temporary directory to ``directory``."""
    # the log is an aid, its loss no reason to fail the run
    with contextlib.suppress(OSError):
        shutil.move(process.log_path, directory / f"{name}.log")


@contextmanager
def serve(target: str, logs: Path) -> Iterator[Serving]:
    """Start the processes of ``target``; stop them (and keep their logs) on exit."""
    upstream = start_upstream()
    try:
        serving = Serving(upstream.port, {"secantusd": upstream})
        if target == "direct":
            yield serving
            return
        proxy = start_proxy(f"mongodb://127.0.0.1:{upstream.port}")
        serving.processes["argon"] = proxy
        serving.port = proxy.port
        try:
            if target == "branch":
                switch_to_fresh_branch(proxy)
            yield serving
        finally:
            proxy.stop()
            _keep_log(proxy, "argon", logs)
    finally:
        upstream.stop()
        _keep_log(upstream, "secantusd", logs)


def switch_to_fresh_branch(proxy: Process) -> None:
    """Create ``BRANCH`` from main and make it the proxy's default branch."""
    client: MongoClient[dict[str, object]] = MongoClient(proxy.uri, serverSelectionTimeoutMS=30000)
    try:
        argon(client, "createBranch", name=BRANCH, **{"from": "main"})
        argon(client, "switchBranch", name=BRANCH)
        default = argon(client, "status")["default_branch"]
        if default != BRANCH:
            raise RuntimeError(f"default branch is {default!r} after switching to {BRANCH!r}")
    finally:
        client.close()


def pytest_command(limits: Limits, keyword: str | None) -> list[str]:
    """The pytest command line run in the suite's directory."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "pytest_timeout",
        "-p",
        "conformance.plugin",
        # the suite's directory is a cache: no .pytest_cache in it
        "-p",
        "no:cacheprovider",
        # the strictness of the release's own addopts
        "--strict-config",
        "--strict-markers",
        "-m",
        "default",
        f"--timeout={limits.test:g}",
        "-q",
        "--tb=short",
        "-rfE",
        *(f"test/{name}.py" for name in TEST_FILES),
    ]
    if keyword:
        command += ["-k", keyword]
    return command


def _progress(outcomes: Path) -> tuple[int, int]:
    """Tests finished so far (each reports its teardown last) and tests collected."""
    if not outcomes.exists():
        return 0, 0
    lines = outcomes.read_text(encoding="utf-8", errors="replace").splitlines()
    try:
        collected = len(json.loads(lines[0]).get("collected", [])) if lines else 0
    except json.JSONDecodeError:
        collected = 0
    return sum('"when": "teardown"' in line for line in lines), collected


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the process group led by ``proc`` (started here), killing it if need be."""
    for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 15.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def run_pytest(
    suite: Suite, port: int, workdir: Path, limits: Limits, keyword: str | None, label: str
) -> tuple[int | None, bool]:
    """Run the tests against ``port``; pytest's exit code (None if stopped) and whether
    the run's deadline stopped it."""
    outcomes = workdir / "outcomes.jsonl"
    env = {
        **os.environ,
        "DB_IP": "127.0.0.1",
        "DB_PORT": str(port),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        plugin.OUTCOMES_ENV: str(outcomes),
        plugin.SLOW_BUDGET_ENV: f"{limits.slow:g}",
        plugin.PORTS_ENV: str(port),
    }
    started = time.monotonic()
    deadline = started + limits.run
    next_note = started + limits.progress
    with (workdir / "pytest.log").open("wb") as log:
        proc = subprocess.Popen(
            pytest_command(limits, keyword),
            cwd=suite.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            while proc.poll() is None:
                now = time.monotonic()
                if now >= deadline:
                    print(f"[{label}] run time limit ({limits.run:g}s) reached: stopping pytest")
                    _stop_group(proc)
                    return None, True
                if now >= next_note:
                    next_note = now + limits.progress
                    done, collected = _progress(outcomes)
                    print(
                        f"[{label}] {done}/{collected} tests done, {now - started:.0f}s", flush=True
                    )
                time.sleep(0.5)
        finally:
            if proc.poll() is None:  # interrupted: leave nothing running
                _stop_group(proc)
    return proc.returncode, False


def run_target(
    target: str, suite: Suite, cache: Path, limits: Limits, keyword: str | None
) -> TargetResult:
    """Start ``target``'s processes, run the suite through them, stop them; the outcomes."""
    workdir = cache / "runs" / target
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.monotonic()
    notes: list[str] = []
    print(f"[{target}] starting (logs: {workdir})", flush=True)
    with serve(target, workdir) as serving:
        code, timed_out = run_pytest(suite, serving.port, workdir, limits, keyword, target)
        notes += serving.exits()
    if timed_out:
        missing = f"not run: the run's time limit ({limits.run:g}s) stopped pytest"
        notes.append(missing)
    else:
        missing = f"not run: pytest exited with code {code} before it"
    tests = read_outcomes(workdir / "outcomes.jsonl", missing=missing)
    if not tests:
        notes.append(f"no tests collected (pytest exit code {code}; see pytest.log)")
    duration = round(time.monotonic() - started, 1)
    print(f"[{target}] done: {len(tests)} tests in {duration:.0f}s", flush=True)
    return TargetResult(target, suite.version, started_at, duration, keyword, tests, notes)
