"""Rich renderings of branches, merges and diffs, shared by several command groups."""

from __future__ import annotations

import shlex

from rich.table import Table

from argon.models import BranchInfo, Conflict, Diff, Merge

from .output import add_row, fmt_list, fmt_time, fmt_value, make_table, out, show


def branch_flags(info: BranchInfo) -> str:
    flags = [
        name
        for name, on in (
            ("default", info.default),
            ("read-only", info.read_only),
            ("archived", info.archived),
            ("snapshot", info.snapshot),
        )
        if on
    ]
    return ", ".join(flags) or "-"


def branch_table(branches: list[BranchInfo]) -> Table:
    table = make_table("branch", "parent", "head LSN", "last activity", "flags", "tags")
    for b in branches:
        name = f"* {b.name}" if b.default else b.name
        add_row(
            table,
            name,
            b.parent or "-",
            str(b.head_lsn),
            fmt_time(b.last_activity),
            branch_flags(b),
            fmt_list(b.tags),
        )
    return table


def branch_details(info: BranchInfo) -> Table:
    table = make_table("field", "value", show_header=False)
    rows = [
        ("name", info.name),
        ("parent", info.parent or "-"),
        ("project", info.project),
        ("created", fmt_time(info.created_at)),
        ("last activity", fmt_time(info.last_activity)),
        ("base LSN", str(info.base_lsn)),
        ("head LSN", str(info.head_lsn)),
        ("flags", branch_flags(info)),
        ("description", info.description or "-"),
        ("tags", fmt_list(info.tags)),
    ]
    if info.stats is not None:
        rows += [
            ("changes", str(info.stats.changes)),
            ("overlay documents", str(info.stats.overlay_documents)),
            ("overlay bytes", str(info.stats.overlay_bytes)),
            ("collections", fmt_list(info.stats.collections)),
        ]
    for key, value in rows:
        add_row(table, key, value)
    return table


def conflict_table(conflicts: tuple[Conflict, ...] | list[Conflict]) -> Table:
    table = make_table("ns", "_id", "kind", "paths", "resolution")
    for c in conflicts:
        resolution = "-" if c.resolution is None else fmt_value(c.resolution)
        add_row(table, c.ns, fmt_value(c.doc_id), c.kind, fmt_list(c.paths), resolution)
    return table


def render_merge(merge: Merge) -> None:
    """A merge's outcome: what it did (or would do) per collection, and its conflicts."""
    ff = ", fast-forward" if merge.fast_forward else ""
    out.print(
        f"merge {fmt_value(merge.id)}: {merge.source} -> {merge.target} "
        f"(strategy {merge.strategy}{ff}): {merge.status}",
        markup=False,
    )
    c = merge.counts
    out.print(
        f"inserted {c.inserted}, updated {c.updated}, deleted {c.deleted}, conflicts {c.conflicts}"
    )
    if merge.collections:
        table = make_table("collection", "inserted", "updated", "deleted", "conflicts")
        for col in merge.collections:
            n = col.counts
            add_row(
                table, col.ns, *(str(x) for x in (n.inserted, n.updated, n.deleted, n.conflicts))
            )
        show(table)
    for change in merge.index_changes:
        out.print(f"index {change.name} on {change.ns}: {change.op}", markup=False)
    if merge.conflicts:
        show(conflict_table(merge.conflicts))
    if merge.status == "preview":
        out.print(
            f"nothing written yet: apply with `argon merge apply {_quoted_id(merge)}`",
            markup=False,
        )


def render_conflict_stop(merge: Merge) -> None:
    """The conflicts that stopped a merge, and the ways forward."""
    shown = len(merge.conflicts)
    total = merge.counts.conflicts or shown
    out.print(
        f"merge {fmt_value(merge.id)} stopped on {total} conflict(s); nothing was applied",
        markup=False,
    )
    show(conflict_table(merge.conflicts))
    if total > shown:
        out.print(
            f"{shown} of {total} shown: `argon merge conflicts {_quoted_id(merge)}` lists all",
            markup=False,
        )
    mid = _quoted_id(merge)
    out.print(
        f"resolve each with `argon merge resolve {mid} --ns <ns> --id <_id> --take ours|theirs`,"
        f" then `argon merge apply {mid}`;\nor merge again with --strategy ours (keep "
        f"{merge.target}) or --strategy theirs (take {merge.source})",
        markup=False,
    )


def _quoted_id(merge: Merge) -> str:
    return shlex.quote(fmt_value(merge.id))


def render_diff(diff: Diff) -> None:
    """A diff: the summary, then each collection's documents and changed fields."""
    s = diff.summary
    out.print(
        f"{diff.from_ref} -> {diff.to_ref}: {s.added} added, {s.removed} removed, "
        f"{s.modified} modified",
        markup=False,
    )
    for col in diff.collections:
        n = col.summary
        out.print(
            f"\n{col.ns}: {n.added} added, {n.removed} removed, {n.modified} modified",
            markup=False,
        )
        if not col.documents:
            continue
        table = make_table("_id", "change", "fields")
        for doc in col.documents:
            fields = "; ".join(
                f"{f.path} {f.change}: {fmt_value(f.before)} -> {fmt_value(f.after)}"
                if f.change == "modified"
                else f"{f.path} {f.change}"
                for f in doc.fields
            )
            add_row(table, fmt_value(doc.doc_id), doc.change, fields or "-")
        show(table)
        listed = len(col.documents)
        total = n.added + n.removed + n.modified
        if total > listed:
            out.print(f"({listed} of {total} documents listed; raise --limit for more)")
