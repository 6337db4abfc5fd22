"""Where the upstream MongoDB is and how to reach it, from its connection string.

Theory of operation: the upstream is named by a standard MongoDB connection
string, read whole by pymongo's own parser (``mongodb://`` with a seed list,
or ``mongodb+srv://``, whose SRV and TXT records it looks up with dnspython,
as every driver does). What Argon acts on:

* the seed list (``seeds``); with more than one host, or a ``replicaSet``,
  the pool looks for the writable primary among them (``upstream.py``);
* credentials (``authSource``, ``authMechanism``; SCRAM-SHA-256 or SHA-1 by
  negotiation when no mechanism is named), which every pooled connection
  uses: Argon is one upstream client, whatever clients it serves;
* TLS (``tls``/``ssl``, ``tlsCAFile``, ``tlsCertificateKeyFile`` and its
  password, ``tlsAllowInvalidHostnames``, ``tlsAllowInvalidCertificates``,
  ``tlsInsecure``), as a standard ``ssl.SSLContext``;
* ``connectTimeoutMS``, which bounds opening a connection (TLS handshake and
  authentication included); without it Argon's ``connect_timeout`` applies.

Options Argon cannot honour as a proxy (read preferences send reads to
secondaries, which Argon's writes could not follow) are refused, as is any
option pymongo does not know, so a typo fails at start-up, not later.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from typing import Any

from pymongo.auth_shared import MongoCredential
from pymongo.client_options import _parse_credentials
from pymongo.common import _CaseInsensitiveDictionary
from pymongo.errors import ConfigurationError, InvalidURI
from pymongo.uri_parser import parse_uri

DEFAULT_PORT = 27017

# Options that would change what a read or write means behind Argon's back.
_REFUSED = {
    "readpreference": "Argon reads from the primary: its branches merge what it wrote there",
    "readpreferencetags": "Argon reads from the primary: its branches merge what it wrote there",
    "maxstalenessseconds": "Argon reads from the primary: its branches merge what it wrote there",
    "loadbalanced": "Argon talks to mongod or mongos directly, not through a load balancer",
}


@dataclass(frozen=True, slots=True)
class Address:
    """A host and port of the upstream."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class UpstreamTarget:
    """The upstream deployment and how Argon connects to it."""

    seeds: tuple[Address, ...]
    credential: MongoCredential | None = None
    tls: ssl.SSLContext | None = None
    replica_set: str | None = None
    direct: bool = False  # directConnection=true: use the one seed, whatever it is
    connect_timeout: float | None = None  # from connectTimeoutMS, in seconds

    @classmethod
    def single(cls, address: Address) -> UpstreamTarget:
        """One host, no credentials, no TLS (the embedded upstream, tests)."""
        return cls((address,), direct=True)

    @property
    def discovers(self) -> bool:
        """Whether the primary must be looked for among the seeds and their peers."""
        return not self.direct and (len(self.seeds) > 1 or self.replica_set is not None)

    def __str__(self) -> str:
        """The hosts, for logs and status (never the credentials)."""
        return ",".join(str(a) for a in self.seeds)


def parse_target(uri: str) -> UpstreamTarget:
    """Read a connection string; ``ValueError`` says what is wrong with it.

    A ``mongodb+srv://`` string is resolved here (DNS lookups that block):
    call it from a worker thread inside the event loop.
    """
    try:
        parsed = parse_uri(uri, validate=True, warn=False)
        options: Any = _CaseInsensitiveDictionary(parsed["options"])
        credential = _parse_credentials(
            parsed["username"], parsed["password"], parsed["database"], options
        )
    except (ConfigurationError, InvalidURI, OSError) as exc:
        raise ValueError(str(exc)) from None
    for name, why in _REFUSED.items():
        if name in options and not (name == "readpreference" and options[name] == "primary"):
            raise ValueError(f"option {name!r} is not supported: {why}")
    if credential is not None and credential.mechanism not in _MECHANISMS:
        raise ValueError(
            f"authMechanism {credential.mechanism} is not supported by Argon's upstream "
            f"connections; use one of {', '.join(sorted(_MECHANISMS))}"
        )
    seeds = tuple(Address(host, port or DEFAULT_PORT) for host, port in parsed["nodelist"])
    timeout = options.get("connecttimeoutms")  # pymongo gives it in seconds
    return UpstreamTarget(
        seeds=seeds,
        credential=credential,
        tls=_tls_context(options) if options.get("tls") else None,
        replica_set=options.get("replicaset"),
        direct=bool(options.get("directconnection", False)),
        connect_timeout=float(timeout) if timeout else None,
    )


_MECHANISMS = frozenset({"DEFAULT", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", "MONGODB-X509"})


def _tls_context(options: Any) -> ssl.SSLContext:
    """A client-side TLS context as the options describe it."""
    try:
        context = ssl.create_default_context(cafile=options.get("tlscafile"))
        certificate = options.get("tlscertificatekeyfile")
        if certificate:
            password = options.get("tlscertificatekeyfilepassword")
            context.load_cert_chain(certificate, password=password)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"TLS set-up failed: {exc}") from None
    insecure = bool(options.get("tlsinsecure", False))
    if insecure or options.get("tlsallowinvalidhostnames", False):
        context.check_hostname = False
    if insecure or options.get("tlsallowinvalidcertificates", False):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


_USERINFO = re.compile(r"^(mongodb(?:\+srv)?://)([^@/]*)@")


def redacted(uri: str) -> str:
    """The URI with any password masked, for messages and logs."""

    def mask(match: re.Match[str]) -> str:
        user, colon, _ = match.group(2).partition(":")
        return f"{match.group(1)}{user}{':***' if colon else ''}@"

    return _USERINFO.sub(mask, uri)
