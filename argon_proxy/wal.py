"""The write-ahead log: one entry per document change, on every branch.

Theory of operation: an entry is written in the same upstream transaction as
the change it describes, so the log and the data agree after any crash. The
one exception is a capped collection of main, which mongod never writes in a
transaction: its entries commit first, marked ``unconfirmed``, and are
confirmed (or removed) once the write is done (``confirm``), so the log never
misses a write and says which entries a crash left unconfirmed.
``_id`` is the LSN (int64, allocated by ``Catalog.allocate_lsns``), ``ts`` the
wall time, then the branch (``branch_id``, its identity, which every lookup
uses, and ``branch``, its name when written, for people), namespace, document
``_id``, operation (``i``nsert, ``u``pdate, ``d``elete; an update that wrote a
whole new document is marked ``replace``, one with operators may carry
``upd``, hints for its change event), pre- and post-image (``None`` where
there is none), and the client. Images whose BSON exceeds ``COMPRESS_ABOVE``
are stored zstd compressed under ``pre_z`` / ``post_z``; ``image`` reads either
form back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import bson
import zstandard

from .txn import Runner

COMPRESS_ABOVE = 16 * 1024
_COMPRESSOR = zstandard.ZstdCompressor(level=3)
_DECOMPRESSOR = zstandard.ZstdDecompressor()

INSERT, UPDATE, DELETE = "i", "u", "d"
UNCONFIRMED = "unconfirmed"  # written before its change, which may not have happened
REPLACED = "replace"  # on an update entry: the client wrote a whole new document
HINTS = "upd"  # on an update entry: how the update's operators describe it


async def confirm(runner: Runner, applied: list[int], undone: list[int]) -> None:
    """Confirm the entries (by LSN) whose changes were applied; remove the others."""
    if applied:
        await runner.run(
            "__argon",
            {
                "update": "wal",
                "updates": [
                    {
                        "q": {"_id": {"$in": [bson.Int64(x) for x in applied]}},
                        "u": {"$unset": {UNCONFIRMED: ""}},
                        "multi": True,
                    }
                ],
            },
        )
    if undone:
        await runner.run(
            "__argon",
            {
                "delete": "wal",
                "deletes": [{"q": {"_id": {"$in": [bson.Int64(x) for x in undone]}}, "limit": 0}],
            },
        )


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """Who made a change, as far as the proxy can tell."""

    app_name: str | None
    user: str | None
    connection_id: int

    def to_doc(self) -> dict[str, Any]:
        return {"app": self.app_name, "user": self.user, "conn": self.connection_id}


def _image(doc: Mapping[str, Any] | None, key: str) -> dict[str, Any]:
    if doc is None:
        return {key: None}
    raw = bson.encode(doc)
    if len(raw) > COMPRESS_ABOVE:
        return {f"{key}_z": bson.Binary(_COMPRESSOR.compress(raw))}
    return {key: doc}


def entry(
    lsn: int,
    *,
    branch: str,
    branch_id: str,
    ns: str,
    doc_id: Any,
    op: str,
    pre: Mapping[str, Any] | None,
    post: Mapping[str, Any] | None,
    client: ClientIdentity,
    ts: dt.datetime,
    extra: Mapping[str, Any] | None = None,
    replace: bool = False,
    hints: Any = None,
) -> dict[str, Any]:
    """The WAL document for one change (``replace``: an update that wrote a whole
    new document, which change streams report as ``replace``; ``hints``: what they
    need to know of an update with operators, see ``update_description``)."""
    doc: dict[str, Any] = {
        "_id": bson.Int64(lsn),
        "ts": ts,
        "branch": branch,
        "branch_id": branch_id,
        "ns": ns,
        "doc_id": doc_id,
        "op": op,
    }
    doc.update(_image(pre, "pre"))
    doc.update(_image(post, "post"))
    doc["client"] = client.to_doc()
    if replace:
        doc[REPLACED] = True
    if hints is not None:
        doc[HINTS] = hints
    if extra:
        doc.update(extra)
    return doc


def image(entry_doc: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    """The pre- or post-image of a WAL entry, decompressed if it was stored compressed."""
    packed = entry_doc.get(f"{key}_z")
    if packed is not None:
        return dict(bson.decode(_DECOMPRESSOR.decompress(bytes(packed))))
    value = entry_doc.get(key)
    return dict(value) if value is not None else None
