"""MongoDB-style errors that Argon itself answers with.

Theory of operation: an error Argon raises while handling a command becomes an
ordinary ``{ok: 0, errmsg, code, codeName}`` reply, exactly like mongod's, so
drivers surface it as ``OperationFailure`` with the code intact. Codes are
mongod's own where one fits; ``errmsg`` always says what to do next.
"""

from __future__ import annotations

from typing import Any

# mongod's codes (src/mongo/base/error_codes.yml) for the situations Argon reports.
BAD_VALUE = 2
HOST_UNREACHABLE = 6
COMMAND_NOT_FOUND = 59
ILLEGAL_OPERATION = 20
NETWORK_TIMEOUT = 89
WRITE_CONFLICT = 112
NAMESPACE_NOT_FOUND = 26
COMMAND_NOT_SUPPORTED = 115
EXCEEDED_TIME_LIMIT = 50
UNSUPPORTED_OP_QUERY_COMMAND = 352
PROTOCOL_ERROR = 17
CONNECTION_LIMIT = 9001  # SocketException: drivers treat it as a network failure

# Argon's own codes, above the range mongod uses for the situations here.
MERGE_CONFLICT = 2010
STALE_MERGE = 2011
MERGE_NOT_FOUND = 2012
TAG_NOT_FOUND = 2013
TAG_EXISTS = 2014
UNDO_CONFLICT = 2015
POINT_OUT_OF_RANGE = 2005
PROJECT_NOT_FOUND = 2016
PROJECT_EXISTS = 2017
NOT_IN_PROJECT = 2018
PROJECT_IN_USE = 2019

_NAMES = {
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
    MERGE_CONFLICT: "MergeConflict",
    STALE_MERGE: "StaleMerge",
    MERGE_NOT_FOUND: "MergeNotFound",
    TAG_NOT_FOUND: "TagNotFound",
    TAG_EXISTS: "TagExists",
    UNDO_CONFLICT: "UndoConflict",
    POINT_OUT_OF_RANGE: "PointOutOfRange",
    PROJECT_NOT_FOUND: "ProjectNotFound",
    PROJECT_EXISTS: "ProjectExists",
    NOT_IN_PROJECT: "NotInProject",
    PROJECT_IN_USE: "ProjectInUse",
    # mongod's, for errors Argon answers in mongod's place
    11000: "DuplicateKey",
    27: "IndexNotFound",
    48: "NamespaceExists",
    72: "InvalidOptions",
    85: "IndexOptionsConflict",
    86: "IndexKeySpecsConflict",
    13: "Unauthorized",
    73: "InvalidNamespace",
}


class ArgonError(Exception):
    """An error answered to the client as a command failure."""

    def __init__(
        self,
        code: int,
        errmsg: str,
        *,
        labels: tuple[str, ...] = (),
        info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(errmsg)
        self.code = code
        self.errmsg = errmsg
        self.labels = labels
        self.info = info  # sent as errInfo, like mongod's document validation details

    @property
    def code_name(self) -> str:
        return _NAMES.get(self.code, "UnknownError")

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "ok": 0.0,
            "errmsg": self.errmsg,
            "code": self.code,
            "codeName": self.code_name,
        }
        if self.labels:
            doc["errorLabels"] = list(self.labels)
        if self.info is not None:
            doc["errInfo"] = self.info
        return doc


class UpstreamUnavailable(ArgonError):
    """The upstream server cannot be reached right now."""

    def __init__(self, errmsg: str) -> None:
        # RetryableWriteError lets drivers retry once, as for any network failure.
        super().__init__(HOST_UNREACHABLE, errmsg, labels=("RetryableWriteError",))
