"""``python -m conformance``: run pymongo's tests per target and print the comparison.

Targets run one after another, never side by side: each starts its own
servers, and the machines this runs on have two cores to share. ``direct``
runs first when chosen, as it is the baseline of the others; when it is not
chosen, the last saved ``direct`` result of the same pymongo version and ``-k``
expression serves as the baseline.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from .report import render
from .results import TargetResult, load_latest, save_run, save_target
from .run import REPO, TARGETS, Limits, collect, run_target
from .source import SourceError, pinned_version, prepare


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; see ``--help``."""
    defaults = Limits()
    parser = argparse.ArgumentParser(
        prog="python -m conformance",
        description="Run pymongo's own tests direct to SecantusDB and through Argon; compare.",
    )
    parser.add_argument(
        "--target",
        action="append",
        choices=TARGETS,
        help="a target to run (repeatable; default: all, in the order direct, main, branch)",
    )
    parser.add_argument("-k", dest="keyword", help="pytest -k expression selecting tests")
    parser.add_argument(
        "--test-timeout",
        type=float,
        default=defaults.test,
        help=f"seconds one test may take (default {defaults.test:g})",
    )
    parser.add_argument(
        "--slow-timeout",
        type=float,
        default=defaults.slow,
        help=f"seconds a known slow test may take (default {defaults.slow:g})",
    )
    parser.add_argument(
        "--file-timeout",
        type=float,
        default=defaults.file,
        help=f"seconds one test file's run may take (default {defaults.file:g})",
    )
    parser.add_argument(
        "--run-timeout",
        type=float,
        default=defaults.run,
        help=f"seconds all files of one target may take (default {defaults.run:g})",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=REPO / ".cache" / "conformance",
        help="where the sdist, the extracted suite, logs and results are kept",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: print the report of the targets' last saved results",
    )
    return parser.parse_args(argv)


def _baseline(
    results: list[TargetResult], cache: Path, version: str, keyword: str | None
) -> TargetResult | None:
    """This run's direct result, else a saved one of the same version and selection."""
    for result in results:
        if result.target == "direct":
            return result
    saved = load_latest(cache, "direct")
    if saved is not None and saved.version == version and saved.keyword == keyword:
        return saved
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the chosen targets, save their results, print the report; the exit code."""
    args = parse_args(argv)
    chosen = [t for t in TARGETS if t in (args.target or TARGETS)]
    cache: Path = args.cache.resolve()
    try:
        version = pinned_version(REPO)
        if args.report_only:
            saved = [load_latest(cache, t) for t in chosen]
            results = [r for r in saved if r is not None]
            keyword = results[0].keyword if results else args.keyword
        else:
            suite = prepare(REPO, cache)
            print(f"pymongo {suite.version} tests in {suite.root} (sdist sha256 {suite.sha256})")
            limits = Limits(
                test=args.test_timeout,
                slow=args.slow_timeout,
                file=args.file_timeout,
                run=args.run_timeout,
            )
            selected = collect(suite, cache / "runs", limits, args.keyword)
            print(f"{sum(map(len, selected.values()))} tests in {len(selected)} files selected")
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            results = []
            for target in chosen:
                results.append(run_target(target, suite, selected, cache, limits, args.keyword))
                save_target(results[-1], cache)
            print(f"results: {save_run(results, cache, stamp)}")
            keyword = args.keyword
    except SourceError as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 2
    print()
    print(render(results, _baseline(results, cache, version, keyword)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
