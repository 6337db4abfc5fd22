"""The web console and its REST API, served by Hypercorn in Argon's Trio loop.

Theory of operation: every API request becomes the command a client would
send (``{"argon": <action>, ...}`` or a ``find``) and runs through the same
``Engine.route`` as the wire protocol's, as the user who logged in: the same
checks, answers, error codes and names. Replies are MongoDB Extended JSON
(relaxed), as mongosh prints them; request bodies are read the same way, so
an ``_id`` that is an ObjectId travels as ``{"$oid": ...}``. With ``auth`` on,
each request carries HTTP Basic credentials of one of Argon's users (the
console asks for them once and keeps them for the tab). The console itself
is static files shipped in the package; it uses nothing but this API.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import bson
from bson import json_util
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import errors
from ..calls import Forward, Request
from ..engine import Engine
from ..errors import ArgonError
from ..scram import matches
from . import openapi
from .endpoints import ENDPOINTS, PREFIX, Endpoint, Param

APP_NAME = "argon-console"
JSON = json_util.JSONOptions(json_mode=json_util.JSONMode.RELAXED, tz_aware=True)
STATIC = resources.files(__package__) / "static"
_DOCUMENTS_LIMIT = 1000  # documents one time-travel page may ask for

_NOT_FOUND = {
    errors.BRANCH_NOT_FOUND,
    errors.MERGE_NOT_FOUND,
    errors.TAG_NOT_FOUND,
    errors.PROJECT_NOT_FOUND,
    errors.NAMESPACE_NOT_FOUND,
    errors.USER_NOT_FOUND,
}
_CONFLICT = {
    errors.BRANCH_EXISTS,
    errors.BRANCH_HAS_CHILDREN,
    errors.TAG_EXISTS,
    errors.PROJECT_EXISTS,
    errors.PROJECT_IN_USE,
    errors.MERGE_CONFLICT,
    errors.STALE_MERGE,
    errors.UNDO_CONFLICT,
    errors.PROTECTED_BRANCH,
    errors.READ_ONLY_BRANCH,
    errors.WRITE_CONFLICT,
    errors.NAMESPACE_EXISTS,
    11000,
}


def status_of(code: int) -> int:
    """The HTTP status for a MongoDB-style error code."""
    if code in _NOT_FOUND:
        return 404
    if code in _CONFLICT:
        return 409
    if code == errors.UNAUTHORIZED:
        return 403
    if code == errors.AUTHENTICATION_FAILED:
        return 401
    if code in (errors.COMMAND_NOT_SUPPORTED, errors.ILLEGAL_OPERATION):
        return 422
    if code in (errors.HOST_UNREACHABLE, errors.NETWORK_TIMEOUT):
        return 503
    return 400


def as_json(doc: Any, status: int = 200) -> Response:
    return Response(json_util.dumps(doc, json_options=JSON), status, media_type="application/json")


def error_response(error: ArgonError, request: HttpRequest) -> Response:
    """``error`` as mongod words it, with its HTTP status. A login is asked for
    the HTTP way, except of the console's own page (``X-Requested-With``), which
    asks with its own form rather than the browser's dialog."""
    response = as_json(error.to_document(), status_of(error.code))
    if response.status_code == 401 and "x-requested-with" not in request.headers:
        response.headers["WWW-Authenticate"] = 'Basic realm="argon", charset="UTF-8"'
    return response


