"""Argon's own error codes and their names: one table for the proxy, which answers
with them, and the SDK, which raises one exception class per code.

Codes from 2001 up are Argon's; the proxy also answers some of mongod's codes
(``2`` BadValue, ``13`` Unauthorized, ...) with mongod's names. A test checks
that every code here has its SDK class and that the proxy names it so.
"""

from __future__ import annotations

BRANCH_NOT_FOUND = 2001
BRANCH_EXISTS = 2002
BRANCH_HAS_CHILDREN = 2003
READ_ONLY_BRANCH = 2004
POINT_OUT_OF_RANGE = 2005
MERGE_CONFLICT = 2010
STALE_MERGE = 2011
MERGE_NOT_FOUND = 2012
TAG_NOT_FOUND = 2013
TAG_EXISTS = 2014
UNDO_CONFLICT = 2015
PROJECT_NOT_FOUND = 2016
PROJECT_EXISTS = 2017
NOT_IN_PROJECT = 2018
PROJECT_IN_USE = 2019
PROTECTED_BRANCH = 2020

NAMES: dict[int, str] = {
    BRANCH_NOT_FOUND: "BranchNotFound",
    BRANCH_EXISTS: "BranchExists",
    BRANCH_HAS_CHILDREN: "BranchHasChildren",
    READ_ONLY_BRANCH: "ReadOnlyBranch",
    POINT_OUT_OF_RANGE: "PointOutOfRange",
    MERGE_CONFLICT: "MergeConflict",
    STALE_MERGE: "StaleMerge",
    MERGE_NOT_FOUND: "MergeNotFound",
    TAG_NOT_FOUND: "TagNotFound",
    TAG_EXISTS: "TagExists",
    UNDO_CONFLICT: "UndoConflict",
    PROJECT_NOT_FOUND: "ProjectNotFound",
    PROJECT_EXISTS: "ProjectExists",
    NOT_IN_PROJECT: "NotInProject",
    PROJECT_IN_USE: "ProjectInUse",
    PROTECTED_BRANCH: "ProtectedBranch",
}
