"""The write-ahead log: one entry per document change, on every branch.

Theory of operation: an entry is written in the same upstream transaction as
the change it describes, so the log and the data agree after any crash. The
one exception is a capped collection of main, which mongod never writes in a
transaction: its entries commit first, marked ``unconfirmed``, and are
confirmed (or removed) once the write is done (``confirm``), so the log never
misses a write and says which entries a crash left unconfirmed.
``_id`` is the LSN (int64, allocated by ``Catalog.allocate_lsns``), the wall
time (the same for every entry one transaction writes: ``ts`` on the last of
them, which the time index holds, ``t`` on the others; ``time_of``), then the
branch (``branch_id``, its identity, which every lookup uses; ``log`` shows
the branch's name), namespace, document ``_id``, operation (``i``nsert,
``u``pdate, ``d``elete; an update that wrote a whole new document is marked
``replace``, one with operators may carry ``upd``, hints for its change
event), pre- and post-image, and the client (``conn``, and ``app`` and
``user`` when known).

Entries are kept small, since every change writes one: an image that does
not exist (an insert's pre-image, a delete's post-image) is left out; an
image's leading ``_id`` is left to the entry's ``doc_id``; an update's
post-image is stored as what changed at the top level
(``post_d``: fields set, fields removed) when that rebuilds it byte for
byte and is much smaller, since its pre-image is in the same entry; images
whose BSON exceeds ``COMPRESS_ABOVE`` are stored zstd compressed under
``pre_z`` / ``post_z``. ``image`` reads every form back.
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
TIME = "ts"  # on the last entry of a transaction: the time index holds only those
_TIME_INSIDE = "t"  # the same time, on its other entries
_CLIENT_FIELDS = ("app", "user", "conn")
TIME_FIELDS = {"_id": 1, TIME: 1, _TIME_INSIDE: 1}  # a projection: an entry's LSN and time
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
        """The client as an entry stores it, among its own fields: those known."""
        doc: dict[str, Any] = {"conn": self.connection_id}
        if self.app_name is not None:
            doc["app"] = self.app_name
        if self.user is not None:
            doc["user"] = self.user
        return doc


def client_of(entry_doc: Mapping[str, Any]) -> dict[str, Any]:
    """The client of a WAL entry with every field, ``None`` where unknown (entries
    of earlier versions kept it in a ``client`` document)."""
    stored = entry_doc.get("client") or entry_doc
    return {k: stored.get(k) for k in _CLIENT_FIELDS}


def client_filter(*, app: str | None = None, user: str | None = None) -> dict[str, Any]:
    """A filter on WAL entries for the client's appName and user, where given."""
    wanted = [(k, v) for k, v in (("app", app), ("user", user)) if v is not None]
    if not wanted:
        return {}
    return {"$and": [{"$or": [{k: v}, {f"client.{k}": v}]} for k, v in wanted]}


def _image(doc: Mapping[str, Any], key: str, doc_id: Any) -> dict[str, Any]:
    raw = bson.encode(doc)
    if len(raw) > COMPRESS_ABOVE:
        return {f"{key}_z": bson.Binary(_COMPRESSOR.compress(raw))}
    if next(iter(doc), None) == "_id" and _identical(doc["_id"], doc_id):
        # The entry's doc_id says it (``image`` puts it back in front).
        return {key: {k: v for k, v in doc.items() if k != "_id"}}
    return {key: doc}


def _identical(a: Any, b: Any) -> bool:
    """The same BSON value (types included)."""
    if isinstance(a, (dict, list)):
        return bson.encode({"v": a}) == bson.encode({"v": b})
    return type(a) is type(b) and a == b


def _post_image(
    pre: Mapping[str, Any] | None, post: Mapping[str, Any], doc_id: Any
) -> dict[str, Any]:
    """An update's post-image as stored: what changed, when that is much smaller."""
    if pre is not None:
        delta = _delta(pre, post)
        if delta is not None:
            return {"post_d": delta}
    return _image(post, "post", doc_id)


