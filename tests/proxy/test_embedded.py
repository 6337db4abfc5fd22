"""`argon serve` with no upstream runs SecantusDB itself, keeps its data, stops it on exit,
and never leaves it running behind a killed Argon."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from ..processes import ROOT, free_port, secantusd_executable, wait_for_port


def _client(uri: str, **options: Any) -> MongoClient[dict[str, Any]]:
    """A typed pymongo client (a context manager that closes it)."""
    return MongoClient(uri, **options)


def _serve(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARGON_")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "argon_proxy",
            "serve",
            "--port",
            str(port),
            "--metrics-port",
            "0",
            "--console-port",
            "0",
            "--data-dir",
            str(data_dir),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _children_alive(data_dir: Path) -> list[int]:
    alive = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "secantusd-py" in cmdline and str(data_dir) in cmdline:
            alive.append(int(proc.name))
    return alive


def test_embedded_default_lifecycle(tmp_path: Path) -> None:
    data_dir = tmp_path / "argon-data"
    for round_ in range(2):
        port = free_port()
        proc = _serve(data_dir, port)
        try:
            wait_for_port(port, 90, proc)
            client: MongoClient[dict[str, object]] = MongoClient(f"mongodb://127.0.0.1:{port}")
            coll = client.embedded_db.notes
            if round_ == 0:
                coll.insert_one({"_id": "kept", "text": "survives a restart"})
            assert coll.find_one({"_id": "kept"}) == {"_id": "kept", "text": "survives a restart"}
            client.close()
            assert _children_alive(data_dir)
        finally:
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out.decode()
        assert b"embedded upstream stopped" in out
        assert _children_alive(data_dir) == []
    assert (data_dir / "upstream.log").exists()


def _wait_gone(data_dir: Path, timeout: float = 60.0) -> list[int]:
    """The embedded children still alive after waiting up to ``timeout`` for them to go."""
    deadline = time.monotonic() + timeout
    while (alive := _children_alive(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def _stop(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out.decode()
    return out.decode()


def test_kill_9_of_argon_takes_the_embedded_upstream_with_it(tmp_path: Path) -> None:
    """SIGKILL gives Argon no chance to stop its child: the kernel must, and the next
    `argon serve` on the same data directory starts and serves the data."""
    data_dir = tmp_path / "argon-data"
    port = free_port()
    proc = _serve(data_dir, port)
    try:
        wait_for_port(port, 90, proc)
        with _client(f"mongodb://127.0.0.1:{port}") as client:
            client.embedded_db.notes.insert_one({"_id": "acked", "text": "before kill -9"})
        assert _children_alive(data_dir)
    finally:
        proc.kill()
        proc.wait()
    assert _wait_gone(data_dir) == []
    port = free_port()
    proc = _serve(data_dir, port)
    try:
        wait_for_port(port, 90, proc)
        with _client(f"mongodb://127.0.0.1:{port}") as client:
            assert client.embedded_db.notes.find_one({"_id": "acked"}) == {
                "_id": "acked",
                "text": "before kill -9",
            }
    finally:
        _stop(proc)
    assert _children_alive(data_dir) == []


def test_a_new_argon_reclaims_an_orphaned_upstream(tmp_path: Path) -> None:
    """Where the kernel cannot help (no PR_SET_PDEATHSIG), the pid file left by a killed
    Argon lets the next one stop the orphan before starting its own upstream."""
    data_dir = tmp_path / "argon-data"
    storage = data_dir / "upstream"
    data_dir.mkdir()
    orphan_port = free_port()
    orphan = subprocess.Popen(
        [
            *(secantusd_executable(), "--host", "127.0.0.1", "--port", str(orphan_port)),
            *("--storage-path", str(storage), "--log-level", "WARNING"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for_port(orphan_port, 90, orphan)
        with _client(f"mongodb://127.0.0.1:{orphan_port}/?directConnection=true") as c:
            c.embedded_db.notes.insert_one({"_id": "orphaned", "text": "written before"})
        dead_argon = subprocess.Popen([sys.executable, "-c", "pass"])
        dead_argon.wait()
        (data_dir / "upstream.pid").write_text(
            json.dumps({"pid": orphan.pid, "argon_pid": dead_argon.pid, "storage": str(storage)})
        )
        port = free_port()
        proc = _serve(data_dir, port)
        try:
            wait_for_port(port, 90, proc)
            assert orphan.wait(timeout=60) is not None  # stopped by the new Argon
            with _client(f"mongodb://127.0.0.1:{port}") as client:
                assert client.embedded_db.notes.find_one({"_id": "orphaned"}) is not None
        finally:
            out = _stop(proc)
        assert "left by a previous Argon" in out
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


def test_a_data_dir_in_use_by_a_running_argon_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "argon-data"
    port = free_port()
    first = _serve(data_dir, port)
    try:
        wait_for_port(port, 90, first)
        second = _serve(data_dir, free_port())
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 4, out.decode()
        assert f"in use by the Argon with pid {first.pid}" in out.decode()
        with _client(f"mongodb://127.0.0.1:{port}") as client:
            client.admin.command("ping")  # the first one is untouched
    finally:
        _stop(first)


def test_sigterm_during_start_up_stops_cleanly(tmp_path: Path) -> None:
    """A signal while the embedded upstream is still starting abandons the start-up:
    exit 0, and the child is stopped rather than left behind."""
    data_dir = tmp_path / "argon-data"
    proc = _serve(data_dir, free_port())
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # Argon has forked the child when it says so
        assert b"starting embedded upstream" in line, line
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, line + out
    assert _wait_gone(data_dir) == []
