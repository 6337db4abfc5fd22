"""pymongo's test suite, taken from the source distribution of the pinned release.

The driver's tests must be those of the driver that is installed: a newer suite
tests behaviour the installed driver lacks, an older one misses what it does.
So the version comes from the project's own pin (``pyproject.toml``, checked
against every ``requirements/*.lock`` that names pymongo), and nothing else is
downloaded: one request to PyPI's simple index (its JSON form, PEP 691) finds
the sdist's URL and SHA-256, a second fetches the sdist. The file is kept under
``.cache/conformance/`` with its verified digest beside it, so later runs work
offline.

From the archive only ``test/`` is extracted, plus a ``pytest.ini`` derived
from the release's own ``[tool.pytest.ini_options]``: the markers, warning
filters and strictness are the driver's, minus the options of plugins this
project does not install (pytest-asyncio: only the synchronous suite runs) and
the ones the runner sets itself (addopts with its junit file, test paths, the
faulthandler timeout that pytest-timeout replaces).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tarfile
import tomllib
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGE = "pymongo"
INDEX = "https://pypi.org/simple"
_PIN = re.compile(r"^\s*pymongo\s*==\s*([^\s;#]+)", re.IGNORECASE | re.MULTILINE)

# ini options of the release's pytest configuration that are not carried over,
# and why: the runner passes its own addopts (the release's writes a junit file
# into the source tree and selects the asynchronous suite too), names the test
# files itself, and bounds each test with pytest-timeout instead.
_DROPPED_OPTIONS = {"addopts", "testpaths", "faulthandler_timeout"}
# options of plugins that are not installed here, which --strict-config would
# otherwise reject: the asynchronous suite is not run, so pytest-asyncio is not needed
_DROPPED_PREFIXES = ("asyncio_",)


class SourceError(RuntimeError):
    """The pinned suite cannot be found, fetched or unpacked."""


@dataclass(frozen=True)
class Suite:
    """An extracted driver test suite: ``root`` holds ``test/`` and ``pytest.ini``."""

    version: str
    root: Path
    sha256: str


def pinned_version(repo: Path) -> str:
    """The pymongo version pinned in ``pyproject.toml``; every lock file must agree."""
    project = tomllib.loads((repo / "pyproject.toml").read_text())
    pins = [m.group(1) for d in project["project"]["dependencies"] if (m := _PIN.match(d))]
    if len(pins) != 1:
        raise SourceError("pyproject.toml must pin pymongo exactly once (pymongo==X)")
    version = pins[0]
    for lock in sorted((repo / "requirements").glob("*.lock")):
        for found in _PIN.findall(lock.read_text()):
            if found != version:
                raise SourceError(f"{lock.name} pins pymongo {found}, pyproject.toml {version}")
    return version


def check_installed(version: str) -> None:
    """Fail unless the driver this interpreter imports is ``version``."""
    installed = metadata.version(PACKAGE)
    if installed != version:
        raise SourceError(
            f"pymongo {installed} is installed but {version} is pinned: run `make install`"
        )


def _index_entry(version: str) -> dict[str, Any]:
    """The simple index's record of the sdist: filename, url and hashes."""
    request = urllib.request.Request(
        f"{INDEX}/{PACKAGE}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        listing = json.load(response)
    wanted = f"{PACKAGE}-{version}.tar.gz"
    for entry in listing["files"]:
        if entry["filename"] == wanted:
            return dict(entry)
    raise SourceError(f"PyPI lists no source distribution {wanted}")


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def fetch_sdist(version: str, cache: Path) -> tuple[Path, str]:
    """The sdist of ``version`` and its SHA-256, downloaded into ``cache`` unless there."""
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{PACKAGE}-{version}.tar.gz"
    recorded = target.with_name(target.name + ".sha256")
    if target.exists() and recorded.exists():
        expected = recorded.read_text().strip()
        if _digest(target) == expected:
            return target, expected
    entry = _index_entry(version)
    expected = str(entry["hashes"]["sha256"])
    # downloaded beside the target and renamed only once verified, so an
    # interrupted or corrupted download never looks like a cached one
    part_path = target.with_name(target.name + ".part")
    try:
        with (
            urllib.request.urlopen(str(entry["url"]), timeout=300) as response,
            part_path.open("wb") as part,
        ):
            shutil.copyfileobj(response, part)
        actual = _digest(part_path)
        if actual != expected:
            raise SourceError(f"{target.name}: sha256 {actual}, PyPI says {expected}")
    except BaseException:
        part_path.unlink(missing_ok=True)
        raise
    part_path.replace(target)
    recorded.write_text(expected + "\n")
    return target, expected


def _ini_value(value: object) -> str:
    """A TOML value as pytest's ini syntax writes it (lists: one item a line)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "".join(f"\n    {item}" for item in value)
    return str(value)


def pytest_ini(pyproject: dict[str, Any]) -> str:
    """The release's pytest configuration as a ``pytest.ini``, less what is not carried."""
    options = pyproject.get("tool", {}).get("pytest", {}).get("ini_options", {})
    lines = ["# Derived from pymongo's pyproject.toml by conformance/source.py.", "[pytest]"]
    for key, value in options.items():
        if key in _DROPPED_OPTIONS or key.startswith(_DROPPED_PREFIXES):
            continue
        lines.append(f"{key} = {_ini_value(value)}")
    return "\n".join(lines) + "\n"


def extract_suite(sdist: Path, version: str, sha256: str, dest: Path) -> Suite:
    """Unpack ``test/`` of ``sdist`` into ``dest`` (replacing it) and write its pytest.ini."""
    prefix = f"{PACKAGE}-{version}/"
    marker = dest / ".extracted"
    if marker.exists() and marker.read_text().strip() == sha256:
        return Suite(version, dest, sha256)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix + "test/")]
        if not members:
            raise SourceError(f"{sdist.name} has no test/ directory")
        for member in members:
            member.name = member.name[len(prefix) :]
        # the data filter refuses absolute paths, links out of dest and devices
        tar.extractall(dest, members=members, filter="data")
        config = tar.extractfile(prefix + "pyproject.toml")
        if config is None:
            raise SourceError(f"{sdist.name} has no pyproject.toml")
        pyproject = tomllib.loads(config.read().decode())
    (dest / "pytest.ini").write_text(pytest_ini(pyproject))
    marker.write_text(sha256 + "\n")
    return Suite(version, dest, sha256)


def prepare(repo: Path, cache: Path) -> Suite:
    """The pinned release's test suite, fetched and extracted under ``cache`` as needed."""
    version = pinned_version(repo)
    check_installed(version)
    sdist, sha256 = fetch_sdist(version, cache / "sdist")
    return extract_suite(sdist, version, sha256, cache / f"{PACKAGE}-{version}")
