"""Client-level ``bulkWrite`` (MongoDB 8.0) through the write path, on every branch.

Theory of operation: ``bulkWrite`` on ``admin`` carries ``ops`` (each an
``insert``, ``update`` or ``delete`` naming an entry of ``nsInfo`` by index)
across any number of collections. Forwarded as it is, it would change
documents with no WAL entry; so each op runs as one statement of the ordinary
write path (``Writer``), with the op's index as its statement number for
retryable writes, exactly as a per-collection write command would. Like
mongod, ops are not atomic together: each is applied on its own, in order, and
an ordered bulk stops at its first error. The reply is mongod's: per-op
results in a cursor (only errors with ``errorsOnly``) and the totals. Fields
Argon cannot honour exactly are refused with 115 before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import bson
from bson import ObjectId

from .catalog import Branch
from .dbclient import CommandError
from .errors import BAD_VALUE, COMMAND_NOT_SUPPORTED, ArgonError
from .reads import GENERIC_FIELDS
from .write_context import Outcome, StatementError, WriteContext
from .writes import Writer

_TOP_LEVEL = frozenset(
    {"bulkWrite", "ops", "nsInfo", "ordered", "errorsOnly", "$db", "bypassDocumentValidation"}
)
# The command's fields each kind of statement carries to the write path, as the
# per-collection command of that kind takes them.
_CARRIED = {
    "insert": ("bypassDocumentValidation", "comment", "maxTimeMS"),
    "update": ("bypassDocumentValidation", "comment", "maxTimeMS", "let"),
    "delete": ("comment", "maxTimeMS", "let"),
}
_OP_FIELDS = {
    "insert": frozenset({"insert", "document"}),
    "update": frozenset(
        {
            "update",
            "filter",
            "updateMods",
            "multi",
            "upsert",
            "arrayFilters",
            "collation",
            "hint",
            "sort",
        }
    ),
    "delete": frozenset({"delete", "filter", "multi", "collation", "hint"}),
}


def _refuse(what: str, branch: Branch) -> ArgonError:
    return ArgonError(
        COMMAND_NOT_SUPPORTED,
        f"bulkWrite with {what} is not supported on branch {branch.name!r} yet. "
        "Use the collection-level bulk API, or ask for it in Argon's issue tracker.",
    )


def validate(cmd: Mapping[str, Any], branch: Branch) -> None:
    """Refuse, before anything runs, a bulkWrite Argon cannot apply exactly."""
    extra = set(cmd) - _TOP_LEVEL - GENERIC_FIELDS
    if extra:
        raise _refuse(f"field(s) {', '.join(sorted(extra))}", branch)
    ops, ns_info = cmd.get("ops"), cmd.get("nsInfo")
    if not isinstance(ops, list) or not isinstance(ns_info, list) or not ns_info:
        raise ArgonError(BAD_VALUE, "bulkWrite needs 'ops' and a non-empty 'nsInfo' array")
    for entry in ns_info:
        if not isinstance(entry, Mapping) or set(entry) - {"ns"}:
            raise _refuse("nsInfo fields other than 'ns'", branch)
    for index, op in enumerate(ops):
        kind = next(iter(op), None) if isinstance(op, Mapping) else None
        if kind not in _OP_FIELDS:
            raise ArgonError(BAD_VALUE, f"bulkWrite op {index} is not an insert, update or delete")
        assert isinstance(op, Mapping)
        if set(op) - _OP_FIELDS[kind]:
            raise _refuse(f"{kind} fields {', '.join(sorted(set(op) - _OP_FIELDS[kind]))}", branch)
        target = op[kind]
        if not isinstance(target, int) or isinstance(target, bool):
            raise ArgonError(BAD_VALUE, f"bulkWrite op {index}: {kind} must be an nsInfo index")
        if not 0 <= target < len(ns_info):
            raise ArgonError(
                BAD_VALUE, f"bulkWrite op {index}: nsInfo index {target} is out of range"
            )


async def run(writer: Writer, base: WriteContext, cmd: Mapping[str, Any]) -> dict[str, Any]:
    """Apply ``cmd``'s ops through ``writer``; ``base`` carries branch, client and retry."""
    namespaces = [str(entry["ns"]).partition(".") for entry in cmd["nsInfo"]]
    ordered = cmd.get("ordered", True) is not False
    totals = {"nInserted": 0, "nMatched": 0, "nModified": 0, "nUpserted": 0, "nDeleted": 0}
    results: list[dict[str, Any]] = []
    concern_errors: list[dict[str, Any]] = []  # what commits said of the write concern
    errors = 0
    for index, op in enumerate(cmd["ops"]):
        kind = next(iter(op))
        db, _, coll = namespaces[op[kind]]
        options = {k: cmd[k] for k in _CARRIED[kind] if k in cmd}
        ctx = replace(base, db=db, coll=coll, statement=index, options=options)
        try:
            result = await _apply(writer, ctx, kind, op, totals, concern_errors)
        except (StatementError, CommandError) as exc:
            errors += 1
            results.append(
                {"ok": 0.0, "idx": index, **_without_index(exc.write_error(index)), "n": 0}
            )
            if ordered:
                break
            continue
        if not cmd.get("errorsOnly"):
            results.append({"ok": 1.0, "idx": index, **result})
    reply: dict[str, Any] = {
        "cursor": {"id": bson.Int64(0), "firstBatch": results, "ns": "admin.$cmd.bulkWrite"},
        "nErrors": errors,
        **totals,
        "ok": 1.0,
    }
    if concern_errors:
        reply["writeConcernError"] = concern_errors[-1]
    return reply


def _without_index(error: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in error.items() if k != "index"}


async def _apply(
    writer: Writer,
    ctx: WriteContext,
    kind: str,
    op: Mapping[str, Any],
    totals: dict[str, int],
    concern_errors: list[dict[str, Any]],
) -> dict[str, Any]:
    out = await _apply_op(writer, ctx, kind, op, totals)
    if out.write_concern_error:
        concern_errors.append(out.write_concern_error)
    result: dict[str, Any] = {"n": out.matched}
    if kind == "update":
        result["nModified"] = out.modified
        if out.did_upsert:
            result.update(n=1, upserted={"_id": out.upserted})
    return result


async def _apply_op(
    writer: Writer, ctx: WriteContext, kind: str, op: Mapping[str, Any], totals: dict[str, int]
) -> Outcome:
    if kind == "insert":
        doc = dict(op.get("document") or {})
        out: Outcome = await writer.insert(ctx, doc if "_id" in doc else {"_id": ObjectId(), **doc})
        totals["nInserted"] += out.matched
        return out
    stmt: dict[str, Any] = {"q": op.get("filter") or {}}
    stmt.update({k: op[k] for k in ("collation", "hint") if k in op})
    if kind == "delete":
        stmt["limit"] = 0 if op.get("multi") else 1
        out = await writer.delete(ctx, stmt)
        totals["nDeleted"] += out.matched
        return out
    stmt.update(u=op.get("updateMods"), multi=bool(op.get("multi")), upsert=bool(op.get("upsert")))
    if "sort" in op:
        stmt["sort"] = op["sort"]
    if "arrayFilters" in op:
        stmt["arrayFilters"] = op["arrayFilters"]
    out = await writer.update(ctx, stmt)
    totals["nMatched"] += out.matched
    totals["nModified"] += out.modified
    if out.did_upsert:
        totals["nUpserted"] += 1
    return out
