"""Names: branch names, branch addresses in database names and appName, internal names.

Theory of operation: a branch travels in what an unmodified driver sends.
Per operation it is a suffix of the database name, ``ml_database@model-v2``;
per connection it is the appName, ``argon:model-v2``. MongoDB database names
may not contain ``/`` or ``.``, which branch names may, so in a database name
``~`` stands for ``/`` and ``,`` for ``.``: ``ml@customer-churn~alice`` is
database ``ml`` on branch ``customer-churn/alice``. A read-only point in time
follows a second ``@``: ``ml@main@lsn-1200`` or ``ml@main@2026-11-23T06:00:00Z``
(``argon uri`` prints these). Everything Argon stores lives in the ``__argon``
database or in collections named ``__argon.<branch-id>.<collection>`` beside
the base collection, and is hidden from clients.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import BAD_VALUE, INVALID_NAMESPACE, ArgonError

INTERNAL_DB = "__argon"
INTERNAL_PREFIX = "__argon."
TOMBSTONE = "__argon_tombstone"
MAIN = "main"
APP_PREFIX = "argon:"

_BRANCH = re.compile(r"[A-Za-z0-9._\-/]{1,200}")
# Each '/'-separated part starts with a letter or digit: names cannot look like
# command-line options ('-rf'), hidden files ('.x') or Argon's internal names
# ('__argon', which also prefixes overlay collections).
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]*")
_RESERVED_DB_CHARS = re.compile(r"[/\\. \"$]")


class InvalidBranchName(ArgonError):
    def __init__(self, name: str, why: str) -> None:
        super().__init__(
            BAD_VALUE,
            f"invalid branch name {name!r}: {why}. Branch names use letters, digits, "
            "'.', '_', '-' and '/', each '/'-separated part starting with a letter or a "
            "digit (for example 'customer-churn/alice').",
        )


def check_branch_spelling(name: str) -> str:
    """Return ``name`` if it may address a branch, else raise ``InvalidBranchName``.

    Addresses (``db@branch``, appName) accept every name earlier versions let
    a branch be created with, so such branches stay reachable; new names must
    pass ``validate_branch_name``.
    """
    if not isinstance(name, str) or not _BRANCH.fullmatch(name):
        raise InvalidBranchName(str(name), "it contains other characters or is empty")
    if name.startswith("/") or name.endswith("/") or "//" in name:
        raise InvalidBranchName(name, "'/' must separate non-empty parts")
    if any(part in {".", ".."} for part in name.split("/")):
        raise InvalidBranchName(name, "'.' and '..' are not branch name parts")
    return name


def validate_branch_name(name: str) -> str:
    """Return ``name`` if it is a valid name for a new branch, else raise ``InvalidBranchName``."""
    check_branch_spelling(name)
    if any(not _PART.fullmatch(part) for part in name.split("/")):
        raise InvalidBranchName(name, "each '/'-separated part must start with a letter or a digit")
    if ".." in name or name.endswith("."):
        raise InvalidBranchName(name, "'..' and a trailing '.' are not allowed")
    return name


def branch_to_db_suffix(branch: str) -> str:
    """The spelling of a branch inside a database name."""
    return branch.replace("/", "~").replace(".", ",")


def branch_from_db_suffix(suffix: str) -> str:
    return suffix.replace("~", "/").replace(",", ".")


@dataclass(frozen=True, slots=True)
class Address:
    """Where an operation goes: the real database, a branch, maybe a point in time."""

    db: str
    branch: str | None  # None: whatever the connection's or proxy's default is
    at: str | None = None  # "lsn-N" or an ISO time: a read-only snapshot


def parse_db(name: str) -> Address:
    """Split ``db@branch[@point]`` into its parts (a plain name has no branch).

    Raises InvalidNamespace when the database before the ``@`` is empty and
    BadValue when a second ``@`` is followed by no point: both would
    otherwise address something the client did not write (database ``""``,
    or the writable branch instead of a read-only point).
    """
    if "@" not in name:
        return Address(name, None)
    db, _, rest = name.partition("@")
    if not valid_db_name(db):
        raise ArgonError(
            INVALID_NAMESPACE,
            f"Invalid database name {db!r} in {name!r}: the part before '@' must be a "
            "database name (for example 'shop@feature')",
        )
    branch_part, second, at = rest.partition("@")
    branch = check_branch_spelling(branch_from_db_suffix(branch_part))
    if second and not at:
        raise ArgonError(
            BAD_VALUE,
            f"{name!r} has an empty point in time after its second '@': write "
            f"'{db}@{branch_part}' for the branch or '{db}@{branch_part}@lsn-<n>' for a point",
        )
    return Address(db, branch, at or None)


def format_db(db: str, branch: str, at: str | None = None) -> str:
    """The database name that addresses ``db`` on ``branch`` (and point ``at``)."""
    name = f"{db}@{branch_to_db_suffix(branch)}"
    return f"{name}@{at}" if at else name


def branch_from_app_name(app_name: str | None) -> str | None:
    """``argon:<branch>`` in appName selects a branch for the whole connection."""
    if not app_name or not app_name.startswith(APP_PREFIX):
        return None
    try:
        return check_branch_spelling(app_name[len(APP_PREFIX) :])
    except InvalidBranchName as exc:
        raise ArgonError(
            BAD_VALUE,
            f"appName {app_name!r} names no valid branch after {APP_PREFIX!r}: {exc.errmsg} "
            "Fix the appName in the connection string.",
        ) from None


def selects_branch(app_name: str | None) -> bool:
    """Whether appName asks for a branch (valid or not): such connections need the engine."""
    return app_name is not None and app_name.startswith(APP_PREFIX)


def overlay_name(branch_id: str, collection: str) -> str:
    return f"{INTERNAL_PREFIX}{branch_id}.{collection}"


def is_internal(collection: str) -> bool:
    return collection.startswith(INTERNAL_PREFIX) or collection.startswith("system.argon")


def valid_db_name(db: str) -> bool:
    return bool(db) and not _RESERVED_DB_CHARS.search(db) and "\x00" not in db


def namespace(value: object) -> tuple[str, str]:
    """``db`` and ``coll`` of a full collection name (``db.coll``)."""
    if not isinstance(value, str) or "." not in value:
        raise ArgonError(INVALID_NAMESPACE, f"Invalid namespace specified '{value}'")
    db, coll = value.split(".", 1)
    return db, coll
