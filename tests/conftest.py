"""Shared helpers: fixture apps copied into tmp_path, real builds run as subprocesses.

Expensive shared inputs (runtime archives) are made once per test run behind a file lock
under the base temp directory's parent, which all pytest-xdist workers share.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

BP = Path(__file__).resolve().parents[1]
FIXTURES = BP / "test" / "fixtures"
sys.path.insert(0, str(BP / "lib"))

from dcbuild import localpython  # noqa: E402
from dcbuild.versions import Version  # noqa: E402

HOST_PYTHON = shutil.which("python3") or sys.executable


def pytest_report_header(config):
    out = []
    for cmd in (["make", "--version"], [HOST_PYTHON, "--version"], ["nginx", "-v"]):
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            out.append((res.stdout or res.stderr).splitlines()[0])
        except (OSError, IndexError, subprocess.TimeoutExpired):
            pass
    locals_ = ", ".join(str(lp.version) for lp in localpython.find_local())
    out.append(f"local CPythons: {locals_ or 'none'}")
    return out


@dataclass
class Build:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:  # what a failed assertion shows
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def build_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHON_OFFLINE", "1")  # CI has no route to upstream; don't probe it
    env.update(extra)
    return env


def run_compile(app: Path, cache: Path, env_dir: Path | None = None, **env: str) -> Build:
    args = [str(BP / "bin" / "compile"), str(app), str(cache)] + ([str(env_dir)] if env_dir else [])
    res = subprocess.run(args, cwd=app, env=build_env(**env), capture_output=True, text=True, timeout=900)
    return Build(res.returncode, res.stdout, res.stderr)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(sid: int) -> list[int]:
    """Live processes of a session (a test's web process and everything it started)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                pids.append(int(entry.name))
    return pids


def kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL everything a test's process started (its session), then the process itself."""
    for pid in session_pids(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def copy_fixture(name: str, dest: Path) -> Path:
    shutil.copytree(FIXTURES / name, dest, symlinks=True)
    return dest


def local_versions() -> list[Version]:
    return [lp.version for lp in localpython.find_local()]


def local_line(line: tuple[int, int]) -> Version | None:
    fits = [v for v in local_versions() if v.line == line]
    return max(fits) if fits else None


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory) -> Path:
    """A directory all xdist workers of this run share."""
    root = tmp_path_factory.getbasetemp().parent / "shared"
    root.mkdir(exist_ok=True)
    return root


def once(lock: Path, done, make) -> None:
    """``make()`` unless ``done()``, under an exclusive lock on ``lock``: of the run's xdist
    workers, the first to ask does the work and the others wait for it, then find it done."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not done():
            make()


class Runtimes:
    """Runtime archives made once per run, hard-linked into each test's own cache."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure(self, version: Version) -> Path:
        cache = self.root / "cache"
        store = cache / "python-dotcloud" / "runtimes"
        name = f"cpython-{version}-{_platform()}.tar.gz"

        def make() -> None:
            res = subprocess.run(["make", "-C", str(BP), f"python-{version}", f"CACHE_DIR={cache}"],
                                 env=build_env(), capture_output=True, text=True, timeout=900)
            assert res.returncode == 0, res.stdout + res.stderr

        once(self.root / "lock", (store / name).exists, make)
        return store / name

    def seed(self, cache: Path, *versions: Version) -> Path:
        store = cache / "python-dotcloud" / "runtimes"
        store.mkdir(parents=True, exist_ok=True)
        for version in versions:
            archive = self.ensure(version)
            for src in (archive, archive.with_name(archive.name + ".sha256")):
                os.link(src, store / src.name)
        return cache


def _platform() -> str:
    from dcbuild.manifest import current_platform

    return current_platform()


@pytest.fixture(scope="session")
def runtimes(shared_dir) -> Runtimes:
    root = shared_dir / "runtimes"
    root.mkdir(exist_ok=True)
    return Runtimes(root)


@pytest.fixture
def py312() -> Version:
    version = local_line((3, 12))
    if version is None:
        pytest.skip("no local CPython 3.12 on this machine")
    return version


def make_wheel(dest: Path, name: str, version: str, payload: bytes = b"", requires: tuple[str, ...] = ()) -> Path:
    """A minimal pure-Python wheel (for a local index the tests control)."""
    mod = name.replace("-", "_")
    info = f"{mod}-{version}.dist-info"
    depends = "".join(f"Requires-Dist: {r}\n" for r in requires)
    files = {
        f"{mod}.py": f"VERSION = {version!r}\n".encode(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{depends}".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: dcbp-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    if payload:
        files[f"{mod}_data.bin"] = payload
    record = "".join(
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for path, data in files.items()
    ) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    path = dest / f"{mod}-{version}-py3-none-any.whl"
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name_, data in files.items():
            zf.writestr(name_, data)
    return path


def local_index(root: Path, wheels: list[Path]) -> str:
    """A PEP 503 index in a directory: file:// URL."""
    root.mkdir(parents=True, exist_ok=True)
    by_project: dict[str, list[Path]] = {}
    for w in wheels:
        by_project.setdefault(w.name.split("-")[0].replace("_", "-").lower(), []).append(w)
    for project, files in by_project.items():
        d = root / project
        d.mkdir(exist_ok=True)
        for f in files:
            shutil.copy(f, d / f.name)
        links = "".join(f'<a href="{f.name}">{f.name}</a>\n' for f in files)
        (d / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    (root / "index.html").write_text("<!DOCTYPE html><html><body>\n" + "".join(
        f'<a href="{p}/">{p}</a>\n' for p in by_project) + "</body></html>\n")
    return root.as_uri() + "/"


@pytest.fixture
def world_dir():
    """A fresh directory under /tmp that ``nobody`` can traverse (pytest's tmp_path is 0700 under
    root, and nginx's workers run as nobody there)."""
    path = Path(tempfile.mkdtemp(prefix="dcbp-world-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
