"""`argon serve` refuses what it cannot run with: one line on stderr, the documented exit code.

Exit codes (README, "Exit codes of `argon serve`"): 0 stopped cleanly, 2 bad
usage, 3 bad configuration or address in use, 4 the embedded upstream could not
start or the upstream refused Argon (credentials, TLS). Every case runs the real
command line in a fresh process.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from argon_proxy.app import check_settings
from argon_proxy.config import load_settings

from ..processes import ROOT, free_port

_UNREACHABLE = "mongodb://127.0.0.1:1"  # port 1: nothing listens there on loopback


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARGON_")}
    env["PYTHONPATH"] = str(ROOT)
    env["ARGON_CONSOLE_PORT"] = "0"  # the default port may be taken by another proxy
    return {**env, **extra}


def _serve(
    cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `argon serve ARGS` in ``cwd`` (no config/argon.toml there) until it exits."""
    return subprocess.run(
        [sys.executable, "-m", "argon_proxy", "serve", *args],
        cwd=cwd,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something else is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _assert_one_line(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("argon serve: "), lines[0]
    for word in words:
        assert word in lines[0], lines[0]


def test_proxy_port_in_use(tmp_path: Path, taken_port: int) -> None:
    result = _serve(
        tmp_path, "--port", str(taken_port), "--metrics-port", "0", "--upstream", _UNREACHABLE
    )
    _assert_one_line(result, 3, f"127.0.0.1:{taken_port}", "(proxy)", "in use", "--port")


def test_metrics_port_in_use_names_the_metrics_port(tmp_path: Path, taken_port: int) -> None:
    result = _serve(
        tmp_path, "--port", "0", "--metrics-port", str(taken_port), "--upstream", _UNREACHABLE
    )
    _assert_one_line(result, 3, f"127.0.0.1:{taken_port}", "(metrics)", "--metrics-port")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--log-level", "LOUD"], ["log_level", "LOUD"]),
        (["--log-format", "xml"], ["log_format", "xml"]),
        (["--upstream", "http://db.example:27017"], ["upstream", "mongodb://"]),
        (["--upstream", "mongodb://"], ["upstream", "hostname"]),
        (["--upstream", "mongodb://db:port"], ["upstream", "db:port"]),
        (["--port", "70000"], ["port", "70000"]),
        (["--pool-size", "0"], ["pool_size"]),
        (["--config", "missing.toml"], ["missing.toml", "does not exist"]),
        (["--advertise", "argon.example:port"], ["advertise", "argon.example:port"]),
        (["--advertise", "argon.example:0"], ["advertise", "argon.example:0"]),
        (["--host", "0.0.0.0"], ["beyond loopback", "auth = true", "allow_unauthenticated"]),
        (["--host", "::"], ["beyond loopback"]),
    ],
)
def test_bad_settings_exit_3(tmp_path: Path, args: list[str], words: list[str]) -> None:
    result = _serve(tmp_path, "--port", "0", "--metrics-port", "0", *args)
    _assert_one_line(result, 3, "configuration error", *words)


def test_listening_beyond_loopback_with_auth_or_consent(tmp_path: Path) -> None:
    for extra in ({"ARGON_AUTH": "true"}, {"ARGON_ALLOW_UNAUTHENTICATED": "true"}):
        overrides = {"host": "0.0.0.0", "data_dir": str(tmp_path)}
        check_settings(load_settings(env=_env(**extra), overrides=overrides))  # no ConfigError


def test_unwritable_data_dir_exit_3(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    data_dir = str(blocker / "d")
    result = _serve(tmp_path, "--port", "0", "--metrics-port", "0", "--data-dir", data_dir)
    _assert_one_line(result, 3, "data_dir", str(blocker / "d"))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[argon\nport = 1\n", ["argon.toml"]),
        ("[argon]\nbogus_setting = 1\n", ["unknown setting", "bogus_setting"]),
        ('[argon]\nport = "high"\n', ["port", "high"]),
    ],
)
def test_bad_config_file_exit_3(tmp_path: Path, text: str, words: list[str]) -> None:
    (tmp_path / "argon.toml").write_text(text)
    result = _serve(tmp_path, "--config", "argon.toml", "--port", "0", "--metrics-port", "0")
    _assert_one_line(result, 3, "configuration error", *words)


def test_missing_embedded_upstream_exit_4(tmp_path: Path) -> None:
    env = _env(ARGON_EMBEDDED_COMMAND=str(tmp_path / "no-such-secantusd"))
    result = _serve(tmp_path, "--port", "0", "--metrics-port", "0", "--data-dir", "d", env=env)
    _assert_one_line(result, 4, "embedded upstream", "no-such-secantusd")


def test_bad_usage_exit_2(tmp_path: Path) -> None:
    result = _serve(tmp_path, "--port", "not-a-number")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_upstream_waits_and_stops_on_sigterm(tmp_path: Path) -> None:
    """An external upstream that is not up yet is waited for (it may start after the
    proxy), with a warning naming it and no traceback; SIGTERM still stops it cleanly."""
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "argon_proxy", "serve", "--port", str(free_port())),
            *("--metrics-port", "0", "--upstream", _UNREACHABLE),
        ],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # blocks until the first retry is announced
        assert "cannot reach the upstream" in first and "127.0.0.1:1" in first, first
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, first + rest
    assert "Traceback" not in first + rest


def test_missing_secantusd_says_how_to_install_it(tmp_path: Path) -> None:
    """As after `pip install argon-mongo` (no checkout, no embedded extra): the error
    names the pip extra and --upstream first, not only a Makefile the user does not have."""
    installed = tmp_path / "site"
    for package in ("wire", "argon_proxy", "argon"):
        shutil.copytree(ROOT / package, installed / package)
    env = _env(PYTHONPATH=str(installed), PATH=os.defpath)
    result = _serve(tmp_path, "--port", "0", "--metrics-port", "0", "--data-dir", "d", env=env)
    _assert_one_line(result, 4, "pip install 'argon-mongo[embedded]'", "--upstream")


def test_console_port_in_use_names_the_console_port(tmp_path: Path, taken_port: int) -> None:
    result = _serve(
        tmp_path,
        *("--port", "0", "--metrics-port", "0", "--console-port", str(taken_port)),
        *("--upstream", _UNREACHABLE),
    )
    _assert_one_line(result, 3, f"127.0.0.1:{taken_port}", "(console)", "--console-port")
