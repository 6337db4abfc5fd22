"""The embedded default upstream: SecantusDB run as a child process.

Theory of operation: with no ``--upstream``, Argon starts ``secantusd-py`` (a
MongoDB-compatible server, installed beside Argon but never imported: it runs
as its own process) on a loopback port with its data in ``data_dir``, waits
until it answers ``hello``, and stops it on exit: SIGTERM first, SIGKILL if it
does not stop within a few seconds. Its output goes to ``data_dir/upstream.log``.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from .errors import UpstreamUnavailable
from .upstream import Address, UpstreamPool

log = logging.getLogger("argon.embedded")

_EXECUTABLE = "secantusd-py"


class EmbeddedError(RuntimeError):
    """The embedded upstream could not be started."""


def find_executable(configured: str = "") -> str:
    """Where ``secantusd-py`` is: the setting, then PATH, then beside this Python, then
    the project's own ``.venv-upstream``."""
    if configured:
        if not Path(configured).exists() and not shutil.which(configured):
            raise EmbeddedError(f"embedded_command {configured!r} does not exist")
        return configured
    found = shutil.which(_EXECUTABLE)
    if found:
        return found
    candidates = [
        Path(sys.executable).parent / _EXECUTABLE,
        Path.cwd() / ".venv-upstream" / "bin" / _EXECUTABLE,
        Path(__file__).resolve().parent.parent / ".venv-upstream" / "bin" / _EXECUTABLE,
    ]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    raise EmbeddedError(
        f"cannot find {_EXECUTABLE}: run `make install` (it installs SecantusDB into "
        ".venv-upstream), set ARGON_EMBEDDED_COMMAND, or pass --upstream mongodb://HOST:PORT"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def embedded_upstream(
    data_dir: str | os.PathLike[str],
    *,
    command: str = "",
    port: int = 0,
    start_timeout: float = 60.0,
) -> AsyncIterator[str]:
    """Run SecantusDB for the duration of the block; yields its ``mongodb://`` URI."""
    executable = find_executable(command)
    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    argv = [
        executable,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        str(data / "upstream"),
        "--log-level",
        "WARNING",
    ]
    log.info("starting embedded upstream: %s", " ".join(argv))
    with (data / "upstream.log").open("ab") as out:
        process = await trio.lowlevel.open_process(
            argv,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches Argon, which then stops it in order
        )
    try:
        await _wait_until_ready(process, Address("127.0.0.1", port), start_timeout, data)
        log.info("embedded upstream ready on 127.0.0.1:%d (pid %d)", port, process.pid)
        yield f"mongodb://127.0.0.1:{port}"
    finally:
        with trio.CancelScope(shield=True):
            await _stop(process)


async def _wait_until_ready(
    process: trio.Process, address: Address, timeout: float, data: Path
) -> None:
    probe = UpstreamPool(address, size=1, idle=0, connect_timeout=1.0)
    with trio.move_on_after(timeout):
        while process.poll() is None:
            try:
                async with probe.checkout():
                    return
            except UpstreamUnavailable:
                await trio.sleep(0.2)
        raise EmbeddedError(
            f"embedded upstream exited with status {process.returncode}; "
            f"see {data / 'upstream.log'}"
        )
    raise EmbeddedError(f"embedded upstream did not answer within {timeout}s")


async def _stop(process: trio.Process) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    with trio.move_on_after(10):
        await process.wait()
        log.info("embedded upstream stopped")
        return
    log.warning("embedded upstream did not stop on SIGTERM; killing it")
    process.kill()
    await process.wait()
