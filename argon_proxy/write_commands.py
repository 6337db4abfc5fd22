"""insert, update, delete, findAndModify and client-level bulkWrite as commands:
their statements through the write path (``writes.py``), replied to as mongod
replies.

Theory of operation: a command's statements run as transactions of their own
(inserts outside a client transaction in bounded parts, everything else one
by one), so an ordered command stops at its first failing statement with the
statements before it applied, and an unordered one goes on; each failure is
reported at its index as mongod reports it. A conflict with another writer
inside a client transaction fails the whole command as transient, so the
driver retries the transaction.
"""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from . import projects
from .branch_views import not_on_a_view
from .bulk_write import run as run_bulk_write
from .bulk_write import validate as validate_bulk_write
from .calls import Call, Reply
from .catalog import Catalog, read_only
from .dbclient import CommandError
from .errors import WRITE_CONFLICT, ArgonError
from .naming import is_internal
from .reads import Reader
from .statements import confirm_writable
from .txn import Runner, is_transient
from .write_context import (
    NeedsStatements,
    Outcome,
    StatementError,
    WriteContext,
    chunks,
    write_options,
)
from .writes import Writer


class WriteCommands:
    """The write commands of every branch, main included, with the services they use."""

    def __init__(self, catalog: Catalog, reader: Reader, writer: Writer) -> None:
        self.catalog = catalog
        self.reader = reader
        self.writer = writer

    async def bulk_write(self, call: Call) -> Reply:
        """Client-level bulkWrite, one write-path statement per op (see bulk_write.py)."""
        branch, cmd, req = call.branch, call.cmd, call.req
        if branch.read_only:
            raise read_only(branch, "bulkWrite")
        validate_bulk_write(cmd, branch)
        for entry in cmd["nsInfo"]:
            projects.check(self.catalog, branch, str(entry["ns"]).partition(".")[0])
        ctx = WriteContext(branch, "", "", call.client, req.joined)
        if req.joined is None and "txnNumber" in cmd and "lsid" in cmd:
            ctx.retry = {"lsid": cmd["lsid"].get("id"), "txn": cmd["txnNumber"]}
        if req.joined is None and isinstance(cmd.get("writeConcern"), dict):
            ctx.write_concern = cmd["writeConcern"]
        reply = await run_bulk_write(self.writer, ctx, cmd)
        await confirm_writable(self.catalog, ctx, "bulkWrite")
        return reply

    async def write(self, call: Call) -> Reply:
        name, db, branch, cmd, req = call.name, call.db, call.branch, call.cmd, call.req
        if branch.read_only:
            raise read_only(branch, name)
        coll = cmd[name]
        if not isinstance(coll, str) or is_internal(coll):
            raise ArgonError(73, f"Invalid namespace specified '{db}.{coll}'")
        if await self.reader.is_view(branch, db, coll):
            raise not_on_a_view(db, coll, name)
        ctx = WriteContext(branch, db, coll, call.client, req.joined)
        ctx.applied.current = req.synced
        if req.joined is None and "txnNumber" in cmd and "lsid" in cmd:
            ctx.retry = {"lsid": cmd["lsid"].get("id"), "txn": cmd["txnNumber"]}
        if req.joined is None and isinstance(cmd.get("writeConcern"), dict):
            ctx.write_concern = cmd["writeConcern"]
        if name != "findAndModify":  # findAndModify's fields are its one statement's
            ctx.options = write_options(name, cmd)
        try:
            reply = await self._write_statements(name, ctx, call)
        except CommandError as exc:
            if is_transient(exc):
                raise (_transient(exc) if req.joined else _still_conflicting(name, ctx)) from None
            raise
        await confirm_writable(self.catalog, ctx, f"{name} on {ctx.ns}")
        return reply

    async def _write_statements(self, name: str, ctx: WriteContext, call: Call) -> dict[str, Any]:
        cmd = call.cmd
        if name == "findAndModify":
            outcome = await self.writer.find_and_modify(ctx, cmd)
            return _with_concern_error(
                {**outcome.reply_value, "ok": 1.0}, outcome.write_concern_error
            )
        key = {"insert": "documents", "update": "updates", "delete": "deletes"}[name]
        statements = list(cmd.get(key) or [])
        ordered = cmd.get("ordered", True)
        reply: dict[str, Any] = {"n": 0}
        if name == "update":
            reply["nModified"] = 0
        upserted: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        if name == "insert":
            statements = [d if "_id" in d else {"_id": ObjectId(), **d} for d in statements]
        concern_error = None
        start = 0
        for part in self._parts(name, statements, call.joined):
            skip = 0
            if len(part) > 1 and name != "insert":
                ctx.statement = start
                outs = await self.writer.group(ctx, name, part)
                if outs is not None:
                    for index, out in enumerate(outs, start):
                        _tally(name, reply, upserted, index, out)
                        concern_error = out.write_concern_error or concern_error
                    start += len(part)
                    continue
            elif len(part) > 1:
                # The retry record of a part is keyed by where it starts in the command.
                ctx.statement = "all" if start == 0 else f"all-{start}"
                try:
                    out = await self.writer.insert_batch(ctx, part)
                except NeedsStatements as exc:
                    # Some document fails: the rest statement by statement, as mongod
                    # reports it, after those already applied.
                    reply["n"] += exc.done
                    skip = exc.done
                else:
                    reply["n"] += out.matched
                    concern_error = out.write_concern_error or concern_error
                    start += len(part)
                    continue
            for index, stmt in enumerate(part[skip:], start + skip):
                ctx.statement = index
                try:
                    if name == "insert":
                        out = await self.writer.insert(ctx, stmt)
                    elif name == "update":
                        out = await self.writer.update(ctx, stmt)
                    else:
                        out = await self.writer.delete(ctx, stmt)
                except (StatementError, CommandError) as exc:
                    if (
                        isinstance(exc, CommandError)
                        and is_transient(exc)
                        and (ctx.retry is not None or ctx.joined is not None)
                    ):
                        # The driver may retry the whole command (or, in a client's
                        # transaction, the transaction): say so at the top.
                        if ctx.joined is not None:
                            raise _transient(exc) from None
                        raise
                    errors.append(exc.write_error(index))
                    if ordered:
                        break
                    continue
                concern_error = out.write_concern_error or concern_error
                _tally(name, reply, upserted, index, out)
            if errors and ordered:
                break
            start += len(part)
        if upserted:
            reply["upserted"] = upserted
        if errors:
            reply["writeErrors"] = errors
        reply["ok"] = 1.0
        return _with_concern_error(reply, concern_error)

    @staticmethod
    def _parts(name: str, statements: list[Any], joined: Runner | None) -> list[list[Any]]:
        """The statements cut into the parts that run as one transaction each.

        Outside a client transaction, inserts and runs of single-document updates
        or deletes go in bounded parts (``chunks``: one command's worth), so no
        transaction grows with the batch; a part that cannot run whole falls back
        to its statements one by one. Multi-document updates and deletes run
        alone (they split themselves when they match many documents).
        """
        if joined is not None or len(statements) < 2:
            return [[s] for s in statements]
        if name == "insert":
            return chunks(statements)
        parts: list[list[Any]] = []
        run: list[Any] = []
        for stmt in statements:
            if _single_document(name, stmt):
                run.append(stmt)
                continue
            parts.extend(chunks(run))
            parts.append([stmt])
            run = []
        return parts + chunks(run)


