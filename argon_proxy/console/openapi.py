"""The OpenAPI 3.1 document of the REST API, built from the endpoint table."""

from __future__ import annotations

from typing import Any

from .. import __version__
from .endpoints import ENDPOINTS, PREFIX, Endpoint, Param

_ERROR = {
    "type": "object",
    "description": "A MongoDB-style error, as the wire protocol answers it",
    "properties": {
        "ok": {"type": "number", "const": 0},
        "code": {"type": "integer"},
        "codeName": {"type": "string"},
        "errmsg": {"type": "string"},
    },
    "required": ["ok", "code", "codeName", "errmsg"],
}
_REPLY = {
    "type": "object",
    "description": "The admin action's reply (MongoDB Extended JSON, relaxed)",
    "properties": {"ok": {"type": "number"}},
    "additionalProperties": True,
}
_SCHEMAS = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "json": {"type": "string", "description": "Extended JSON"},
}
_FAILURES = {
    "400": "Bad value",
    "401": "Login needed (auth on)",
    "403": "Not allowed for this user",
    "404": "No such branch, tag or merge",
    "409": "Conflicts with the current state",
    "422": "Not supported here",
}


def document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        paths.setdefault(PREFIX + endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint)
    paths[f"{PREFIX}/documents/{{db}}/{{collection}}"] = {"get": _documents()}
    paths[f"{PREFIX}/rates"] = {
        "get": _plain("rates", "Requests handled so far per branch (poll twice for a rate)")
    }
    paths[f"{PREFIX}/whoami"] = {"get": _plain("whoami", "Who the credentials name")}
    paths[f"{PREFIX}/openapi.json"] = {"get": _plain("openapi", "This document", secured=False)}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Argon",
            "version": __version__,
            "description": "Branches, history, diffs, merges and time travel of the MongoDB "
            "data behind this proxy. Each endpoint runs one `argon` admin action.",
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR, "Reply": _REPLY},
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
        },
        "security": [{"basic": []}, {}],
    }


def _responses() -> dict[str, Any]:
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {
        "200": {
            "description": "The action's reply",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Reply"}}},
        },
        **{status: {"description": text, "content": error} for status, text in _FAILURES.items()},
    }


def _parameter(param: Param) -> dict[str, Any]:
    return {
        "name": param.name,
        "in": "query",
        "required": False,
        "description": param.description,
        "schema": _SCHEMAS[param.kind],
    }


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "description": f'Runs `{{argon: "{endpoint.action}"}}`.',
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in endpoint.path_fields
        ]
        + [_parameter(p) for p in endpoint.query],
        "responses": _responses(),
    }
    if endpoint.method in ("POST", "PUT"):
        op["requestBody"] = {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {name: {} for name in endpoint.body},
                        "additionalProperties": True,
                    }
                }
            },
        }
    return op


def _plain(name: str, summary: str, *, secured: bool = True) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": name, "summary": summary, "responses": _responses()}
    if not secured:
        op["security"] = [{}]
    return op


def _documents() -> dict[str, Any]:
    return {
        "operationId": "documents",
        "summary": "A collection's documents on a ref: a branch, a tag, branch@lsn-N, "
        "branch@<ISO time> (time travel)",
        "parameters": [
            {"name": "db", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "collection", "in": "path", "required": True, "schema": {"type": "string"}},
            _parameter(Param("ref", description="Where to read; main if left out")),
            _parameter(Param("filter", "json", "A query filter (Extended JSON object)")),
            _parameter(Param("limit", "integer", "1 to 1000 documents (100)")),
            _parameter(Param("skip", "integer", "Documents to skip, in _id order")),
        ],
        "responses": _responses(),
    }
