"""Every error Argon answers carries mongod's codeName for its code: drivers and
test suites compare codeName, and 'UnknownError' tells them nothing."""

from __future__ import annotations

import pytest

from argon_proxy import branch_streams, branch_views, cursors, index_bounds, reads
from argon_proxy.errors import ArgonError

MONGOD_NAMES = {
    branch_streams.CHANGE_STREAM_FATAL: "ChangeStreamFatalError",
    branch_streams.INVALID_RESUME_TOKEN: "InvalidResumeToken",
    branch_streams.NO_MATCHING_DOCUMENT: "NoMatchingDocument",
    cursors.CURSOR_NOT_FOUND: "CursorNotFound",
    branch_views.COMMAND_NOT_SUPPORTED_ON_VIEW: "CommandNotSupportedOnView",
    reads.OPTION_NOT_SUPPORTED_ON_VIEW: "OptionNotSupportedOnView",
    149: "ViewDepthLimitExceeded",
    1: "InternalError",
    # mongod's numbered assertions
    index_bounds.HINT_REQUIRED: "Location51173",
    index_bounds.NOT_THE_INDEX: "Location51174",
    40413: "Location40413",
}


@pytest.mark.parametrize(("code", "name"), sorted(MONGOD_NAMES.items()))
def test_codes_argon_raises_have_mongods_names(code: int, name: str) -> None:
    assert ArgonError(code, "x").code_name == name
    assert ArgonError(code, "x").to_document()["codeName"] == name
