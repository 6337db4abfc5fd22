"""Start and stop the real processes the integration tests talk to.

Every test that needs a server gets real ones over real sockets: SecantusDB
started from ``.venv-upstream`` (or PATH) as its own process, and Argon started
as ``python -m argon_proxy serve``. Both are stopped by the fixtures.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pymongo import MongoClient

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = ROOT / "tests" / "clients" / "node_modules"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


def secantusd_executable() -> str:
    local = ROOT / ".venv-upstream" / "bin" / "secantusd-py"
    if local.exists():
        return str(local)
    found = shutil.which("secantusd-py")
    if not found:
        raise RuntimeError("secantusd-py not found: run `make install`")
    return found


@dataclass
class Process:
    """A child process with its port and log file."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    extra: dict[str, int] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def freeze(self, timeout: float = 10.0) -> None:
        """SIGSTOP the process and wait until every thread of it is stopped."""
        self.proc.send_signal(signal.SIGSTOP)
        stat = Path(f"/proc/{self.proc.pid}/stat")
        deadline = time.monotonic() + timeout
        while stat.exists() and time.monotonic() < deadline:
            # The state is the field after the parenthesised command name.
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "T":
                return
            time.sleep(0.01)
        if not stat.exists():
            time.sleep(0.5)  # no /proc: give the signal time to land

    def thaw(self) -> None:
        """Undo ``freeze``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_upstream(
    port: int | None = None,
    storage: str = ":memory:",
    *,
    args: Sequence[str] = (),
    ready_uri: str | None = None,
) -> Process:
    """SecantusDB on loopback, once it answers a ping (through ``ready_uri`` when
    ``args`` ask for TLS); ``args`` go on its command line (``--auth``, TLS files)."""
    port = port or free_port()
    log_file = Path(tempfile.mkstemp(prefix="secantus-", suffix=".log")[1])
    with log_file.open("wb") as out:
        proc = subprocess.Popen(
            [
                secantusd_executable(),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--storage-path",
                storage,
                "--log-level",
                "WARNING",
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_for_port(port, 60, proc)
        client: MongoClient[dict[str, object]] = MongoClient(
            (ready_uri or "mongodb://127.0.0.1:{port}/?directConnection=true").format(port=port),
            serverSelectionTimeoutMS=30000,
        )
        try:
            client.admin.command("ping")
        finally:
            client.close()
    except BaseException:
        # one that never answered is stopped here: the caller has no handle on it
        proc.kill()
        proc.wait()
        raise
    return Process(proc, port, log_file)


def start_proxy(upstream_uri: str, *args: str, env: dict[str, str] | None = None) -> Process:
    port = free_port()
    metrics_port = free_port()
    console_port = free_port()
    log_file = Path(tempfile.mkstemp(prefix="argon-", suffix=".log")[1])
    full_env = {**os.environ, **(env or {})}
    with log_file.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "argon_proxy",
                "serve",
                "--port",
                str(port),
                "--metrics-port",
                str(metrics_port),
                "--console-port",
                str(console_port),
                "--upstream",
                upstream_uri,
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=ROOT,
        )
    try:
        wait_for_port(port, 30, proc)
    except Exception:
        proc.kill()
        raise RuntimeError(f"argon did not start:\n{log_file.read_text()}") from None
    return Process(proc, port, log_file, {"metrics": metrics_port, "console": console_port})
