"""Where the proxy is, and how a connection string names a branch, tag or point in time.

The proxy is found through the ``uri`` argument, else ``ARGON_MONGODB_URI``,
else ``mongodb://127.0.0.1:27018``. A whole connection goes to a branch with
``appName=argon:<branch>``; one database goes to any ref with the database
name ``db@ref``, where ``/`` in a branch name is written ``~`` and ``.`` is
written ``,`` (MongoDB forbids both in database names): ``ml@exp~alice``,
``ml@main@lsn-12``, ``ml@validated``. These rules are the proxy's
(``argon_proxy.naming``); the SDK keeps its own copy so it needs only pymongo.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

ENV_URI = "ARGON_MONGODB_URI"
DEFAULT_URI = "mongodb://127.0.0.1:27018"
APP_PREFIX = "argon:"


def resolve_uri(uri: str | None = None) -> str:
    """``uri`` if given, else ``$ARGON_MONGODB_URI``, else the local default port."""
    return uri or os.environ.get(ENV_URI) or DEFAULT_URI


def app_name(branch: str) -> str:
    """The appName that sends a whole connection to ``branch``."""
    return f"{APP_PREFIX}{branch}"


def split_ref(ref: str) -> tuple[str, str | None]:
    """``main@lsn-12`` -> ``("main", "lsn-12")``; a plain name has no point."""
    name, _, point = ref.partition("@")
    return name, point or None


def db_name(db: str, ref: str) -> str:
    """The database name that reads ``db`` at ``ref`` (a branch, tag or ``name@point``)."""
    name, point = split_ref(ref)
    suffix = name.replace("/", "~").replace(".", ",")
    return f"{db}@{suffix}@{point}" if point else f"{db}@{suffix}"


def with_options(uri: str, *, database: str | None = None, app: str | None = None) -> str:
    """``uri`` with its default database and/or appName replaced."""
    parts = urlsplit(uri)
    path = parts.path
    if database is not None:
        # '+' in an ISO time must be escaped: drivers decode the path as a form value.
        path = "/" + quote(database, safe="@~,-_:")
    query = parts.query
    if app is not None:
        pairs = parse_qsl(query, keep_blank_values=True)
        kept = [(k, v) for k, v in pairs if k.lower() != "appname"]
        kept.append(("appName", app))
        query = "&".join(f"{k}={quote(v, safe=':/~,.-_@')}" for k, v in kept)
    if not path and query:
        path = "/"  # a URI with options needs the '/' before '?'
    return urlunsplit((parts.scheme, parts.netloc, path, query, parts.fragment))


def redact(uri: str) -> str:
    """``uri`` without its password, for messages."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit((parts.scheme, f"{user}:***@{hosts}", parts.path, parts.query, ""))
