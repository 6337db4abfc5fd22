"""Argon's Python SDK: branches of MongoDB data from Python, through the Argon proxy.

::

    import argon

    argon.create_branch("etl-pipeline-dev")
    db = argon.connect("etl-pipeline-dev")        # a pymongo Database on that branch
    db.raw_data.insert_many([{"userId": 1}])     # main does not see it
    argon.merge_branch("etl-pipeline-dev", "main")

    with argon.Client("mongodb://127.0.0.1:27018") as client:
        for b in client.branches.list():
            print(b.name, b.parent, b.last_activity)

The proxy is found through the ``uri`` argument, else ``$ARGON_MONGODB_URI``,
else ``mongodb://127.0.0.1:27018``. Every failed call raises an
``ArgonError`` subclass carrying the server's code.
"""

from .addressing import DEFAULT_URI, ENV_URI
from .branch import Branch
from .client import Client
from .defaults import default_client, set_default_client
from .errors import (
    ArgonError,
    BadValue,
    BranchExists,
    BranchHasChildren,
    BranchNotFound,
    CommandNotFound,
    CommandNotSupported,
    DuplicateKey,
    HostUnreachable,
    MergeConflictError,
    MergeNotFound,
    NotAvailableError,
    NotInProject,
    PointOutOfRange,
    ProjectExists,
    ProjectInUse,
    ProjectNotFound,
    ProtectedBranch,
    ProxyUnreachable,
    ReadOnlyBranch,
    StaleMergeError,
    TagExists,
    TagNotFound,
    Unauthorized,
    UndoConflictError,
)
from .functions import (
    archive_branch,
    connect,
    create_branch,
    create_snapshot,
    delete_branch,
    export_collection,
    get_branch_tags,
    list_branches,
    merge_branch,
    tag_branch,
)
from .models import (
    Blame,
    BlameField,
    BranchInfo,
    BranchStats,
    Conflict,
    Deleted,
    Diff,
    DiffCollection,
    DiffSummary,
    DocumentChange,
    FieldChange,
    GcResult,
    Grant,
    LogEntry,
    Merge,
    MergeCollection,
    MergeCounts,
    MergeGranularity,
    MergeIndexChange,
    Project,
    ResetResult,
    Status,
    Tag,
    TimeTravelRange,
    UndoRefusal,
    UndoResult,
    User,
)

__all__ = [
    "DEFAULT_URI",
    "ENV_URI",
    "ArgonError",
    "BadValue",
    "Blame",
    "BlameField",
    "Branch",
    "BranchExists",
    "BranchHasChildren",
    "BranchInfo",
    "BranchNotFound",
    "BranchStats",
    "Client",
    "CommandNotFound",
    "CommandNotSupported",
    "Conflict",
    "Deleted",
    "Diff",
    "DiffCollection",
    "DiffSummary",
    "DocumentChange",
    "DuplicateKey",
    "FieldChange",
    "GcResult",
    "Grant",
    "HostUnreachable",
    "LogEntry",
    "Merge",
    "MergeCollection",
    "MergeConflictError",
    "MergeCounts",
    "MergeGranularity",
    "MergeIndexChange",
    "MergeNotFound",
    "NotAvailableError",
    "NotInProject",
    "PointOutOfRange",
    "Project",
    "ProjectExists",
    "ProjectInUse",
    "ProjectNotFound",
    "ProtectedBranch",
    "ProxyUnreachable",
    "ReadOnlyBranch",
    "ResetResult",
    "StaleMergeError",
    "Status",
    "Tag",
    "TagExists",
    "TagNotFound",
    "TimeTravelRange",
    "Unauthorized",
    "UndoConflictError",
    "UndoRefusal",
    "UndoResult",
    "User",
    "archive_branch",
    "connect",
    "create_branch",
    "create_snapshot",
    "default_client",
    "delete_branch",
    "export_collection",
    "get_branch_tags",
    "list_branches",
    "merge_branch",
    "set_default_client",
    "tag_branch",
]
