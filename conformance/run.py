"""Run the driver's tests against one target: its processes, pytest, the time limits.

First the driver's tests are collected once, without a server, to know what
each test file will run: that list is every target's denominator, so tests a
target never reports (its server died, its time ran out) still count, as
errors "not run".

Then, per target and per test file, fresh processes are started with the
helpers the project's tests use (``tests/processes.py``): a SecantusDB on a
free loopback port with in-memory storage and, for ``main`` and ``branch``, an
Argon in front of it. For ``branch`` a branch is created from main and made the
default before the tests start. Fresh processes keep one file's leftovers
(data, branches, sessions, a server still busy with an abandoned bulk insert)
out of the next file's numbers, and one target's out of the next target's.

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

Each file's pytest process has a deadline, and the target's files together
another: past it the pytest process group (a session of its own, started here)
is terminated. Whatever happens, the processes started here, and only those,
are stopped, and their logs are kept beside the results.
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
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from pymongo import MongoClient

from tests.processes import Process, start_proxy, start_upstream
from tests.stacks import argon

from . import plugin
from .results import KINDS, Outcome, TargetResult, read_outcomes
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
    slow: float = 300.0  # one of plugin.SLOW_TESTS (about 20 s direct)
    file: float = 900.0  # one test file's pytest process
    run: float = 3600.0  # all the files of one target
    progress: ClassVar[float] = 60.0  # how often a long run says how far it got


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
        # Presented as the upstream is (a replica set), so the same tests run on both
        # sides; as a router, the tests that need a replica set or a mongod skip.
        proxy = start_proxy(f"mongodb://127.0.0.1:{upstream.port}", "--advertise", "127.0.0.1")
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


def pytest_command(
    files: Sequence[str], limits: Limits, keyword: str | None, *, collect_only: bool = False
) -> list[str]:
    """The pytest command line run in the suite's directory for ``files`` (module names)."""
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
        *(f"test/{name}.py" for name in files),
    ]
    if keyword:
        command += ["-k", keyword]
    if collect_only:
        command.append("--collect-only")
    return command


def _env(port: int, outcomes: Path, limits: Limits) -> dict[str, str]:
    """The environment of the driver's test process, aimed at ``port``."""
    return {
        **os.environ,
        "DB_IP": "127.0.0.1",
        "DB_PORT": str(port),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        plugin.OUTCOMES_ENV: str(outcomes),
        plugin.SLOW_BUDGET_ENV: f"{limits.slow:g}",
        plugin.PORTS_ENV: str(port),
    }


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


def _pytest(
    command: list[str], cwd: Path, env: dict[str, str], log_path: Path, budget: float, label: str
) -> int | None:
    """Run ``command`` in a session of its own, output to ``log_path``; its exit code,
    or None when ``budget`` seconds ran out and it was stopped."""
    started = time.monotonic()
    next_note = started + Limits.progress
    outcomes = Path(env[plugin.OUTCOMES_ENV])
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            while proc.poll() is None:
                now = time.monotonic()
                if now - started >= budget:
                    print(f"[{label}] time limit ({budget:.0f}s) reached: stopping pytest")
                    _stop_group(proc)
                    return None
                if now >= next_note:
                    next_note = now + Limits.progress
                    done, collected = _progress(outcomes)
                    print(
                        f"[{label}] {done}/{collected} tests done, {now - started:.0f}s", flush=True
                    )
                time.sleep(0.5)
        finally:
            if proc.poll() is None:  # interrupted: leave nothing running
                _stop_group(proc)
    return proc.returncode