def _delta(pre: Mapping[str, Any], post: Mapping[str, Any]) -> dict[str, Any] | None:
    """The top-level fields ``post`` sets and removes relative to ``pre``, if that
    rebuilds ``post`` exactly (values, types and field order) and is at most half
    its size; else None."""
    changed = {k: v for k, v in post.items() if k not in pre or not _same_value(pre[k], v)}
    removed = [k for k in pre if k not in post]
    delta: dict[str, Any] = {}
    if changed:
        delta["set"] = changed
    if removed:
        delta["unset"] = removed
    raw_post = bson.encode(post)
    if 2 * len(bson.encode(delta)) > len(raw_post):
        return None
    if bson.encode(_apply(pre, delta)) != raw_post:
        return None  # a reordering, or a value Python equality cannot tell apart
    return delta


def _same_value(a: Any, b: Any) -> bool:
    # Python equality ignores BSON types (1 == 1.0 == True): a difference it
    # misses inside a value makes the rebuilt image differ, and the full image
    # is stored instead.
    return type(a) is type(b) and a == b


def _apply(pre: Mapping[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    """``pre`` with ``delta`` applied: set fields keep their place, new ones follow."""
    changed: Mapping[str, Any] = delta.get("set") or {}
    removed = set(delta.get("unset") or ())
    out = {k: changed.get(k, v) for k, v in pre.items() if k not in removed}
    out.update((k, v) for k, v in changed.items() if k not in out)
    return out


def entry(
    lsn: int,
    *,
    branch_id: str,
    ns: str,
    doc_id: Any,
    op: str,
    pre: Mapping[str, Any] | None,
    post: Mapping[str, Any] | None,
    client: ClientIdentity,
    ts: dt.datetime,
    last: bool = True,
    extra: Mapping[str, Any] | None = None,
    replace: bool = False,
    hints: Any = None,
) -> dict[str, Any]:
    """The WAL document for one change (``replace``: an update that wrote a whole
    new document, which change streams report as ``replace``; ``hints``: what they
    need to know of an update with operators, see ``update_description``;
    ``last``: the last entry its transaction writes, see ``stamp``)."""
    doc: dict[str, Any] = {
        "_id": bson.Int64(lsn),
        TIME if last else _TIME_INSIDE: ts,
        "branch_id": branch_id,
        "ns": ns,
        "doc_id": doc_id,
        "op": op,
    }
    if pre is not None:
        doc.update(_image(pre, "pre", doc_id))
    if post is not None:
        doc.update(_post_image(pre, post, doc_id))
    doc.update(client.to_doc())
    if replace:
        doc[REPLACED] = True
    if hints is not None:
        doc[HINTS] = hints
    if extra:
        doc.update(extra)
    return doc


def stamp(entries: list[dict[str, Any]], first: int, ts: dt.datetime) -> None:
    """Number ``entries`` (all that one transaction writes) from ``first`` and give
    them its time: as ``ts`` on the last, which the time index holds (the last LSN
    committed by a time is the last of some transaction), as ``t`` on the others."""
    for i, doc in enumerate(entries):
        doc.pop(TIME, None)
        doc.pop(_TIME_INSIDE, None)
        doc["_id"] = bson.Int64(first + i)
        doc[TIME if i == len(entries) - 1 else _TIME_INSIDE] = ts


def time_of(entry_doc: Mapping[str, Any]) -> dt.datetime | None:
    """When the change of a WAL entry was written."""
    when = entry_doc.get(TIME, entry_doc.get(_TIME_INSIDE))
    return when if isinstance(when, dt.datetime) else None


def image(entry_doc: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    """The pre- or post-image of a WAL entry (None: there is none), in whichever
    form it was stored. A post-image stored as a delta needs the entry's
    pre-image: read both."""
    packed = entry_doc.get(f"{key}_z")
    if packed is not None:
        return dict(bson.decode(_DECOMPRESSOR.decompress(bytes(packed))))
    if key == "post" and "post_d" in entry_doc:
        pre = image(entry_doc, "pre")
        assert pre is not None, "a post-image delta is stored with its pre-image"
        return _apply(pre, entry_doc["post_d"])
    value = entry_doc.get(key)
    if value is None:
        return None
    if "_id" in value:
        return dict(value)
    return {"_id": entry_doc["doc_id"], **value}
