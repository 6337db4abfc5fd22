"""MongoDB-style errors that Argon itself answers with.

Theory of operation: an error Argon raises while handling a command becomes an
ordinary ``{ok: 0, errmsg, code, codeName}`` reply, exactly like mongod's, so
drivers surface it as ``OperationFailure`` with the code intact. Codes are
mongod's own where one fits; ``errmsg`` always says what to do next.
"""

from __future__ import annotations

from typing import Any

from argon import codes

# Argon's own codes, from the table the SDK shares (argon/codes.py).
BRANCH_EXISTS = codes.BRANCH_EXISTS
BRANCH_HAS_CHILDREN = codes.BRANCH_HAS_CHILDREN
BRANCH_NOT_FOUND = codes.BRANCH_NOT_FOUND
MERGE_CONFLICT = codes.MERGE_CONFLICT
MERGE_NOT_FOUND = codes.MERGE_NOT_FOUND
NOT_IN_PROJECT = codes.NOT_IN_PROJECT
POINT_OUT_OF_RANGE = codes.POINT_OUT_OF_RANGE
PROJECT_EXISTS = codes.PROJECT_EXISTS
PROJECT_IN_USE = codes.PROJECT_IN_USE
PROJECT_NOT_FOUND = codes.PROJECT_NOT_FOUND
PROTECTED_BRANCH = codes.PROTECTED_BRANCH
READ_ONLY_BRANCH = codes.READ_ONLY_BRANCH
STALE_MERGE = codes.STALE_MERGE
TAG_EXISTS = codes.TAG_EXISTS
TAG_NOT_FOUND = codes.TAG_NOT_FOUND
UNDO_CONFLICT = codes.UNDO_CONFLICT

# mongod's codes (src/mongo/base/error_codes.yml) for the situations Argon reports.
BAD_VALUE = 2
HOST_UNREACHABLE = 6
COMMAND_NOT_FOUND = 59
ILLEGAL_OPERATION = 20
NETWORK_TIMEOUT = 89
WRITE_CONFLICT = 112
NAMESPACE_NOT_FOUND = 26
INDEX_NOT_FOUND = 27
NAMESPACE_EXISTS = 48
COMMAND_NOT_SUPPORTED = 115
EXCEEDED_TIME_LIMIT = 50
UNSUPPORTED_OP_QUERY_COMMAND = 352
PROTOCOL_ERROR = 17
UNAUTHORIZED = 13
INVALID_NAMESPACE = 73
DUPLICATE_FIELD = 40413  # mongod's IDL parser: "BSON field ... is a duplicate field"
CONNECTION_LIMIT = 9001  # SocketException: drivers treat it as a network failure

NOT_IN_TRANSACTION = 263
NO_SUCH_TRANSACTION = 251
INVALID_OPTIONS = 72
AUTHENTICATION_FAILED = 18
USER_NOT_FOUND = 11
MECHANISM_UNAVAILABLE = 334
USER_EXISTS = 51003  # mongod's createUser of a user that exists

_NAMES = {
    **codes.NAMES,  # Argon's own
    BAD_VALUE: "BadValue",
    HOST_UNREACHABLE: "HostUnreachable",
    COMMAND_NOT_FOUND: "CommandNotFound",
    ILLEGAL_OPERATION: "IllegalOperation",
    NETWORK_TIMEOUT: "NetworkTimeout",
    WRITE_CONFLICT: "WriteConflict",
    NAMESPACE_NOT_FOUND: "NamespaceNotFound",
    COMMAND_NOT_SUPPORTED: "CommandNotSupported",
    EXCEEDED_TIME_LIMIT: "MaxTimeMSExpired",
    UNSUPPORTED_OP_QUERY_COMMAND: "UnsupportedOpQueryCommand",
    PROTOCOL_ERROR: "ProtocolError",
    CONNECTION_LIMIT: "SocketException",
    # mongod's, for errors Argon answers in mongod's place
    11000: "DuplicateKey",
    27: "IndexNotFound",
    48: "NamespaceExists",
    INVALID_OPTIONS: "InvalidOptions",
    NO_SUCH_TRANSACTION: "NoSuchTransaction",
    85: "IndexOptionsConflict",
    86: "IndexKeySpecsConflict",
    13: "Unauthorized",
    AUTHENTICATION_FAILED: "AuthenticationFailed",
    USER_NOT_FOUND: "UserNotFound",
    MECHANISM_UNAVAILABLE: "MechanismUnavailable",
    DUPLICATE_FIELD: "Location40413",
    73: "InvalidNamespace",
    112: "WriteConflict",
    NOT_IN_TRANSACTION: "OperationNotSupportedInTransaction",
    1: "InternalError",
    43: "CursorNotFound",
    47: "NoMatchingDocument",
    149: "ViewDepthLimitExceeded",
    166: "CommandNotSupportedOnView",
    167: "OptionNotSupportedOnView",
    260: "InvalidResumeToken",
    280: "ChangeStreamFatalError",
}
_LOCATION_CODES = 10_000  # mongod names its numbered assertions Location<code>, from here up