def collect(
    suite: Suite, workdir: Path, limits: Limits, keyword: str | None
) -> dict[str, list[str]]:
    """The tests each driver test file runs (after ``-k``), collected without a server.

    Known before any target runs, they are every target's denominator: a test
    that a target never reports (its process died, its time ran out) still
    counts, as not run. Files with nothing selected are left out.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    outcomes = workdir / "collected.jsonl"
    outcomes.unlink(missing_ok=True)
    # port 0: the collection has no server, and the plugin refuses every connection
    env = _env(0, outcomes, limits)
    command = pytest_command(TEST_FILES, limits, keyword, collect_only=True)
    code = _pytest(command, suite.root, env, workdir / "collect.log", 300.0, "collect")
    if code not in (0, 5):  # 5: -k selected nothing
        raise RuntimeError(f"collecting the driver's tests failed: see {workdir / 'collect.log'}")
    files: dict[str, list[str]] = {}
    for nodeid in read_outcomes(outcomes, missing=""):
        files.setdefault(Path(nodeid.split("::", 1)[0]).stem, []).append(nodeid)
    return {name: files[name] for name in TEST_FILES if name in files}


def run_file(
    target: str,
    name: str,
    expected: list[str],
    suite: Suite,
    workdir: Path,
    limits: Limits,
    keyword: str | None,
    budget: float,
) -> tuple[dict[str, Outcome], list[str]]:
    """Run one driver test file against fresh processes of ``target``: its tests' outcomes
    (every one of ``expected`` included) and notes on what went wrong around them."""
    workdir.mkdir(parents=True)
    outcomes = workdir / "outcomes.jsonl"
    notes: list[str] = []
    code: int | None = None
    try:
        with serve(target, workdir) as serving:
            env = _env(serving.port, outcomes, limits)
            command = pytest_command([name], limits, keyword)
            code = _pytest(command, suite.root, env, workdir / "pytest.log", budget, target)
            notes += [f"{name}: {note}" for note in serving.exits()]
    except Exception as exc:  # a server that does not start: its tests did not run
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        notes.append(f"{name}: {reason}")
    if code is None:
        missing = f"not run: pytest stopped after {budget:.0f}s"
        notes.append(f"{name}: {missing}")
    else:
        missing = f"not run: pytest exited with code {code} before it"
    tests = read_outcomes(outcomes, missing=missing)
    for nodeid in expected:
        tests.setdefault(nodeid, Outcome("error", missing))
    return tests, notes


def run_target(
    target: str,
    suite: Suite,
    selected: dict[str, list[str]],
    cache: Path,
    limits: Limits,
    keyword: str | None,
) -> TargetResult:
    """Run each selected driver test file against fresh processes of ``target``.

    Fresh processes per file keep a slow or broken file from taking the next
    ones down with it (a server still busy with an abandoned 100,000-document
    insert makes every later test time out). Each file has its time limit, and
    the target as a whole its own; files past that are not run, their tests
    counted as errors.
    """
    workdir = cache / "runs" / target
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.monotonic()
    tests: dict[str, Outcome] = {}
    notes: list[str] = []
    print(f"[{target}] starting (logs: {workdir})", flush=True)
    for name, expected in selected.items():
        budget = min(limits.file, limits.run - (time.monotonic() - started))
        if budget <= 0:
            missing = f"not run: {target}'s time limit ({limits.run:g}s) ran out"
            tests.update((nodeid, Outcome("error", missing)) for nodeid in expected)
            notes.append(f"{name}: {missing}")
            continue
        file_started = time.monotonic()
        outcomes, file_notes = run_file(
            target, name, expected, suite, workdir / name, limits, keyword, budget
        )
        tests.update(outcomes)
        notes += file_notes
        counts = Counter(o.outcome for o in outcomes.values())
        print(
            f"[{target}] {name}: "
            + ", ".join(f"{counts[k]} {'errors' if k == 'error' else k}" for k in KINDS)
            + f" in {time.monotonic() - file_started:.0f}s",
            flush=True,
        )
    duration = round(time.monotonic() - started, 1)
    print(f"[{target}] done: {len(tests)} tests in {duration:.0f}s", flush=True)
    return TargetResult(target, suite.version, started_at, duration, keyword, tests, notes)
