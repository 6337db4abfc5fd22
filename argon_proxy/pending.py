"""What a client's open transaction has changed on branches, which only it sees.

Theory of operation: the id caches of overlays (``Overlay.ids``) describe
committed data, and every view is built from them. A client's transaction
sees its own uncommitted writes, so its statements, reads included, must be
built from caches that hold them too. Each transaction (keyed by session id
and transaction number) gets private copies of the overlays it writes,
taken from the committed caches when it first writes them and kept up to
date by its own statements. The shared caches learn the writes only once
the transaction commits, through the overlay versions it bumped (see
``Catalog.sync``); if it aborts, the copies are simply forgotten.

Catalog changes a transaction makes (an overlay registered or made present)
are announced inside it (``Catalog.announce_in``), so other proxies hear of
them only if it commits. Its WAL entries wait here for their LSNs, which they
take at its commit (``txn_ends.py``).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import bson

from .catalog import Branch, Catalog, Overlay, overlay_key
from .naming import MAIN
from .txn import Runner

KEPT = 1024  # transactions remembered at once (one per live session at most)


@dataclass
class TxnState:
    """One client transaction's view of the overlays it wrote."""

    # What its commit records inside it (``WriteLog.log_commit``), not its
    # statements: held until the commit, these shared documents would hold up
    # every other writer of the overlays while the client thinks.
    moved: set[str] = field(default_factory=set)  # keys of overlays whose contents changed
    created: dict[str, Overlay] = field(default_factory=dict)  # copies its writes made present
    overlays: dict[str, Overlay] = field(default_factory=dict)  # its copies, by Overlay.key
    # WAL entries of its statements, without LSNs: they take them at its commit
    # (``Writer.log_commit``), so the LSN counter is not held while it is open.
    entries: list[dict[str, Any]] = field(default_factory=list)
    # (branch, db, coll) it wrote -> what a write there froze into then (``freeze_targets``)
    basis: dict[tuple[str, str, str], tuple[Any, ...]] = field(default_factory=dict)
    lease: int | None = None  # the first LSN it leased, until released after its commit
    failed: bool = False  # its entries could not be written: it must not commit

    def own(self, ov: Overlay) -> Overlay:
        """The transaction's copy of ``ov`` (whose id cache must be loaded)."""
        copy = self.overlays.get(ov.key)
        if copy is None:
            assert ov.ids is not None
            copy = dataclasses.replace(ov, ids=dict(ov.ids), tombstones=set(ov.tombstones))
            self.overlays[ov.key] = copy
        return copy

    def learn(self, written: Iterable[tuple[Overlay, list[Any], bool]]) -> None:
        """Record a statement's writes (overlay, ids, tombstones?) in the copies."""
        for ov, ids, tombstone in written:
            Catalog.note_written(self.own(ov), ids, tombstone=tombstone)


def freeze_targets(catalog: Catalog, branch: str, db: str, coll: str) -> tuple[Any, ...]:
    """What a write of ``branch``'s ``db.coll`` must freeze pre-images for, as the
    committed catalog says now: each branch reading it through a child or a
    bundle (with whether a layer on its way hides the collection for good, and
    whether it reads an archive instead) and, on main, each branch reading the
    collection under an older name. A client's transaction may commit only if
    this has not changed for what it wrote (``txn_ends.py``).

    Bundles are left out on purpose: moving children under a new, empty bundle
    changes no view, and what the transaction froze into a child or an older
    bundle is still on that child's way to the writer."""
    targets: list[tuple[Any, ...]] = []
    for reader in catalog.layer_kids(branch):
        archived = branch == MAIN and catalog.archive_of(reader, db, coll) is not None
        for leaf in catalog.leaves(reader):
            targets.append((leaf.id, _hidden(catalog, leaf, branch, db, coll), archived))
    if branch == MAIN:
        for record, reader in catalog.fed_by(db, coll):
            targets += [(leaf.id, record.physical) for leaf in catalog.leaves(reader)]
    return tuple(sorted(targets, key=repr))


def _hidden(catalog: Catalog, leaf: Branch, writer: str, db: str, coll: str) -> bool:
    """Whether a layer between ``leaf`` and ``writer`` cuts ``db.coll`` (the leaf
    never reads the writer's documents of it)."""
    for layer in catalog.layers(leaf):
        if layer.name == writer:
            return False
        ov = catalog.overlays.get(overlay_key(layer.id, db, coll))
        if ov is not None and ov.cut:
            return True
    return False


def transaction_key(runner: Runner) -> tuple[bytes, int]:
    """The key of the transaction ``runner`` runs in: a client's (its session
    fields) or one of Argon's own (``txn.Transaction``); else the runner itself."""
    session = getattr(runner, "session", None) or {}
    lsid = session.get("lsid") or getattr(runner, "lsid", None)
    number = session.get("txnNumber", getattr(runner, "txn_number", None))
    if not isinstance(lsid, Mapping) or number is None:
        return b"", id(runner)
    return bson.encode({"id": lsid.get("id")}), int(number)


class Pending:
    """The open transactions' states, most recently used last."""

    def __init__(self) -> None:
        self._states: OrderedDict[tuple[bytes, int], TxnState] = OrderedDict()

    def state(self, key: tuple[bytes, int]) -> TxnState:
        """The state of transaction ``key``, created on first use.

        A session runs one transaction at a time: a higher transaction number
        ends the states of its earlier ones."""
        found = self._states.pop(key, None)
        if found is None:
            found = TxnState()
            for old in [k for k in self._states if k[0] == key[0] and k[1] < key[1]]:
                del self._states[old]
        self._states[key] = found
        while len(self._states) > KEPT:
            self._states.popitem(last=False)
        return found

    def peek(self, runner: Runner) -> TxnState | None:
        """The state of ``runner``'s transaction if it wrote anything yet."""
        return self._states.get(transaction_key(runner))
