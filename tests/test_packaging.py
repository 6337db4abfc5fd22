"""The Docker image recipe and the distribution, tested by their own steps.

Docker may be missing where tests run, so the ``Dockerfile`` is replayed on
this machine: every ``COPY`` copies exactly what it names into a scratch image
root, every ``RUN`` runs there (image paths such as ``/app`` mapped into it;
the user-management commands, which would change this machine, are only
checked), ``ENV`` sets the environment, and the ``ENTRYPOINT``/``CMD`` must
start a proxy that answers ``ping`` and satisfies the ``HEALTHCHECK``. A recipe
that forgets a package, installs the wrong things or cannot start fails here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from .processes import ROOT, free_port, wait_for_port

DOCKERFILE = ROOT / "Dockerfile"


def _client(uri: str, **options: Any) -> MongoClient[dict[str, Any]]:
    """A typed pymongo client (a context manager that closes it)."""
    return MongoClient(uri, **options)


_IMAGE_DIRS = ("app", "data")  # absolute paths of the image that the replay maps
_SYSTEM_COMMANDS = ("useradd", "groupadd", "chown")  # checked, not run on this machine


@dataclass(frozen=True)
class Step:
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Step]:
    """Instructions in order, continuation lines joined, comments dropped."""
    steps: list[Step] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        steps.append(Step(keyword.upper(), args.strip()))
    return steps


def _argv(args: str) -> list[str]:
    """An exec-form (JSON) or shell-form command."""
    return list(json.loads(args)) if args.startswith("[") else ["/bin/sh", "-c", args]


def _env_pairs(args: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in shlex.split(args))


class ImageReplay:
    """The recipe's effects in a scratch directory standing for the image's root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.workdir = "/"
        self.env: dict[str, str] = {}
        self.user = "root"
        self.system_commands: list[str] = []
        bin_dir = root / "_bin"  # `python` in RUN lines is the image's Python 3.11
        bin_dir.mkdir(parents=True)
        (bin_dir / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
        self.path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"

    def local(self, text: str) -> str:
        """``text`` with the image's absolute paths moved under the scratch root."""
        dirs = "|".join(_IMAGE_DIRS)
        return re.sub(rf"(?<![\w./-])/({dirs})(?=/|\b|$)", rf"{self.root}/\1", text)

    def cwd(self) -> Path:
        path = Path(self.local(self.workdir))
        path.mkdir(parents=True, exist_ok=True)
        return path

    def process_env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("ARGON_", "PYTHON"))}
        return {**base, "PATH": self.path, **{k: self.local(v) for k, v in self.env.items()}}

    def copy(self, args: str) -> None:
        *sources, dest = shlex.split(args)
        target = Path(self.local(dest)) if dest.startswith("/") else self.cwd() / dest
        for source in sources:
            src = ROOT / source
            assert src.exists(), f"COPY {source}: not in the repository"
            if src.is_dir():
                ignore = shutil.ignore_patterns("__pycache__")
                shutil.copytree(src, target, ignore=ignore, dirs_exist_ok=True)
                continue
            into_dir = dest.endswith("/") or len(sources) > 1
            path = target / src.name if into_dir else target
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, path)

    def run(self, args: str) -> None:
        parts = [p.strip() for p in args.split("&&")]
        kept = []
        for part in parts:
            if part.split()[0] in _SYSTEM_COMMANDS:
                self.system_commands.append(part)
            else:
                kept.append(self.local(part))
        if not kept:
            return
        done = subprocess.run(
            ["/bin/sh", "-c", " && ".join(kept)],
            cwd=self.cwd(),
            env=self.process_env(),
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, f"RUN {args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_recipe_is_least_privilege_and_says_what_it_exposes() -> None:
    steps = parse_dockerfile(DOCKERFILE.read_text())
    keywords = [s.keyword for s in steps]
    users = [s.args for s in steps if s.keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}, "the image must not run as root"
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    assert any("/healthz" in s.args for s in steps if s.keyword == "HEALTHCHECK")
    runs = " ".join(s.args for s in steps if s.keyword in {"RUN", "COPY"})
    assert "dev.lock" not in runs, "the image installs the development tools"
    env = {k: v for s in steps if s.keyword == "ENV" for k, v in _env_pairs(s.args).items()}
    assert env.get("ARGON_HOST") == "0.0.0.0", "listening beyond loopback must be explicit"
    assert env.get("ARGON_AUTH") == "true", "beyond loopback, clients must authenticate"
    assert "argon user create" in DOCKERFILE.read_text(), "say how to create the first user"


def test_wheel_ships_every_package(tmp_path: Path) -> None:
    source = tmp_path / "src"  # setuptools builds in the source tree: not in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("wire", "argon_proxy", "argon"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("argon_mongo-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("wire", "argon_proxy", "argon/commands", "argon"):
        assert f"{module}/__init__.py" in names, module
    assert "argon/py.typed" in names
    assert "argon_proxy/cli.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "argon = argon_proxy.cli:main" in text


@pytest.mark.timeout(1800)  # two environments installed from the package index
def test_image_recipe_starts_a_working_proxy(tmp_path: Path) -> None:
    image = ImageReplay(tmp_path / "image")
    entrypoint: list[str] = []
    command: list[str] = []
    healthcheck: list[str] = []
    for step in parse_dockerfile(DOCKERFILE.read_text()):
        if step.keyword == "WORKDIR":
            image.workdir = step.args
        elif step.keyword == "COPY":
            image.copy(step.args)
        elif step.keyword == "RUN":
            image.run(step.args)
        elif step.keyword == "ENV":
            image.env.update(_env_pairs(step.args))
        elif step.keyword == "USER":
            image.user = step.args
        elif step.keyword == "ENTRYPOINT":
            entrypoint = _argv(step.args)
        elif step.keyword == "CMD":
            command = _argv(step.args)
        elif step.keyword == "HEALTHCHECK":
            healthcheck = _argv(step.args.split(" CMD ", 1)[1])
    assert entrypoint, "the recipe has no ENTRYPOINT"

    port, metrics_port = free_port(), free_port()
    env = image.process_env()
    # Loopback only here; free ports instead of the published ones.
    env |= {
        "ARGON_HOST": "127.0.0.1",
        "ARGON_METRICS_HOST": "127.0.0.1",
        "ARGON_PORT": str(port),
        "ARGON_METRICS_PORT": str(metrics_port),
    }
    argv = [image.local(a) for a in entrypoint + command]
    proc = subprocess.Popen(
        argv, cwd=image.cwd(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        try:
            wait_for_port(port, 120, proc)
        except RuntimeError:
            raise AssertionError(proc.communicate()[0].decode(errors="replace")[-3000:]) from None
        with _client(f"mongodb://127.0.0.1:{port}", serverSelectionTimeoutMS=30000) as c:
            assert c.admin.command("ping")["ok"] == 1.0
            # The first user, as the recipe says: from loopback, while none exists.
            c.admin.command({"argon": "createUser", "name": "admin", "password": "pw"})
            with pytest.raises(OperationFailure) as refused:
                c.image_db.t.insert_one({"_id": 1})
            assert refused.value.code == 13
        with _client(f"mongodb://admin:pw@127.0.0.1:{port}", serverSelectionTimeoutMS=30000) as c:
            c.image_db.t.insert_one({"_id": 1})
            assert c.image_db.t.find_one() == {"_id": 1}
        health = f"http://127.0.0.1:{metrics_port}/healthz"
        deadline = time.monotonic() + 60  # a bound: the first upstream check may be pending
        while _http_status(health) != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert healthcheck, "the recipe has no HEALTHCHECK"
        check = subprocess.run(
            [image.local(a) for a in healthcheck], env=env, capture_output=True, timeout=60
        )
        assert check.returncode == 0, check.stderr.decode()
        assert (image.root / "data" / "upstream").is_dir()  # the data lives on the volume
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
    # The user the image runs as exists and owns the data volume.
    assert any(c.startswith("useradd") and image.user in c for c in image.system_commands)
    assert any(image.user in c and "/data" in c for c in image.system_commands)