class Console:
    """The ASGI application: the API over ``engine``, and the console's files."""

    def __init__(self, engine: Engine, *, auth: bool) -> None:
        self.engine = engine
        self.auth = auth
        self._spec = openapi.document()
        routes: list[Route | Mount] = [
            Route("/", self._index),
            Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
            Route(f"{PREFIX}/openapi.json", self._openapi),
            Route(f"{PREFIX}/documents/{{db}}/{{collection}}", self._documents),
            Route(f"{PREFIX}/rates", self._rates),
            Route(f"{PREFIX}/whoami", self._whoami),
        ]
        for endpoint in ENDPOINTS:
            routes.append(
                Route(PREFIX + endpoint.path, self._action(endpoint), methods=[endpoint.method])
            )
        self.app = Starlette(routes=routes)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    # -- pages -------------------------------------------------------------------

    async def _index(self, _request: HttpRequest) -> Response:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    async def _openapi(self, _request: HttpRequest) -> Response:
        return as_json(self._spec)

    # -- API ---------------------------------------------------------------------

    def _action(self, endpoint: Endpoint) -> Callable[[HttpRequest], Awaitable[Response]]:
        async def handle(request: HttpRequest) -> Response:
            try:
                user = await self._user(request)
                fields = await _fields(endpoint, request)
                reply = await self._route({"argon": endpoint.action, **fields}, "admin", user)
            except ArgonError as exc:
                return error_response(exc, request)
            return as_json(reply)

        return handle

    async def _documents(self, request: HttpRequest) -> Response:
        """A collection's documents on a ref (a branch, a tag, ``branch@lsn-N`` or
        ``branch@<time>``): the time-travel view."""
        params = request.query_params
        try:
            user = await self._user(request)
            ref = params.get("ref") or "main"
            flt = json_util.loads(params.get("filter") or "{}", json_options=JSON)
            if not isinstance(flt, dict):
                raise ArgonError(errors.BAD_VALUE, "documents: 'filter' must be a JSON object")
            limit = _integer("limit", params.get("limit") or "100")
            if not 0 < limit <= _DOCUMENTS_LIMIT:
                raise ArgonError(
                    errors.BAD_VALUE, f"documents: 'limit' must be 1 to {_DOCUMENTS_LIMIT}"
                )
            skip = _integer("skip", params.get("skip") or "0")
            find = {
                "find": request.path_params["collection"],
                "filter": flt,
                "sort": {"_id": 1},
                "skip": skip,
                "limit": limit,
                "singleBatch": True,
                "batchSize": limit,
            }
            db = (
                f"{request.path_params['db']}@{ref}" if ref != "main" else request.path_params["db"]
            )
            reply = await self._route(find, db, user)
        except ArgonError as exc:
            return error_response(exc, request)
        return as_json({"ref": ref, "documents": reply["cursor"]["firstBatch"]})

    async def _rates(self, request: HttpRequest) -> Response:
        """Requests handled so far, per branch (``argon_requests_total``): the
        console turns two readings into rates."""
        try:
            await self._user(request)
        except ArgonError as exc:
            return error_response(exc, request)
        totals: dict[str, float] = {}
        for metric in REGISTRY.collect():
            if metric.name != "argon_requests":
                continue
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    branch = sample.labels.get("branch", "")
                    totals[branch] = totals.get(branch, 0.0) + sample.value
        return as_json({"at": time.time(), "requests": totals})

    async def _whoami(self, request: HttpRequest) -> Response:
        try:
            user = await self._user(request)
        except ArgonError as exc:
            return error_response(exc, request)
        return as_json({"user": user, "auth": self.auth})

    async def _route(self, command: dict[str, Any], db: str, user: str | None) -> dict[str, Any]:
        """``command`` through the engine as a client's, as ``user``."""
        request = Request(
            {**command, "$db": db}, APP_NAME, 0, user=user, checked=self.auth and user is not None
        )
        result = await self.engine.route(request)
        if isinstance(result, Forward):
            forwarded = dict(result.command)
            target = forwarded.pop("$db")
            try:
                return await self.engine.db.command(target, forwarded)
            finally:
                if result.after is not None:
                    await result.after()
        if not result.get("ok", 1):
            raise ArgonError(int(result.get("code", 8)), str(result.get("errmsg", "failed")))
        return result

    async def _user(self, request: HttpRequest) -> str | None:
        """Who the request's Basic credentials name, checked; None without auth."""
        if not self.auth:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise ArgonError(errors.AUTHENTICATION_FAILED, "log in: this proxy runs with auth on")
        try:
            name, sep, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            name, sep, password = "", "", ""
        if not sep or not await self._password_matches(name, password):
            raise ArgonError(errors.AUTHENTICATION_FAILED, f"authentication failed for {name!r}")
        return name

    async def _password_matches(self, name: str, password: str) -> bool:
        users = self.engine.users
        for mechanism in await users.mechanisms(name):
            credential = await users.credential(name, mechanism)
            if credential is not None:
                return matches(credential, name, password)
        return False


async def _fields(endpoint: Endpoint, request: HttpRequest) -> dict[str, Any]:
    """The action's fields: the body's, the query's, the path's, then the fixed ones."""
    fields: dict[str, Any] = {}
    if endpoint.method in ("POST", "PUT"):
        raw = await request.body()
        if raw.strip():
            try:
                body = json_util.loads(raw, json_options=JSON)
            except (ValueError, bson.errors.InvalidBSON) as exc:
                raise ArgonError(errors.BAD_VALUE, f"the request body is not JSON: {exc}") from None
            if not isinstance(body, dict):
                raise ArgonError(errors.BAD_VALUE, "the request body must be a JSON object")
            body.pop("argon", None)
            fields.update(body)
    for param in endpoint.query:
        value = request.query_params.get(param.name)
        if value is not None:
            fields[param.target] = _typed(param, value)
    for name, target in endpoint.path_fields.items():
        fields[target] = request.path_params[name]
    fields.update(endpoint.fixed)
    return fields


def _typed(param: Param, value: str) -> Any:
    if param.kind == "integer":
        return _integer(param.name, value)
    if param.kind == "json":
        try:
            return json_util.loads(value, json_options=JSON)
        except ValueError:
            raise ArgonError(
                errors.BAD_VALUE, f"{param.name!r} must be JSON (a string in quotes)"
            ) from None
    if param.kind == "boolean":
        if value not in ("true", "false"):
            raise ArgonError(errors.BAD_VALUE, f"{param.name!r} must be true or false")
        return value == "true"
    return value


def _integer(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ArgonError(errors.BAD_VALUE, f"{name!r} must be an integer, not {value!r}") from None
