"""config/argon.toml documents every setting, with the built-in default."""

from __future__ import annotations

import tomllib
from dataclasses import asdict

from argon_proxy.config import Settings, load_settings

from ..processes import ROOT


def test_the_shipped_file_lists_every_setting_at_its_default() -> None:
    path = ROOT / "config" / "argon.toml"
    documented = tomllib.loads(path.read_text())["argon"]
    defaults = asdict(Settings())
    assert set(documented) <= set(defaults)
    missing = set(defaults) - set(documented) - {"embedded_command"}  # commented out
    assert not missing, f"settings missing from {path}: {sorted(missing)}"
    assert load_settings(path, env={}) == Settings()


def test_network_bounds_come_from_the_environment() -> None:
    env = {
        "ARGON_IDLE_TIMEOUT": "90",
        "ARGON_UPSTREAM_TIMEOUT": "5",
        "ARGON_MAX_PARTIAL_BYTES": "1000000",
    }
    settings = load_settings(ROOT / "config" / "argon.toml", env=env)
    assert settings.idle_timeout == 90.0
    assert settings.upstream_timeout == 5.0
    assert settings.max_partial_bytes == 1_000_000
