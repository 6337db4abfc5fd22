"""One outcome per driver test, from the reports the plugin wrote, and their JSON form.

pytest reports a test in phases (setup, call, teardown) and, for unittest's
``subTest``, once more per subtest. The table counts tests, not reports, so
each test's reports fold into one outcome, the way pytest's own summary would
name it:

* ``failed``: the test body (or one of its subtests) failed, a time-out included;
* ``error``: setup or teardown failed while the body did not, or the test was
  collected but never reported because the run was stopped;
* ``skipped``: skipped (by the test, its class or an xfail) before failing;
* ``passed``: otherwise.

The reason kept is the first line of the report that decided the outcome.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Kind = Literal["passed", "failed", "error", "skipped"]
KINDS: tuple[Kind, ...] = ("passed", "failed", "error", "skipped")


@dataclass(frozen=True)
class Outcome:
    """How one test ended, why (first line, "" when it passed) and how long it took."""

    outcome: Kind
    reason: str = ""
    duration: float = 0.0


@dataclass
class TargetResult:
    """Every test's outcome for one target of one run, with what was run and how."""

    target: str
    version: str
    started: str
    duration: float
    keyword: str | None
    tests: dict[str, Outcome]
    notes: list[str] = field(default_factory=list)

    def count(self, kind: Kind) -> int:
        """How many tests ended as ``kind``."""
        return sum(o.outcome == kind for o in self.tests.values())

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``from_json`` reads it back)."""
        data = asdict(self)
        data["counts"] = {kind: self.count(kind) for kind in KINDS}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TargetResult:
        """The result ``to_json`` wrote."""
        return cls(
            target=data["target"],
            version=data["version"],
            started=data["started"],
            duration=float(data["duration"]),
            keyword=data.get("keyword"),
            tests={k: Outcome(**v) for k, v in data["tests"].items()},
            notes=list(data.get("notes", [])),
        )


def fold(reports: list[dict[str, Any]]) -> Outcome:
    """One test's outcome from its reports (see the module docstring)."""
    duration = round(sum(float(r.get("duration", 0.0)) for r in reports), 3)
    calls = [r for r in reports if r["when"] == "call"]
    others = [r for r in reports if r["when"] != "call"]
    for r in calls:
        if r["outcome"] == "failed":
            return Outcome("failed", r.get("message", ""), duration)
    for r in others:
        if r["outcome"] == "failed":
            return Outcome("error", r.get("message", ""), duration)
    for r in reports:
        # a skipped subtest does not make its test skipped
        if r["outcome"] == "skipped" and not r.get("subtest"):
            return Outcome("skipped", r.get("message", ""), duration)
    if not any(r["outcome"] == "passed" for r in calls):
        return Outcome("error", "no result for the test body", duration)
    return Outcome("passed", "", duration)


def parse(lines: list[str], *, missing: str) -> dict[str, Outcome]:
    """Outcomes of every collected test from the plugin's JSON lines.

    Collected tests with no report at all are errors with the reason ``missing``
    (the run stopped before them). Lines cut off by a killed process are skipped.
    """
    collected: list[str] = []
    reports: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "collected" in record:
            collected.extend(record["collected"])
        elif "nodeid" in record:
            reports.setdefault(record["nodeid"], []).append(record)
    # reports of tests missing from the collection line (none expected) still count
    order = collected + [n for n in reports if n not in set(collected)]
    return {
        nodeid: fold(reports[nodeid]) if nodeid in reports else Outcome("error", missing)
        for nodeid in dict.fromkeys(order)
    }


def read_outcomes(path: Path, *, missing: str) -> dict[str, Outcome]:
    """``parse`` of the plugin's file at ``path`` (no file: no tests)."""
    if not path.exists():
        return {}
    return parse(path.read_text(encoding="utf-8").splitlines(), missing=missing)


def save_target(result: TargetResult, directory: Path) -> Path:
    """Write ``result`` to ``<target>.json``, the latest result of its target.

    Written as soon as the target finishes, so an interrupted run keeps what it
    finished, and a later run of only some targets still has a ``direct``
    baseline to compare with.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{result.target}.json"
    path.write_text(json.dumps(result.to_json(), indent=1) + "\n")
    return path


def save_run(results: list[TargetResult], directory: Path, stamp: str) -> Path:
    """Write all targets of a run to ``results-<stamp>.json``, kept for later comparison."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"results-{stamp}.json"
    path.write_text(json.dumps([r.to_json() for r in results], indent=1) + "\n")
    return path


def load_latest(directory: Path, target: str) -> TargetResult | None:
    """The last saved result of ``target``, if any."""
    path = directory / f"{target}.json"
    if not path.exists():
        return None
    return TargetResult.from_json(json.loads(path.read_text()))
