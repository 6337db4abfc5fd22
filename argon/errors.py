"""Errors raised by the SDK: one ``ArgonError`` per failed command, subclassed by code.

The proxy answers a failed admin command like mongod does (``ok: 0``, ``code``,
``codeName``, ``errmsg``); pymongo raises that as ``OperationFailure``. The SDK
turns it into the ``ArgonError`` subclass for its code, so callers can write
``except argon.BranchNotFound`` instead of comparing numbers. Errors raised by
pymongo collections returned from ``connect`` stay pymongo's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from pymongo.errors import ConnectionFailure, OperationFailure

from . import codes

if TYPE_CHECKING:
    from .models import Merge


class ArgonError(Exception):
    """A command the proxy refused, or a request the SDK could not deliver.

    ``code`` and ``code_name`` are the server's (``2001``, ``"BranchNotFound"``),
    ``message`` its ``errmsg`` (which says what to do next) and ``details`` the
    whole reply document.
    """

    code_value: ClassVar[int | None] = None  # the code a subclass stands for

    def __init__(
        self,
        code: int,
        code_name: str,
        message: str,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code_name} ({code}): {message}")
        self.code = code
        self.code_name = code_name
        self.message = message
        self.details: Mapping[str, Any] = details or {}


class BadValue(ArgonError):
    """An argument is missing or malformed (code 2)."""

    code_value = 2


class HostUnreachable(ArgonError):
    """The proxy is up but its upstream server is not (code 6)."""

    code_value = 6


class CommandNotFound(ArgonError):
    """The proxy does not know this action: it is older than the SDK (code 59)."""

    code_value = 59


class CommandNotSupported(ArgonError):
    """The proxy cannot run this command on a branch yet (code 115)."""

    code_value = 115


class DuplicateKey(ArgonError):
    """A unique index refused a document (code 11000)."""

    code_value = 11000


class BranchNotFound(ArgonError):
    """No branch (or tag) of that name (code 2001)."""

    code_value = codes.BRANCH_NOT_FOUND


class BranchExists(ArgonError):
    """A branch or tag of that name exists (code 2002)."""

    code_value = codes.BRANCH_EXISTS


class BranchHasChildren(ArgonError):
    """Delete or merge the branch's children first (code 2003)."""

    code_value = codes.BRANCH_HAS_CHILDREN


class ReadOnlyBranch(ArgonError):
    """Snapshots, tags and time-travel addresses refuse writes (code 2004)."""

    code_value = codes.READ_ONLY_BRANCH


class PointOutOfRange(ArgonError):
    """That LSN or time is not reachable on the branch (code 2005)."""

    code_value = codes.POINT_OUT_OF_RANGE


class MergeConflictError(ArgonError):
    """A merge with strategy ``fail`` found conflicts; nothing was applied (code 2010).

    ``merge`` is the merge document from the error, so the conflicts can be
    listed (``merge.conflicts``), resolved and the merge applied by its ``id``.
    """

    code_value = codes.MERGE_CONFLICT

    @property
    def merge(self) -> Merge | None:
        """The merge the server computed, or ``None`` if the reply carried none."""
        from .models import Merge

        info = self.details.get("errInfo")
        doc = info.get("merge") if isinstance(info, Mapping) else None
        return Merge.from_doc(doc) if isinstance(doc, Mapping) else None


class StaleMergeError(ArgonError):
    """The preview no longer matches the branches; merge again (code 2011)."""

    code_value = codes.STALE_MERGE


class MergeNotFound(ArgonError):
    """No merge of that id (code 2012)."""

    code_value = codes.MERGE_NOT_FOUND


class TagNotFound(ArgonError):
    """No tag of that name (code 2013)."""

    code_value = codes.TAG_NOT_FOUND


class TagExists(ArgonError):
    """A tag (or branch) of that name exists (code 2014)."""

    code_value = codes.TAG_EXISTS


class UndoConflictError(ArgonError):
    """Documents changed since the range being undone (code 2015)."""

    code_value = codes.UNDO_CONFLICT


class ProjectNotFound(ArgonError):
    """No project of that name (code 2016)."""

    code_value = codes.PROJECT_NOT_FOUND


class ProjectExists(ArgonError):
    """A project of that name exists (code 2017)."""

    code_value = codes.PROJECT_EXISTS


class NotInProject(ArgonError):
    """A database outside the branch's project was addressed through it (code 2018)."""

    code_value = codes.NOT_IN_PROJECT


class ProjectInUse(ArgonError):
    """The project still has branches (code 2019)."""

    code_value = codes.PROJECT_IN_USE


class Unauthorized(ArgonError):
    """The user may not do this on this branch, or has not authenticated."""

    code_value = 13


class ProtectedBranch(ArgonError):
    """A direct change to a protected branch: make it on a branch and merge."""

    code_value = codes.PROTECTED_BRANCH


class ProxyUnreachable(ArgonError):
    """No Argon proxy answered at the URI in time. Start one with ``argon serve``."""

    code_value = 6


class NotAvailableError(ArgonError, NotImplementedError):
    """A feature the SDK names but Argon does not provide yet (code 238, NotImplemented)."""

    code_value = 238

    def __init__(self, message: str) -> None:
        super().__init__(238, "NotImplemented", message)


_BY_CODE: dict[int, type[ArgonError]] = {
    cls.code_value: cls
    for cls in (
        BadValue,
        HostUnreachable,
        CommandNotFound,
        CommandNotSupported,
        DuplicateKey,
        BranchNotFound,
        BranchExists,
        BranchHasChildren,
        ReadOnlyBranch,
        PointOutOfRange,
        MergeConflictError,
        StaleMergeError,
        MergeNotFound,
        TagNotFound,
        TagExists,
        UndoConflictError,
        ProjectNotFound,
        ProjectExists,
        NotInProject,
        ProjectInUse,
        Unauthorized,
        ProtectedBranch,
    )
    if cls.code_value is not None
}


def from_operation_failure(exc: OperationFailure) -> ArgonError:
    """The ``ArgonError`` subclass for a command failure pymongo raised."""
    details: Mapping[str, Any] = exc.details or {}
    code = int(exc.code) if exc.code is not None else 0
    code_name = str(details.get("codeName") or "UnknownError")
    message = str(details.get("errmsg") or exc)
    cls = _BY_CODE.get(code, ArgonError)
    return cls(code, code_name, message, details)


def proxy_unreachable(uri: str, exc: ConnectionFailure) -> ProxyUnreachable:
    """The error for a proxy that did not answer, saying how to start one."""
    return ProxyUnreachable(
        6,
        "HostUnreachable",
        f"no Argon proxy answered at {uri}: start it with `argon serve`, or point "
        f"ARGON_MONGODB_URI (or --uri) at a running one ({exc.__class__.__name__})",
    )
