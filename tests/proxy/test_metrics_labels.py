"""The `branch` label of `argon_requests_total` stays bounded, read through `/metrics`.

Every time-travel address (`db@main@lsn-N`, a time, a tag) is a different
snapshot inside the proxy; counting each under its own label would grow the
series without bound. They count under `<branch>@past`, and past
`MAX_BRANCH_LABELS` distinct branches the rest count as `other`.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient

from argon_proxy.metrics import MAX_BRANCH_LABELS

from ..processes import Process
from ..stacks import argon, own_stack

Client = MongoClient[dict[str, Any]]


def _client(uri: str, **options: Any) -> MongoClient[dict[str, Any]]:
    """A typed pymongo client (a context manager that closes it)."""
    return MongoClient(uri, **options)


@pytest.fixture(scope="module")
def proxy() -> Iterator[Process]:
    with own_stack() as (_up, proxy):
        yield proxy


def _branch_labels(proxy: Process) -> set[str]:
    url = f"http://127.0.0.1:{proxy.extra['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=30) as resp:
        text = resp.read().decode()
    return set(re.findall(r'^argon_requests_total\{branch="([^"]*)"', text, re.MULTILINE))


def test_time_travel_reads_count_under_their_branch(proxy: Process) -> None:
    with _client(proxy.uri) as c:
        lsns = []
        for i in range(5):
            c.tt.items.insert_one({"_id": i})
            lsns.append(argon(c, "timeTravelInfo", name="main")["branches"][0]["latest_lsn"])
        for lsn in lsns:
            assert c[f"tt@main@lsn-{lsn}"].items.count_documents({}) >= 1
    labels = _branch_labels(proxy)
    assert "main@past" in labels
    assert not [label for label in labels if "lsn-" in label], labels


def test_distinct_branch_labels_are_capped(proxy: Process) -> None:
    with _client(proxy.uri) as c:
        for i in range(MAX_BRANCH_LABELS + 5):
            argon(c, "createBranch", name=f"label-{i}")
            c[f"capped@label-{i}"].items.find_one()
    labels = _branch_labels(proxy)
    assert len(labels) <= MAX_BRANCH_LABELS + 1, len(labels)  # + "other"
    assert "other" in labels
