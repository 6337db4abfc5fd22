"""The pure parts of ``make conformance``: folding reports, the config, the table.

No processes and no network: the runner itself is exercised by ``make conformance``.
"""

from __future__ import annotations

import json
from pathlib import Path

from conformance.report import render, short_reason, table
from conformance.results import Outcome, TargetResult, fold, parse
from conformance.source import pinned_version, pytest_ini

ROOT = Path(__file__).resolve().parent.parent


def report(when: str, outcome: str, message: str = "", **extra: object) -> dict[str, object]:
    return {"nodeid": "t", "when": when, "outcome": outcome, "message": message, **extra}


def test_fold_names_a_test_as_pytest_would() -> None:
    ok = [report("setup", "passed"), report("call", "passed"), report("teardown", "passed")]
    assert fold(ok).outcome == "passed"
    subtest_failed = [*ok[:2], report("call", "failed", "boom", subtest=True), ok[2]]
    assert fold(subtest_failed) == Outcome("failed", "boom", 0.0)
    assert fold([report("setup", "failed", "no server"), ok[2]]).outcome == "error"
    skipped = [report("setup", "skipped", "Skipped: needs a replica set"), ok[2]]
    assert fold(skipped) == Outcome("skipped", "Skipped: needs a replica set", 0.0)
    # a body failure outranks a teardown error, as one row per test must pick one
    both = [ok[0], report("call", "failed", "body"), report("teardown", "failed", "after")]
    assert fold(both).reason == "body"


def test_parse_counts_collected_tests_without_reports_as_not_run() -> None:
    lines = [
        json.dumps({"collected": ["a", "b"]}),
        json.dumps({"nodeid": "a", "when": "call", "outcome": "passed", "message": ""}),
        '{"nodeid": "b", "wh',  # cut off by a killed process
    ]
    outcomes = parse(lines, missing="not run")
    assert outcomes == {"a": Outcome("passed"), "b": Outcome("error", "not run")}


def test_short_reason_masks_what_differs_between_tests() -> None:
    reason = (
        "pymongo.errors.OperationFailure: no such command, full error: {'ok': 0.0, "
        "'operationTime': Timestamp(1796167053, 1402)}"
    )
    assert short_reason(reason) == "OperationFailure: no such command"
    assert short_reason("refused 127.0.0.1:45025") == "refused 127.0.0.1:PORT"


def result(target: str, **tests: str) -> TargetResult:
    outcomes = {f"test/test_x.py::C::{n}": Outcome(o, "E: " + n) for n, o in tests.items()}  # type: ignore[arg-type]
    return TargetResult(target, "4.20.0", "now", 1.0, None, outcomes)


def test_report_lists_only_what_passes_direct() -> None:
    direct = result("direct", a="passed", b="passed", c="failed", d="skipped")
    main = result("main", a="passed", b="failed", c="failed", d="passed")
    rows = table([direct, main], direct).splitlines()
    assert rows[0].split("|")[1:-1] == [
        " target ",
        " passed ",
        " failed ",
        " errors ",
        " skipped ",
        " total ",
        " passed direct, not here ",
    ]
    assert rows[3].replace(" ", "") == "|main|2|2|0|0|4|1|"
    text = render([direct, main], direct)
    assert "main: 1 test passes direct but not here" in text
    assert "test_x::C: b" in text
    assert "C: c" not in text  # the upstream's own failure is the baseline, not a regression
    assert "1 passes here but not direct: d" in text


def test_pytest_ini_keeps_the_releases_strictness_not_its_plugins() -> None:
    pyproject = {
        "tool": {
            "pytest": {
                "ini_options": {
                    "addopts": ["--junitxml=x.xml"],
                    "asyncio_default_fixture_loop_scope": "session",
                    "xfail_strict": True,
                    "markers": ["default: default test suite"],
                }
            }
        }
    }
    ini = pytest_ini(pyproject)
    assert "xfail_strict = true" in ini
    assert "\n    default: default test suite" in ini
    assert "addopts" not in ini and "asyncio" not in ini


def test_the_suite_version_is_the_pinned_driver() -> None:
    assert pinned_version(ROOT) == __import__("pymongo").version


def test_the_plugin_treats_only_loopback_as_local() -> None:
    from conformance.plugin import _is_loopback

    assert all(map(_is_loopback, ["localhost", "127.0.0.1", "127.8.9.10", "::1", None]))
    assert not any(map(_is_loopback, ["server", "pypi.org", "10.0.0.1", "0.0.0.0", ""]))
