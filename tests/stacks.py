"""A private upstream and proxy for a test module.

SDK and CLI tests switch the proxy's default branch and create branches,
which would change what other modules sharing the session proxy see (and
branches forbid drops on main), so each of those modules gets its own pair.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .processes import Process, start_proxy, start_upstream


@contextmanager
def own_stack() -> Iterator[tuple[Process, Process]]:
    """``(upstream, proxy)``, both stopped on exit."""
    up = start_upstream()
    try:
        proxy = start_proxy(f"mongodb://127.0.0.1:{up.port}")
        try:
            yield up, proxy
        finally:
            proxy.stop()
    finally:
        up.stop()
