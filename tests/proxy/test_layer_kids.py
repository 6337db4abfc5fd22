"""``Catalog.layer_kids`` is an index built once per change of the branches and
bundles (a write asks it, and there may be thousands of branches): after every
kind of change it answers what a scan of all branches and bundles would.
In-process against a real SecantusDB."""

from __future__ import annotations

from argon_proxy.bundles import bundle_children
from argon_proxy.catalog import Catalog
from argon_proxy.naming import MAIN

from ..processes import Process
from ..stacks import in_process_catalog


def _scanned(catalog: Catalog, name: str) -> list[str]:
    everyone = [*catalog.branches.values(), *catalog.bundles.values()]
    return [b.name for b in everyone if b.parent == name and b.under is None]


def _agrees(catalog: Catalog) -> None:
    names = [MAIN, *catalog.branches, *catalog.bundles]
    for name in names:
        assert [b.name for b in catalog.layer_kids(name)] == _scanned(catalog, name), name


async def test_layer_kids_follows_every_change(own_upstream: Process) -> None:
    async with in_process_catalog(own_upstream) as catalog:
        catalog.bundle_at = 3
        _agrees(catalog)
        for i in range(6):
            await catalog.create_branch(f"k{i}", MAIN)
            _agrees(catalog)
        await bundle_children(catalog, catalog.branches[MAIN])  # members move under a bundle
        assert catalog.bundles
        _agrees(catalog)
        await catalog.create_branch("k0-child", "k0")
        await catalog.create_branch("late", MAIN)  # after the bundle: read directly
        _agrees(catalog)
        assert "late" in _scanned(catalog, MAIN)
        await catalog.delete_branch("late")
        _agrees(catalog)
        await catalog.create_branch("late", "k1")  # the same name again, elsewhere
        _agrees(catalog)
        await catalog.reload()
        _agrees(catalog)
        await catalog.create_branch("held", MAIN, store=False)  # known here only
        _agrees(catalog)
        await catalog.reload()  # the pending branch stays known
        _agrees(catalog)
