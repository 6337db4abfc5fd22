"""The REST API with auth on: a login per request, and each user's rights."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from argon_proxy.errors import AUTHENTICATION_FAILED, UNAUTHORIZED

from ..processes import Process
from .http import call
from .stacks import ANA, ROOT, guarded_stack


@pytest.fixture(scope="module")
def proxy() -> Iterator[Process]:
    with guarded_stack() as proxy:
        yield proxy


def test_no_login_or_a_wrong_one_is_refused(proxy: Process) -> None:
    for login in (None, ("root", "wrong"), ("nobody", "x")):
        answer = call(proxy, "GET", "/api/v1/branches", login=login)
        assert answer.status == 401, answer.body
        assert answer.body["code"] == AUTHENTICATION_FAILED
        assert answer.headers["www-authenticate"].startswith("Basic")
    assert call(proxy, "GET", "/api/v1/rates").status == 401
    # The document describing the API is public; the console's page and files too.
    assert call(proxy, "GET", "/api/v1/openapi.json").status == 200


def test_an_administrator_does_everything(proxy: Process) -> None:
    assert call(proxy, "GET", "/api/v1/whoami", login=ROOT).body == {"user": "root", "auth": True}
    made = call(proxy, "POST", "/api/v1/branches", {"name": "by-root"}, login=ROOT)
    assert made.status == 200, made.body
    assert call(proxy, "DELETE", "/api/v1/branches/by-root", login=ROOT).status == 200


def test_a_user_sees_and_does_only_what_grants_allow(proxy: Process) -> None:
    listed = call(proxy, "GET", "/api/v1/branches", login=ANA)
    assert listed.status == 200
    assert [b["name"] for b in listed.body["branches"]] == ["exp-a"]
    docs = call(proxy, "GET", "/api/v1/documents/shop/items?ref=exp-a", login=ANA)
    assert docs.status == 200 and docs.body["documents"] == [{"_id": 1}]
    for method, path, body in (
        ("GET", "/api/v1/documents/shop/items?ref=other", None),
        ("POST", "/api/v1/branches", {"name": "by-ana", "from": "exp-a"}),
        ("DELETE", "/api/v1/branches/exp-a", None),
        ("GET", "/api/v1/branches/other/log", None),
    ):
        answer = call(proxy, method, path, body, login=ANA)
        assert answer.status == 403, (path, answer.body)
        assert answer.body["code"] == UNAUTHORIZED and "ana" in answer.body["errmsg"]


def test_the_consoles_own_requests_get_no_browser_login_dialog(proxy: Process) -> None:
    # A challenge would make the browser ask with its own dialog instead of the page.
    answer = call(proxy, "GET", "/api/v1/whoami", headers={"X-Requested-With": "argon-console"})
    assert answer.status == 401 and "www-authenticate" not in answer.headers