class ArgonError(Exception):
    """An error answered to the client as a command failure."""

    def __init__(
        self,
        code: int,
        errmsg: str,
        *,
        labels: tuple[str, ...] = (),
        info: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(errmsg)
        self.code = code
        self.errmsg = errmsg
        self.labels = labels
        self.info = info  # sent as errInfo, like mongod's document validation details
        # Fields mongod puts beside code and errmsg (a duplicate key's keyPattern
        # and keyValue), which applications read to say what clashed.
        self.details = dict(details or {})

    @property
    def code_name(self) -> str:
        if self.code in _NAMES:
            return _NAMES[self.code]
        return f"Location{self.code}" if self.code >= _LOCATION_CODES else "UnknownError"

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "ok": 0.0,
            "errmsg": self.errmsg,
            "code": self.code,
            "codeName": self.code_name,
            **self.details,
        }
        if self.labels:
            doc["errorLabels"] = list(self.labels)
        if self.info is not None:
            doc["errInfo"] = self.info
        return doc

    def write_error(self, index: int) -> dict[str, Any]:
        """This error as mongod lists it in a write command's ``writeErrors``."""
        doc: dict[str, Any] = {"index": index, "code": self.code, **self.details}
        doc["errmsg"] = self.errmsg
        if self.info is not None:
            doc["errInfo"] = self.info
        return doc


class UpstreamUnavailable(ArgonError):
    """The upstream server cannot be reached right now."""

    def __init__(self, errmsg: str) -> None:
        # RetryableWriteError lets drivers retry once, as for any network failure.
        super().__init__(HOST_UNREACHABLE, errmsg, labels=("RetryableWriteError",))


class UpstreamIOError(Exception):
    """An exchange with the upstream failed: the connection closed, reset or timed out.

    Not an ``ArgonError``: code that handles command failures must not take a
    lost connection for an answer. ``unsent`` is true when the request did not
    wholly leave, so the upstream cannot have run it and it may be sent again.
    """

    def __init__(self, message: str, *, timed_out: bool = False, unsent: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.unsent = unsent


# Commands drivers retry when the reply carries the RetryableWriteError label.
RETRYABLE_WRITES = frozenset(
    {
        "insert",
        "update",
        "delete",
        "findAndModify",
        "findandmodify",
        "bulkWrite",
        "commitTransaction",
        "abortTransaction",
    }
)


def network_labels(name: str, *, in_transaction: bool) -> tuple[str, ...]:
    """The labels of a network error during ``name``, as drivers expect them from mongos."""
    if in_transaction and name == "commitTransaction":
        return ("RetryableWriteError", "UnknownTransactionCommitResult")
    if in_transaction and name != "abortTransaction":
        return ("TransientTransactionError",)
    if name in RETRYABLE_WRITES:
        return ("RetryableWriteError",)
    return ()


def relabel_unavailable(exc: ArgonError, name: str, *, in_transaction: bool) -> ArgonError:
    """``exc`` with the network labels for ``name`` if it says the upstream is unreachable."""
    if isinstance(exc, UpstreamUnavailable):
        exc.labels = network_labels(name, in_transaction=in_transaction)
    return exc


def upstream_lost(exc: UpstreamIOError, name: str, *, in_transaction: bool) -> ArgonError:
    """The network error a client gets when the upstream failed during ``name``.

    mongos answers the same way: HostUnreachable (or NetworkTimeout) with the
    labels that make drivers retry a write, retry a transaction, or ask again
    whether a commit happened.
    """
    code = NETWORK_TIMEOUT if exc.timed_out else HOST_UNREACHABLE
    labels = network_labels(name, in_transaction=in_transaction)
    outcome = (
        "The command never reached it."
        if exc.unsent
        else "The command may or may not have been applied."
    )
    return ArgonError(
        code,
        f"Argon lost its connection to the upstream MongoDB during {name!r}: {exc}. {outcome}",
        labels=labels,
    )
