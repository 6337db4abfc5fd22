"""The embedded default upstream: SecantusDB run as a child process.

Theory of operation: with no ``--upstream``, Argon starts ``secantusd-py`` (a
MongoDB-compatible server, installed beside Argon but never imported: it runs
as its own process) on a loopback port with its data in ``data_dir``, waits
until it answers ``hello``, and stops it on exit: SIGTERM first, SIGKILL if it
does not stop within a few seconds. Its output goes to ``data_dir/upstream.log``.

The child never outlives Argon, even when Argon is killed with SIGKILL:

- On Linux the child is started through a tiny launcher that asks the kernel
  for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``) and then execs
  SecantusDB. The death signal fires when the *thread* that forked the child
  ends, so the child is forked from the thread that runs Argon's event loop,
  never from a worker thread (Trio's ``open_process`` forks in one).
- ``data_dir/upstream.pid`` records the child and its Argon. A new Argon that
  finds the file checks, through ``/proc``, that the recorded process is still
  a SecantusDB serving this data directory and that its Argon is gone, and only
  then stops it (waiting for it to release the data) before starting its own.
  If the recorded Argon is still running, the start is refused: two servers
  cannot share one data directory.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import trio

from .errors import UpstreamUnavailable
from .upstream import UpstreamPool
from .upstream_target import Address

log = logging.getLogger("argon.embedded")

_EXECUTABLE = "secantusd-py"
_PID_FILE = "upstream.pid"
_STOP_TIMEOUT = 10.0

# Run by Argon's own Python between fork and SecantusDB: argv is
# [parent pid, executable, args...]. If the parent is already gone (it died
# before the death signal was armed), do not start at all.
_LAUNCHER = """\
import ctypes, os, signal, sys
parent = int(sys.argv[1])
try:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass  # not Linux: the pid file lets the next Argon reclaim the data directory
if os.getppid() != parent:
    sys.exit("argon exited before the embedded upstream started")
os.execv(sys.argv[2], sys.argv[2:])
"""


class EmbeddedError(RuntimeError):
    """The embedded upstream could not be started."""


def find_executable(configured: str = "") -> str:
    """Where ``secantusd-py`` is: the setting, then PATH, then beside this Python, then
    the project's own ``.venv-upstream``."""
    if configured:
        found = shutil.which(configured)
        if not found:
            raise EmbeddedError(f"embedded_command {configured!r} does not exist")
        return found
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
        f"cannot find {_EXECUTABLE}: install the embedded upstream with "
        "`pip install 'argon-mongo[embedded]'` (or `make install` in a checkout), "
        "set ARGON_EMBEDDED_COMMAND, or pass --upstream mongodb://HOST:PORT"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare_data_dir(data_dir: str | os.PathLike[str]) -> Path:
    """Create ``data_dir`` if needed and check Argon can write there."""
    data = Path(data_dir).resolve()
    try:
        data.mkdir(parents=True, exist_ok=True)
        probe = data / ".argon-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise EmbeddedError(
            f"data_dir {str(data)!r} is not a writable directory: {exc.strerror or exc}"
        ) from None
    return data


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
    data = prepare_data_dir(data_dir)
    storage = data / "upstream"
    await _reclaim(data, storage)
    port = port or free_port()
    argv = [
        executable,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        str(storage),
        "--log-level",
        "WARNING",
    ]
    log.info("starting embedded upstream: %s", " ".join(argv))
    process = _spawn(argv, data)
    _write_pid_file(data, process.pid, storage)
    try:
        await _wait_until_ready(process, Address("127.0.0.1", port), start_timeout, data)
        log.info("embedded upstream ready on 127.0.0.1:%d (pid %d)", port, process.pid)
        yield f"mongodb://127.0.0.1:{port}"
    finally:
        with trio.CancelScope(shield=True):
            await _stop(process)
            with suppress(OSError):
                (data / _PID_FILE).unlink()


def _spawn(argv: list[str], data: Path) -> subprocess.Popen[bytes]:
    """Fork the child from this thread (see the module docstring for why)."""
    with (data / "upstream.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *argv],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches Argon, which then stops it in order
        )


def _write_pid_file(data: Path, pid: int, storage: Path) -> None:
    record = {"pid": pid, "argon_pid": os.getpid(), "storage": str(storage)}
    (data / _PID_FILE).write_text(json.dumps(record) + "\n")


def _cmdline(pid: int) -> str | None:
    """The command line of process ``pid``; empty if it is gone or has exited and
    awaits reaping (a zombie holds no files); None where ``/proc`` cannot tell."""
    if not Path("/proc/self/cmdline").exists():
        return None
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _reclaim(data: Path, storage: Path) -> None:
    """Stop the SecantusDB a killed Argon left running on this data directory."""
    try:
        record = json.loads((data / _PID_FILE).read_text())
        pid, argon_pid = int(record["pid"]), int(record["argon_pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # no record (or a torn one): nothing we may safely stop
    if not _alive(pid):
        return
    cmdline = _cmdline(pid)
    if cmdline is None:
        raise EmbeddedError(
            f"{data / _PID_FILE} names process {pid}, which is still running; "
            "stop it or remove the file if it is not a SecantusDB for this directory"
        )
    if not cmdline:
        return  # exited already: it holds nothing
    if _EXECUTABLE not in cmdline or str(storage) not in cmdline:
        return  # the pid was reused by something else: not ours to stop
    if argon_pid != os.getpid() and _alive(argon_pid) and "argon" in (_cmdline(argon_pid) or ""):
        raise EmbeddedError(
            f"data_dir {str(data)!r} is in use by the Argon with pid {argon_pid} "
            f"(its embedded upstream is pid {pid}); stop it or use another --data-dir"
        )
    log.warning(
        "stopping embedded upstream pid %d left by a previous Argon (pid %d)", pid, argon_pid
    )
    await _signal_until_gone(pid)


async def _signal_until_gone(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    with trio.move_on_after(_STOP_TIMEOUT):
        while _alive(pid) and _cmdline(pid):
            await trio.sleep(0.1)
        return
    log.warning("embedded upstream pid %d did not stop on SIGTERM; killing it", pid)
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while _alive(pid) and _cmdline(pid):
        await trio.sleep(0.1)


async def _wait_until_ready(
    process: subprocess.Popen[bytes], address: Address, timeout: float, data: Path
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


async def _wait_exit(process: subprocess.Popen[bytes]) -> None:
    # Polled rather than waited on in a thread: it is a few checks at shutdown.
    while process.poll() is None:
        await trio.sleep(0.05)


async def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    with trio.move_on_after(_STOP_TIMEOUT):
        await _wait_exit(process)
        log.info("embedded upstream stopped")
        return
    log.warning("embedded upstream did not stop on SIGTERM; killing it")
    process.kill()
    await _wait_exit(process)
