"""Bundles: many children of one parent share the copy-on-write freeze.

Theory of operation: a child must never see its parent's later writes, so
each write of a parent freezes the pre-image of every document it changes
into each child that does not hold the document yet (``freezes.py``). With a
thousand children that is a thousand inserts per write. A *bundle* is a
hidden, read-only layer placed between a parent and a group of its
children: the children read the parent through it, and the parent's writes
freeze into the bundle once instead of into each of them.

Why that keeps every view: a child's overlay holds, by the freeze, every
document its parent changed since the fork. A bundle made now is empty, so
through it a child reads exactly what it read before; from then on the
bundle holds the pre-image of each document the parent changes first after
the bundle was made, which is what the child would have been given. The
same holds for an older bundle moved under a new one. So a bundle may be
slipped between a parent and any of its direct readers at any moment, in one
catalog change. A bundle never takes new members after it is made.

Bounds: bundles nest at most ``MAX_DEPTH`` deep, so a view reads at most that
many extra layers; a bundle is made only for at least two readers, and only
once the parent has ``Catalog.bundle_at`` of them, so a branch with a few
children reads and writes as before. On main, a child's base collections
depend on the drops and renames main made after its fork (archives), so only
children that agree on those share a bundle.

Bundles are stored in ``branches`` with ``bundle: true`` (their names start
with ``~``, which branch names cannot) and the name and id of each member:
making one is one insert, whatever the number of members, and a member's
own document never changes. They are never listed or addressed: ``Catalog.chain`` and
``children`` know branches only, ``Catalog.layers`` and ``layer_kids`` see
bundles too. A bundle left without members is deleted with its overlays.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .catalog import Branch, StaleCatalog, now
from .dbclient import CommandError
from .naming import INTERNAL_DB, MAIN
from .txn import Runner, is_transient, run_in_transaction

if TYPE_CHECKING:
    from .catalog import Catalog, Overlay

log = logging.getLogger(__name__)

MAX_DEPTH = 3
# How long a bundle's store is retried when it conflicts (with this proxy's own
# lease releases on the counter, say): a bundle is a saving, not worth a wait.
_CONFLICTS_FOR = 0.25


async def bundle_children(catalog: Catalog, parent: Branch) -> None:
    """Bundle ``parent``'s plain children if it has enough direct readers.

    Best effort: a bundle is only a saving, so when the catalog changed under
    it (another proxy bundled them first), it looks once more at the catalog as
    now stored; when the change keeps conflicting (for longer than
    ``_CONFLICTS_FOR``), nothing is bundled now. Either way the caller freezes
    into what the catalog then lists.
    """
    for _ in range(2):
        try:
            await _bundle_children(catalog, parent)
            return
        except StaleCatalog:
            await catalog.reload()
            parent = catalog.branches.get(parent.name) or parent


async def _bundle_children(catalog: Catalog, parent: Branch) -> None:
    if catalog.bundle_at <= 0:
        return
    readers = catalog.layer_kids(parent.name)
    if len(readers) < catalog.bundle_at:
        return
    groups: dict[Any, list[Branch]] = {}
    for kid in readers:
        if kid.name in catalog.pending or (kid.bundle and kid.depth >= MAX_DEPTH):
            continue  # not stored yet; or as deep as bundles go
        groups.setdefault(_signature(catalog, parent, kid), []).append(kid)
    for members in groups.values():
        if len(members) < 2 or all(m.bundle for m in members):
            continue  # nothing saved; or only nesting bundles deeper
        try:
            await _bundle(catalog, parent, members)
        except CommandError as exc:
            if not is_transient(exc):
                raise
            log.debug("bundling children of %s conflicted; not now", parent.name)
            return


def link(branches: Mapping[str, Branch], bundles: Mapping[str, Branch]) -> None:
    """Tell each member of a bundle which one it reads its parent through (a
    member that is gone, or a new branch of the same name, is not one)."""
    for bundle in bundles.values():
        for name, id_ in bundle.members:
            member = branches.get(name) or bundles.get(name)
            if member is not None and member.id == id_:
                member.under = bundle.name


def _signature(catalog: Catalog, parent: Branch, kid: Branch) -> Any:
    """What must be equal for children to share a bundle: on main, the drops and
    renames made after the child's fork (they decide which collections it reads)."""
    if parent.name != MAIN:
        return None
    return tuple(
        sorted(
            record.key
            for found in catalog.archives.values()
            for record in found
            if record.until > kid.base_lsn
        )
    )


async def _bundle(catalog: Catalog, parent: Branch, members: list[Branch]) -> None:
    """Store a new, empty bundle of ``parent`` and move ``members`` under it."""
    bundle = Branch(
        "~" + secrets.token_hex(6),
        "g" + secrets.token_hex(5),
        parent.name,
        max(m.base_lsn for m in members),  # members agree on archives up to here
        now(),
        read_only=True,
        project=parent.project,
        bundle=True,
        depth=1 + max((m.depth for m in members if m.bundle), default=0),
    )
    bundle.members = tuple((m.name, m.id) for m in members)
    since = catalog.loads

    async def unit(txn: Runner) -> None:
        # Only if nobody changed the catalog since the picture the members come
        # from: no member is gone or in another bundle meanwhile.
        await catalog.changed(txn, since=since, only=True)
        await txn.run(INTERNAL_DB, {"insert": "branches", "documents": [bundle.to_doc()]})

    await run_in_transaction(
        catalog.db.pool, unit, sessions=catalog.sessions, retry_for=_CONFLICTS_FOR
    )
    catalog.bundles[bundle.name] = bundle
    for m in members:
        m.under = bundle.name
        # and the member as known now: a reload that ran meanwhile made new objects
        current = catalog.branches.get(m.name) or catalog.bundles.get(m.name)
        if current is not None and current.id == m.id:
            current.under = bundle.name
    catalog.reshaped()


async def prune(catalog: Catalog, name: str | None) -> list[Overlay]:
    """Delete bundle ``name`` if nothing reads through it any more, then its own
    bundle likewise; returns their overlays, for the caller to drop."""
    gone: list[Overlay] = []
    while name is not None and name in catalog.bundles:
        bundle = catalog.bundles[name]
        readers = [*catalog.branches.values(), *catalog.bundles.values()]
        if any(b.under == name for b in readers):
            break
        gone += await catalog.forget(bundle)
        catalog.bundles.pop(name, None)
        name = bundle.under
    return gone
