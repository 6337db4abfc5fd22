"""``python -m bench``: run every benchmark, or the ones named (``python -m bench proxy``)."""

from __future__ import annotations

import sys

from . import branch_bench, merge_bench, proxy_bench, scale_bench, write_bench

SUITES = {
    "proxy": proxy_bench.main,
    "branch": branch_bench.main,
    "merge": merge_bench.main,
    "write": write_bench.main,
    "scale": scale_bench.main,
}


def main() -> None:
    names = sys.argv[1:] or list(SUITES)
    for name in names:
        if name not in SUITES:
            raise SystemExit(f"unknown benchmark {name!r}; choose from {', '.join(SUITES)}")
        SUITES[name]()


main()
