"""Printing for the client commands: JSON for machines, rich text for people.

``--json`` prints the SDK's models (their attribute names are the keys) as
relaxed Extended JSON: datetimes as ``{"$date": "..."}``, ObjectIds as
``{"$oid": "..."}``, so the output is plain JSON any tool can parse. People
get rich tables. Command-line values that name documents (``--id``) are read
with ``parse_value``.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import typer
from bson import json_util
from rich.console import Console
from rich.table import Table
from rich.text import Text

from argon.models import Model

# soft_wrap: messages (and the commands they quote) stay on one line, copyable.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

PIPE_WIDTH = 400
_JSON_LITERAL = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?|true|false|null")


def to_plain(value: Any) -> Any:
    """Models (and lists of them) as plain dicts and lists."""
    if isinstance(value, Model):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


def json_text(value: Any, *, indent: int | None = 2) -> str:
    """``value`` as relaxed Extended JSON."""
    return json_util.dumps(
        to_plain(value), json_options=json_util.RELAXED_JSON_OPTIONS, indent=indent
    )


def emit(value: Any, *, json: bool) -> None:
    """Print ``value`` as JSON (with ``json``) or as rich renderable text."""
    if json:
        # Straight to stdout: rich would wrap long lines and interpret [brackets].
        sys.stdout.write(json_text(value) + "\n")
    else:
        show(value)


def show(renderable: Any) -> None:
    """Print text or a table for people.

    On a terminal, tables fit its width; into a pipe or file they take the
    width their content needs, rather than rich's default of 80 columns.
    """
    console = out if out.is_terminal else Console(highlight=False, width=PIPE_WIDTH)
    console.print(renderable)


def parse_value(text: str) -> Any:
    """A value typed on the command line: Extended JSON when it looks like JSON
    (``{"$oid": "..."}``, ``42``, ``"42"``, ``true``), else the text as a string."""
    stripped = text.strip()
    if not stripped or not (stripped[0] in '{["' or _JSON_LITERAL.fullmatch(stripped)):
        return text
    try:
        return json_util.loads(stripped)
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} looks like JSON but is not valid: {exc}") from None


def parse_time(text: str) -> dt.datetime:
    """An ISO-8601 time (``2026-11-23T06:00:00Z``); without a zone it is UTC."""
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO time like 2026-11-23T06:00:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def fmt_time(value: dt.datetime | None) -> str:
    """A datetime for people, in UTC to the second."""
    if value is None:
        return "-"
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(timespec="seconds") + "Z"


def fmt_value(value: Any) -> str:
    """A document, id or value for people: strings as they are, the rest as compact JSON.

    The same text given back to ``--id`` (or a merge id) reads the same value.
    """
    if isinstance(value, str):
        return value
    return json_text(value, indent=None)


def make_table(*headers: str, show_header: bool = True) -> Table:
    """A table whose cells fold rather than cut: names and ids must stay whole.

    Times and LSNs are short and read badly broken, so they never wrap.
    """
    table = Table(show_header=show_header)
    for header in headers:
        whole = "time" in header or "LSN" in header or header == "last activity"
        table.add_column(header, overflow="fold", no_wrap=whole)
    return table


def add_row(table: Table, *cells: str) -> None:
    """Add a row of plain text: data such as ``[abc]`` must not be read as rich markup."""
    table.add_row(*(Text(c) for c in cells))


def fmt_client(value: Any) -> str:
    """Who wrote a WAL entry: its appName, else its user, else its connection."""
    if isinstance(value, dict):
        for key in ("app", "user"):
            if value.get(key):
                return str(value[key])
        if value.get("conn") is not None:
            return f"conn {value['conn']}"
    return "-" if value is None else fmt_value(value)


def fmt_list(values: Sequence[Any]) -> str:
    return ", ".join(fmt_value(v) for v in values) if values else "-"


@contextmanager
def progress(message: str, *, json: bool) -> Iterator[None]:
    """A spinner on stderr while a long command runs (none for JSON or non-terminals)."""
    spinner = err.status(message) if not json and err.is_terminal else nullcontext()
    with spinner:
        yield
