"""The comparison: one table of counts, then what passes direct but not through Argon.

``direct`` is the baseline. A test that fails direct fails because of the
upstream (SecantusDB is not mongod), so it says nothing about Argon and is
left out of the comparison. What matters for a target is the last column:
tests that *pass direct* but not there. Below the table those tests are listed
per target, grouped by how they ended and the first line of the failure,
largest group first, with their names shortened to ``file::Class`` followed by
the test names. The reasons are normalised for grouping: pymongo's
``, full error: {...}`` tail, ports, timestamps and object ids are dropped or
masked, so the same failure in many tests is one group.
"""

from __future__ import annotations

import re
import textwrap
from collections import defaultdict
from collections.abc import Iterable

from .results import KINDS, Outcome, TargetResult

_MAX_REASON = 160
_MASKS = (
    (re.compile(r", full error: .*$"), ""),
    (re.compile(r"^pymongo\.errors\."), ""),
    (re.compile(r"\b(127\.0\.0\.1|localhost|\[::1\]):\d+"), r"\1:PORT"),
    (re.compile(r"Timestamp\(\d+, \d+\)"), "Timestamp(...)"),
    (re.compile(r"ObjectId\('[0-9a-f]{24}'\)"), "ObjectId(...)"),
    (re.compile(r"\b0x[0-9a-f]{6,}\b"), "0x..."),
)


def short_reason(reason: str) -> str:
    """``reason`` with the parts that differ between tests masked, cut to one short line."""
    text = reason.strip()
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    if len(text) > _MAX_REASON:
        text = text[: _MAX_REASON - 3] + "..."
    return text or "(no message)"


def split_nodeid(nodeid: str) -> tuple[str, str]:
    """``test/test_x.py::Class::test_y`` as ``("test_x::Class", "test_y")``."""
    parts = nodeid.split("::")
    module = parts[0].rsplit("/", 1)[-1].removesuffix(".py")
    return "::".join([module, *parts[1:-1]]), parts[-1]


def regressions(baseline: TargetResult, result: TargetResult) -> dict[str, Outcome]:
    """Tests that passed in ``baseline`` and did not pass (or did not run) in ``result``."""
    gone = Outcome("error", "not collected here")
    return {
        nodeid: result.tests.get(nodeid, gone)
        for nodeid, outcome in baseline.tests.items()
        if outcome.outcome == "passed" and result.tests.get(nodeid, gone).outcome != "passed"
    }


def improvements(baseline: TargetResult, result: TargetResult) -> list[str]:
    """Tests that pass in ``result`` but did not pass in ``baseline``."""
    return [
        nodeid
        for nodeid, outcome in result.tests.items()
        if outcome.outcome == "passed"
        and baseline.tests.get(nodeid, Outcome("error")).outcome != "passed"
    ]


def table(results: Iterable[TargetResult], baseline: TargetResult | None) -> str:
    """The counts per target, one row each, as an aligned pipe table."""
    header = ["target", *("errors" if k == "error" else k for k in KINDS), "total"]
    header.append("passed direct, not here")
    rows = [header]
    for result in results:
        row = [result.target, *(str(result.count(k)) for k in KINDS), str(len(result.tests))]
        if baseline is None:
            row.append("-")
        elif result is baseline:
            row.append("(baseline)")
        else:
            row.append(str(len(regressions(baseline, result))))
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(rows[0]), rule, *(line(r) for r in rows[1:])])


def grouped(failures: dict[str, Outcome], width: int = 100) -> str:
    """``failures`` grouped by outcome and short reason, largest group first."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for nodeid, outcome in failures.items():
        groups[(outcome.outcome, short_reason(outcome.reason))].append(nodeid)
    out: list[str] = []
    for (kind, reason), nodeids in sorted(groups.items(), key=lambda g: (-len(g[1]), g[0])):
        out.append(f"  {len(nodeids):>4} {kind}: {reason}")
        by_class: dict[str, list[str]] = defaultdict(list)
        for nodeid in nodeids:
            cls, name = split_nodeid(nodeid)
            by_class[cls].append(name)
        for cls, names in by_class.items():
            out += textwrap.wrap(
                f"{cls}: {', '.join(names)}",
                width=width,
                initial_indent="       ",
                subsequent_indent="           ",
                break_on_hyphens=False,
                break_long_words=False,  # a test's name stays whole, even past the width
            )
    return "\n".join(out)


def _tests(n: int, one: str, many: str) -> str:
    """``n`` tests and the verb agreeing with it ("1 test passes", "2 tests pass")."""
    return f"1 test {one}" if n == 1 else f"{n} tests {many}"


def render(results: list[TargetResult], baseline: TargetResult | None) -> str:
    """The whole report: table, notes, and per target what passes direct but not there."""
    out = [table(results, baseline)]
    if baseline is not None and baseline not in results:
        out.append(f"(baseline: the direct run of {baseline.started}, saved earlier)")
    for result in results:
        for note in result.notes:
            out.append(f"{result.target}: {note}")
    if baseline is None:
        out.append("No direct baseline: run with --target direct to compare.")
        return "\n".join(out) + "\n"
    for result in results:
        if result is baseline:
            continue
        lost = regressions(baseline, result)
        out.append("")
        out.append(f"{result.target}: {_tests(len(lost), 'passes', 'pass')} direct but not here")
        if lost:
            out.append(grouped(lost))
        gained = improvements(baseline, result)
        if gained:
            out.append(
                f"  ({len(gained)} {'passes' if len(gained) == 1 else 'pass'} here but not direct: "
                + ", ".join(split_nodeid(n)[1] for n in gained[:10])
                + (", ..." if len(gained) > 10 else "")
                + ")"
            )
    return "\n".join(out) + "\n"
