"""`argon serve` with no upstream runs SecantusDB itself, keeps its data, stops it on exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from pymongo import MongoClient

from ..processes import ROOT, free_port, wait_for_port


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
