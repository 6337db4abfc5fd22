"""Settings for the proxy.

Theory of operation: one frozen ``Settings`` value is built at start-up and
passed down explicitly; nothing reads the environment later. Sources are
layered, each overriding the one before it:

1. built-in defaults (the dataclass fields below),
2. the TOML file (``config/argon.toml`` in the working directory, or the file
   named by ``--config`` / ``ARGON_CONFIG``), table ``[argon]``,
3. ``ARGON_<FIELD>`` environment variables (``ARGON_PORT=27019``),
4. command-line flags.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

DEFAULT_CONFIG_FILE = Path("config/argon.toml")


class ConfigError(ValueError):
    """A setting has a value Argon cannot use."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of ``argon serve``; see ``config/argon.toml`` for documentation."""

    host: str = "127.0.0.1"
    port: int = 27018
    upstream: str = ""  # empty: start the embedded SecantusDB
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9216  # 0 disables the HTTP endpoint
    console_host: str = "127.0.0.1"
    console_port: int = 9217  # the web console and REST API; 0 disables them
    data_dir: str = "data"
    embedded_command: str = ""  # path to secantusd-py; empty: look it up
    embedded_port: int = 0  # 0: pick a free port
    embedded_start_timeout: float = 60.0
    max_connections: int = 1000
    auth: bool = False  # clients must authenticate as one of Argon's users
    # without auth, listening beyond loopback lets anyone who reaches the port in
    allow_unauthenticated: bool = False
    tls_cert_file: str = ""  # PEM certificate (and key): clients must connect with TLS
    tls_key_file: str = ""  # PEM key, when not in tls_cert_file
    tls_ca_file: str = ""  # CAs client certificates are checked against
    tls_require_client_cert: bool = False
    pool_size: int = 100
    pool_idle: int = 32
    connect_timeout: float = 3.0
    frame_timeout: float = 30.0  # a message must complete within this of its first byte
    idle_timeout: float = 0.0  # close clients idle between requests this long; 0: never
    max_partial_bytes: int = 128 << 20  # incomplete messages buffered, all clients together
    upstream_timeout: float = 60.0  # an upstream reply must come within this (+ maxTimeMS)
    drain_timeout: float = 10.0
    compressors: tuple[str, ...] = ("zstd", "zlib", "snappy")
    # HOST[:PORT] clients reach Argon at; set, Argon answers ``hello`` as the primary
    # of a one-member replica set at that address instead of as a router
    advertise: str = ""
    snapshots_kept: int = 64  # time-travel snapshots kept (least recently read go first)
    snapshot_grace: float = 30.0  # seconds a read snapshot is never removed
    bundle_at: int = 4  # children a branch has before its writes freeze into bundles; 0: never
    log_level: str = "INFO"
    log_format: str = "text"  # or "json"

    def upstream_display(self) -> str:
        return self.upstream or "embedded"

    def member_address(self) -> str:
        """``advertise`` as a replica-set member's address (``host:port``, the listening
        port if it names none); empty when Argon presents itself as a router.
        Raises ``ValueError`` on an address drivers could not use."""
        if not self.advertise:
            return ""
        from pymongo.uri_parser import parse_host  # drivers' own reading of HOST[:PORT]

        host, port = parse_host(self.advertise, self.port)
        if not host or port is None or not 0 < port <= 65535:
            raise ValueError("not a HOST[:PORT] address drivers can connect to")
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_ENV_PREFIX = "ARGON_"


def _coerce(name: str, raw: Any, target: Any) -> Any:
    if isinstance(target, bool):
        if isinstance(raw, bool):
            return raw
        return str(raw).strip().lower() in {"1", "true", "yes", "on"}
    try:
        if isinstance(target, int):
            return int(raw)
        if isinstance(target, float):
            return float(raw)
        if isinstance(target, tuple):
            items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
            return tuple(str(i).strip() for i in items if str(i).strip())
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r}: cannot use {raw!r} ({exc})") from None
    return str(raw)


def _apply(base: Settings, values: Mapping[str, Any], source: str) -> Settings:
    known = {f.name for f in fields(Settings)}
    changes: dict[str, Any] = {}
    for key, raw in values.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError(f"{source}: unknown setting {key!r}")
        if raw is None:
            continue
        changes[name] = _coerce(name, raw, getattr(base, name))
    return dataclasses.replace(base, **changes)


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from defaults, TOML file, environment and flags, in that order."""
    env = os.environ if env is None else env
    settings = Settings()
    path = Path(config_file or env.get("ARGON_CONFIG") or DEFAULT_CONFIG_FILE)
    if path.exists():
        with path.open("rb") as fh:
            try:
                doc = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: {exc}") from None
        settings = _apply(settings, doc.get("argon", {}), str(path))
    elif config_file:
        raise ConfigError(f"config file {path} does not exist")
    # Other ARGON_* variables (ARGON_MONGODB_URI is the clients') are not ours to refuse.
    known = {f.name for f in fields(Settings)}
    from_env = {
        key[len(_ENV_PREFIX) :].lower(): value
        for key, value in env.items()
        if key.startswith(_ENV_PREFIX) and key[len(_ENV_PREFIX) :].lower() in known
    }
    settings = _apply(settings, from_env, "environment")
    return _apply(settings, overrides or {}, "command line")