def _single_document(name: str, stmt: Any) -> bool:
    """Whether an update or delete statement changes at most one document."""
    if not isinstance(stmt, dict):
        return False
    if name == "update":
        return not stmt.get("multi")
    return bool(stmt.get("limit") == 1)


def _tally(
    name: str, reply: dict[str, Any], upserted: list[dict[str, Any]], index: int, out: Outcome
) -> None:
    """Count statement ``index``'s outcome into the command's reply, as mongod does."""
    reply["n"] += out.matched
    if name == "update":
        reply["nModified"] += out.modified
        if out.did_upsert:
            reply["n"] += 1
            upserted.append({"index": index, "_id": out.upserted})


def _with_concern_error(reply: dict[str, Any], error: dict[str, Any] | None) -> dict[str, Any]:
    """``reply`` with the commit's ``writeConcernError``, where mongod puts it."""
    if error:
        reply["writeConcernError"] = error
    return reply


def _transient(exc: CommandError) -> ArgonError:
    """A conflict inside a client's transaction, as mongod fails such a statement:
    the whole command, labelled so that the transaction is started again."""
    return ArgonError(exc.code, exc.errmsg, labels=("TransientTransactionError",))


def _still_conflicting(name: str, ctx: WriteContext) -> ArgonError:
    """A write that kept conflicting past Argon's retries, labelled for drivers.

    Outside a client transaction mongod never returns a write conflict (it
    retries), so ``TransientTransactionError`` would be wrong here; a
    retryable write gets the label that makes a driver retry it.
    """
    labels = ("RetryableWriteError",) if ctx.retry is not None else ()
    return ArgonError(
        WRITE_CONFLICT,
        f"{name} on {ctx.ns} (branch {ctx.branch.name!r}) kept conflicting with other "
        "writers; the statement that conflicted was not applied: retry it.",
        labels=labels,
    )
