"""``argon reset``, ``argon log``, ``argon blame`` and ``argon undo``: the WAL as history."""

from __future__ import annotations

import re
import sys
from typing import Annotated, Any

import typer

from argon.models import ResetResult, UndoResult

from .output import (
    add_row,
    emit,
    fmt_client,
    fmt_time,
    fmt_value,
    json_text,
    make_table,
    out,
    parse_time,
    parse_value,
    show,
)
from .session import EXIT_FAILED, EXIT_USAGE, Json, Uri, connected, fail

Branch = Annotated[str, typer.Option("--branch", "-b", help="The branch.")]
_LSN = re.compile(r"lsn-(\d+)")


def parse_target(text: str) -> dict[str, Any]:
    """``--to`` of reset: ``lsn-N``, an ISO time, or else a tag name."""
    if match := _LSN.fullmatch(text):
        return {"lsn": int(match.group(1))}
    if text[:1].isdigit():
        return {"time": parse_time(text)}
    return {"tag": text}


def _render_reset(result: ResetResult, *, applied: bool) -> None:
    verb = "discarded" if applied else "would discard"
    out.print(
        f"reset {result.branch} to LSN {result.to_lsn}: {verb} the changes to "
        f"{result.discarded_documents} documents",
        markup=False,
    )
    for col in result.collections:
        if isinstance(col, dict) and "ns" in col:
            out.print(f"  {col['ns']}: {col.get('documents', '?')} documents", markup=False)
        else:
            out.print(f"  {fmt_value(col)}", markup=False)
    if result.applied_lsns:
        first, last = result.applied_lsns
        out.print(f"logged as LSN {first}..{last} (undo with `argon undo`)")


def _show_reset(result: ResetResult, *, json: bool, applied: bool) -> None:
    if json:
        emit(result, json=True)
    else:
        _render_reset(result, applied=applied)


def reset(
    branch: Annotated[str, typer.Argument(help="Branch to move back.")],
    to: Annotated[str, typer.Option("--to", help="lsn-N, an ISO time, or a tag.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show the preview.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")] = False,
    uri: Uri = None,
    json: Json = False,
) -> None:
    """Move BRANCH back to an earlier point (lsn-N, a time, or a tag).

    Without --yes, shows what would be discarded and asks first. The reset is
    logged, so it can be undone.
    """
    target = parse_target(to)
    if json and not (yes or dry_run):
        fail("--json cannot ask for confirmation: add --yes (or --dry-run)", EXIT_USAGE)
    with connected(uri, json=json) as client:
        if dry_run or not yes:
            preview = client.reset(branch, dry_run=True, **target)
            _show_reset(preview, json=json, applied=False)
            if dry_run:
                return
            if not typer.confirm(f"Reset {branch} and discard these changes?", default=False):
                out.print("nothing changed")
                raise typer.Exit(EXIT_FAILED)
        _show_reset(client.reset(branch, **target), json=json, applied=True)


def log(
    branch: Annotated[
        str | None,
        typer.Option("--branch", "-b", help="The branch (default: the proxy's default)."),
    ] = None,
    db: Annotated[str | None, typer.Option(help="Only this database.")] = None,
    collection: Annotated[str | None, typer.Option(help="Only this collection.")] = None,
    doc_id: Annotated[
        str | None, typer.Option("--id", help="Only this document (_id; JSON if not a string).")
    ] = None,
    since_lsn: Annotated[int | None, typer.Option(help="Entries from this LSN on.")] = None,
    until_lsn: Annotated[int | None, typer.Option(help="Entries up to this LSN.")] = None,
    user: Annotated[
        str | None, typer.Option(help="Only changes by this user (when Argon runs with auth).")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many entries.")] = 100,
    uri: Uri = None,
    json: Json = False,
) -> None:
    """The changes on a branch, newest first."""
    with connected(uri, json=json) as client:
        entries = client.log(
            branch,
            db=db,
            collection=collection,
            doc_id=parse_value(doc_id) if doc_id is not None else None,
            since_lsn=since_lsn,
            until_lsn=until_lsn,
            user=user,
            limit=limit,
        )
    if json:
        emit(entries, json=True)
        return
    table = make_table("LSN", "time", "ns", "_id", "op", "client", "merge")
    for e in entries:
        merge = "-" if e.merge is None else fmt_value(e.merge)
        client_name = fmt_client(e.client)
        add_row(
            table, str(e.lsn), fmt_time(e.ts), e.ns, fmt_value(e.doc_id), e.op, client_name, merge
        )
    emit(table, json=False)


def blame(
    branch: Branch,
    db: Annotated[str, typer.Option(help="Database of the document.")],
    collection: Annotated[str, typer.Option(help="Collection of the document.")],
    doc_id: Annotated[str, typer.Option("--id", help="The document's _id (JSON if not a string).")],
    uri: Uri = None,
    json: Json = False,
) -> None:
    """Which change last set each field of a document."""
    with connected(uri, json=json) as client:
        result = client.blame(branch, db, collection, parse_value(doc_id))
    if json:
        emit(result, json=True)
        return
    table = make_table("field", "LSN", "time", "op", "client")
    for f in result.fields:
        client_name = fmt_client(f.client)
        add_row(table, f.path, str(f.lsn), fmt_time(f.ts), f.op, client_name)
    emit(table, json=False)
    sys.stdout.write(json_text(result.document) + "\n")


def _render_undo(result: UndoResult, *, applied: bool) -> None:
    verb = "restored" if applied else "would restore"
    out.print(f"{verb} {result.documents} documents", markup=False)
    if result.applied_lsns:
        first, last = result.applied_lsns
        out.print(f"logged as LSN {first}..{last}")
    if result.refused:
        table = make_table("ns", "_id", "left alone because")
        for r in result.refused:
            add_row(table, r.ns, fmt_value(r.doc_id), r.reason)
        show(table)


def undo(
    branch: Branch,
    from_lsn: Annotated[int, typer.Option("--from-lsn", help="First LSN to undo.")],
    to_lsn: Annotated[int, typer.Option("--to-lsn", help="Last LSN to undo.")],
    client_app: Annotated[
        str | None, typer.Option("--client", help="Only changes written with this appName.")
    ] = None,
    user: Annotated[
        str | None, typer.Option(help="Only changes by this user (when Argon runs with auth).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show what would change.")
    ] = False,
    uri: Uri = None,
    json: Json = False,
) -> None:
    """Revert the changes of an LSN range on a branch.

    Documents changed since the range are left alone and listed.
    """
    with connected(uri, json=json) as client:
        result = client.undo(
            branch, from_lsn, to_lsn, app_name=client_app, user=user, dry_run=dry_run
        )
    if json:
        emit(result, json=True)
    else:
        _render_undo(result, applied=not dry_run)


def register(app: typer.Typer) -> None:
    app.command("reset")(reset)
    app.command("log")(log)
    app.command("blame")(blame)
    app.command("undo")(undo)
