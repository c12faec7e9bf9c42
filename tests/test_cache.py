"""The cache layer, against real builds: each scenario runs cold -> warm -> changed ->
invalidated on one CACHE_DIR and reads what the log says about it; then the safety cases
(two builds at once, kill -9 mid-pip, a corrupt runtime archive, a read-only or nearly full
cache), a removed package, and pruning. No timings: the log tells a warm build from a cold one.

Runtimes are the run's archives hard-linked into each test's cache (conftest's ``runtimes``):
a test that damages one unlinks it first, and mtimes of archives are shared between tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BP, Build, build_env, copy_fixture, local_versions, run_compile
from dcbuild import manifest
from dcbuild.versions import SUPPORTED_LINES, Version

pytestmark = pytest.mark.slow

PLATFORM = manifest.current_platform()
# The steps that do work; a build that prints none of them rebuilt nothing.
WORK = ("-----> Installing Python", "-----> Installing dotCloud requirements", "-----> Installing requirements",
        "-----> Discarding")
DCREQS = "-----> Installing dotCloud requirements (config/dcrequirements.txt)"
USERREQS = "-----> Installing requirements with uv (requirements.txt)"
CACHED_DCREQS = "-----> Using cached dotCloud requirements (config/dcrequirements.txt unchanged)"
CACHED_PACKAGES = "-----> Using cached packages (requirements.txt unchanged)"
FROM_WHEELS = "       All packages came from the uv cache"
WAITING = "-----> Waiting for another build that uses the same cache"


# --- helpers ---------------------------------------------------------------------------


@pytest.fixture
def pythons() -> list[Version]:
    """Local CPythons of supported lines, newest first (offline, builds package them)."""
    found = sorted((v for v in local_versions() if v.line in SUPPORTED_LINES), reverse=True)
    if not found:
        pytest.skip("no local CPython of a supported line")
    return found


def new_app(dest: Path, version: Version, fixture: str = "sample", requirements: str | None = None) -> Path:
    """A fresh checkout: a new BUILD_DIR whose files all have new mtimes."""
    copy_fixture(fixture, dest)
    (dest / "runtime.txt").write_text(f"python-{version}\n")
    if requirements is not None:
        (dest / "requirements.txt").write_text(requirements)
    touch_all(dest)
    return dest


def touch_all(app: Path) -> None:
    for path in [app, *app.rglob("*")]:
        os.utime(path, follow_symlinks=False)


def build(app: Path, cache: Path, bp: Path = BP, **env: str) -> Build:
    env.setdefault("STACK", "")
    if bp == BP:
        result = run_compile(app, cache, **env)
    else:
        res = subprocess.run([str(bp / "bin" / "compile"), str(app), str(cache)], cwd=app, env=build_env(**env),
                             capture_output=True, text=True, timeout=900)
        result = Build(res.returncode, res.stdout, res.stderr)
    assert result.returncode == 0, result
    return result


def work(result: Build) -> list[str]:
    """The log's lines that say something was (re)built, in order."""
    return [line for line in result.stdout.splitlines() if line.startswith(WORK)]


def make_q(app: Path, cache: Path, bp: Path = BP, **env: str) -> int:
    """`make -q compile`: 0 when nothing is to be done."""
    env.setdefault("STACK", "")
    res = subprocess.run(["make", "-q", "-C", str(bp), "compile", f"BUILD_DIR={app}", f"CACHE_DIR={cache}"],
                         env=build_env(**env), capture_output=True, text=True, timeout=300)
    return res.returncode


def installed(app: Path, project: str) -> str | None:
    """The version of ``project`` in the slug's Python, or None."""
    code = ("import importlib.metadata as m, sys\n"
            "try:\n    print(m.version(sys.argv[1]))\nexcept m.PackageNotFoundError:\n    pass\n")
    res = subprocess.run([str(app / ".dotcloud/python/bin/python3"), "-I", "-c", code, project],
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip() or None


def slug_python(app: Path) -> str:
    res = subprocess.run([str(app / ".dotcloud/python/bin/python3"), "--version"], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin"}, timeout=60)
    return res.stdout.strip()


def half_made(cache: Path) -> list[str]:
    """Entries a build publishes by rename, caught before the rename."""
    root = cache / "python-dotcloud"
    return sorted(str(p.relative_to(root)) for pattern in ("*", "*/*") for p in root.glob(pattern)
                  if ".tmp." in p.name or p.name.startswith(".localpython-"))


def cached_archive(cache: Path, version: Version) -> Path:
    return cache / "python-dotcloud" / "runtimes" / f"cpython-{version}-{PLATFORM}.tar.gz"


def mirror_env(tmp_path: Path, runtimes, version: Version) -> dict[str, str]:
    """A file mirror and a manifest of its own holding the run's archive of ``version``."""
    archive = runtimes.ensure(version)
    sha = archive.with_name(archive.name + ".sha256").read_text().split()[0]
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    os.link(archive, mirror / archive.name)
    table = tmp_path / "manifest.tsv"
    table.write_text("\t".join(manifest.HEADER) + "\n"
                     f"{version}\t{PLATFORM}\thttps://example.invalid/{archive.name}\t{sha}\n")
    return {"PYTHON_MIRROR": str(mirror), "PYTHON_MANIFEST": str(table)}


def cold_then_warm(tmp_path: Path, cache: Path, version: Version, fixture: str = "sample", bp: Path = BP,
                   **env: str) -> None:
    cold = build(new_app(tmp_path / "cold", version, fixture), cache, bp, **env)
    assert work(cold) == [f"-----> Installing Python {version}", DCREQS, USERREQS], cold
    assert "Using cached" not in cold.stdout.replace(f"Using cached cpython-{version}", "")
    warm_app = new_app(tmp_path / "warm", version, fixture)
    assert make_q(warm_app, cache, bp, **env) != 0  # a new BUILD_DIR has no slug yet
    warm = build(warm_app, cache, bp, **env)
    assert work(warm) == [], warm
    assert f"-----> Using cached Python {version} (runtime.txt:1)" in warm.stdout
    assert CACHED_DCREQS in warm.stdout and CACHED_PACKAGES in warm.stdout, warm
    assert make_q(warm_app, cache, bp, **env) == 0


class Started:
    """bin/compile runs in their own sessions, output to a file; killed at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, app: Path, cache: Path, **env: str) -> tuple[subprocess.Popen, Path]:
        log = self.root / f"{name}.log"
        with log.open("w") as out:
            proc = subprocess.Popen([str(BP / "bin" / "compile"), str(app), str(cache)], cwd=app,
                                    env=build_env(STACK="", **env), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc, log

    def kill(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


@pytest.fixture
def started(tmp_path):
    s = Started(tmp_path)
    yield s
    s.kill()


def wait_for(proc: subprocess.Popen, log: Path, text: str, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None:
            assert text in log.read_text(errors="replace"), f"exit {proc.returncode} first:\n{log.read_text()}"
            return
        assert time.monotonic() < deadline, f"{text!r} not seen in {timeout}s:\n{log.read_text()}"
        time.sleep(0.02)


# --- scenarios: cold -> warm -> changed -> invalidated ---------------------------------------


def test_requirement_pin_then_python_version(tmp_path, runtimes, pythons):
    if len(pythons) < 2:
        pytest.skip("needs local CPythons of two supported lines")
    new, old = pythons[0], pythons[1]
    cache = runtimes.seed(tmp_path / "cache", old, new)
    cold_then_warm(tmp_path, cache, old)

    # Changed: one pin. Python and the buildpack's packages are reused; only that package is fetched.
    app = new_app(tmp_path / "changed", old, requirements="itsdangerous==2.1.2\n")
    changed = build(app, cache)
    assert work(changed) == ["-----> Discarding cached packages: requirements.txt changed", USERREQS], changed
    assert f"-----> Using cached Python {old} (runtime.txt:1)" in changed.stdout
    assert CACHED_DCREQS in changed.stdout
    assert "       Prepared 1 package in " in changed.stdout and "        + itsdangerous==2.1.2\n" in changed.stdout
    assert installed(app, "itsdangerous") == "2.1.2"

    # Invalidated: another Python discards both dependency layers, saying why.
    app = new_app(tmp_path / "newer", new, requirements="itsdangerous==2.1.2\n")
    newer = build(app, cache)
    assert work(newer) == [
        f"-----> Installing Python {new}",
        f"-----> Discarding cached dotCloud requirements: Python {old} -> {new}",
        DCREQS,
        f"-----> Discarding cached packages: Python {old} -> {new}",
        USERREQS,
    ], newer
    assert FROM_WHEELS in newer.stdout  # itsdangerous's wheel is pure Python: not fetched again
    assert slug_python(app) == f"Python {new}"

    # And back: the older Python's layers are still there.
    back = build(new_app(tmp_path / "back", old, requirements="itsdangerous==2.1.2\n"), cache)
    assert work(back) == [], back
    assert CACHED_PACKAGES in back.stdout


def test_nested_requirement_file_then_stack(tmp_path, runtimes, pythons):
    version = pythons[0]
    cache = runtimes.seed(tmp_path / "cache", version)
    cold_then_warm(tmp_path, cache, version, fixture="requirements_nested")

    # Changed: a constraints file that requirements.txt pulls in through requirements/base.txt.
    app = new_app(tmp_path / "changed", version, fixture="requirements_nested")
    (app / "requirements" / "constraints.txt").write_text("six==1.17.0\n")
    changed = build(app, cache)
    assert work(changed) == ["-----> Discarding cached packages: requirements.txt changed", USERREQS], changed
    assert CACHED_DCREQS in changed.stdout
    assert "       Prepared 1 package in " in changed.stdout and "        + six==1.17.0\n" in changed.stdout
    assert installed(app, "six") == "1.17.0"

    # Invalidated: the platform's stack; every wheel is already in the cache.
    app = new_app(tmp_path / "stack", version, fixture="requirements_nested")
    (app / "requirements" / "constraints.txt").write_text("six==1.17.0\n")
    stacked = build(app, cache, STACK="heroku-24")
    assert work(stacked) == [
        "-----> Discarding cached dotCloud requirements: stack changed (none -> heroku-24)",
        DCREQS,
        "-----> Discarding cached packages: stack changed (none -> heroku-24)",
        USERREQS,
    ], stacked
    assert stacked.stdout.count(FROM_WHEELS) == 2 and "Downloading" not in stacked.stdout, stacked
    assert make_q(app, cache, STACK="heroku-24") == 0
    assert make_q(app, cache, STACK="heroku-22") != 0


def _copy_buildpack(dest: Path) -> Path:
    """The buildpack's sources (not its cache, venv or tests); vendored nginx builds linked."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        here = Path(directory)
        skip = {n for n in names if n in {".git", ".venv-test", "__pycache__", ".pytest_cache", ".ruff_cache"}}
        if here == BP:
            skip |= {"cache", "tests", "test"} & set(names)
        if here == BP / "vendor" / "nginx":
            skip |= {n for n in names if n.startswith("nginx-")}
        return skip

    shutil.copytree(BP, dest, symlinks=True, ignore=ignore)
    for built in (BP / "vendor" / "nginx").glob("nginx-*"):
        (dest / "vendor" / "nginx" / built.name).symlink_to(built)
    return dest


def test_buildpack_dcrequirements_change_and_back(tmp_path, runtimes, pythons):
    version = pythons[0]
    bp = _copy_buildpack(tmp_path / "buildpack")
    cache = runtimes.seed(tmp_path / "cache", version)
    cold_then_warm(tmp_path, cache, version, bp=bp)

    # Changed (a new buildpack release): both dependency layers go; the wheels stay.
    dcreqs = bp / "config" / "dcrequirements.txt"
    original = dcreqs.read_text()
    dcreqs.write_text(original + "# a new buildpack release\n")
    changed = build(new_app(tmp_path / "changed", version), cache, bp)
    reason = "the buildpack's config/dcrequirements.txt changed"
    assert work(changed) == [f"-----> Discarding cached dotCloud requirements: {reason}", DCREQS,
                             f"-----> Discarding cached packages: {reason}", USERREQS], changed
    assert changed.stdout.count(FROM_WHEELS) == 2 and "Downloading" not in changed.stdout, changed

    # Back to the release before: its layers are still cached.
    dcreqs.write_text(original)
    back = build(new_app(tmp_path / "back", version), cache, bp)
    assert work(back) == [], back
    assert CACHED_DCREQS in back.stdout and CACHED_PACKAGES in back.stdout


def test_new_mtimes_rebuild_nothing(tmp_path, runtimes, pythons):
    version = pythons[0]
    cache = runtimes.seed(tmp_path / "cache", version)
    app = new_app(tmp_path / "app", version, fixture="requirements_nested")
    build(app, cache)
    assert make_q(app, cache) == 0
    (app / "requirements.txt").touch()
    assert make_q(app, cache) == 0
    touch_all(app)  # as a fresh checkout of the same commit
    assert make_q(app, cache) == 0
    again = build(app, cache)
    assert work(again) == [], again
    assert CACHED_PACKAGES in again.stdout
    assert make_q(app, cache) == 0


def test_a_warm_build_in_a_fresh_directory_links_the_whole_environment(tmp_path, runtimes, pythons):
    """The environment's copy that make starts at parse time (dcbuild.slug precopy) is the one
    the python step keeps: complete, hard links into the layer, symbolic links kept, no record left."""
    version = pythons[0]
    cache = runtimes.seed(tmp_path / "cache", version)
    build(new_app(tmp_path / "cold", version), cache)
    app = new_app(tmp_path / "warm", version)
    warm = build(app, cache)
    assert work(warm) == [], warm
    layer = next((cache / "python-dotcloud" / "layers").glob("userreqs-*")) / "python"
    env = app / ".dotcloud" / "python"

    def listing(root: Path) -> list[tuple[str, int]]:
        return sorted((str(p.relative_to(root)), p.lstat().st_mode) for p in root.rglob("*"))

    assert listing(env) == listing(layer)
    assert (env / "bin" / "python3").is_symlink()
    assert {p.lstat().st_ino for p in env.rglob("*.py")} == {p.lstat().st_ino for p in layer.rglob("*.py")}
    assert not list((app / ".dotcloud" / "state").glob("precopy*"))
    assert make_q(app, cache) == 0


# --- safety --------------------------------------------------------------------------------


def test_two_builds_at_once_one_waits(tmp_path, runtimes, pythons, started):
    version = pythons[0]
    cache = runtimes.seed(tmp_path / "cache", version)
    first, first_log = started.start("first", new_app(tmp_path / "a", version), cache)
    wait_for(first, first_log, DCREQS)  # the first holds the lock, mid-build
    second, second_log = started.start("second", new_app(tmp_path / "b", version), cache)
    assert first.wait(900) == 0, first_log.read_text()
    assert second.wait(900) == 0, second_log.read_text()
    one, two = first_log.read_text(), second_log.read_text()
    assert WAITING not in one
    lines = two.splitlines()
    assert WAITING in lines and lines.index(WAITING) < lines.index(CACHED_DCREQS), two  # waited, then built
    assert CACHED_DCREQS in two and CACHED_PACKAGES in two, two  # it used what the first made
    assert DCREQS not in two and USERREQS not in two


def test_kill_9_mid_pip_then_rebuild(tmp_path, runtimes, pythons, started):
    version = pythons[0]
    cache = runtimes.seed(tmp_path / "cache", version)
    app = new_app(tmp_path / "app", version)
    proc, log = started.start("killed", app, cache)
    wait_for(proc, log, DCREQS)
    wait_for(proc, log, "       Resolved ")  # uv is running
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert half_made(cache), log.read_text()  # the kill did leave something half-made
    layers = cache / "python-dotcloud" / "layers"
    assert not [p for p in layers.iterdir() if p.name.startswith("dcreqs-") and ".tmp." not in p.name]

    rebuild = build(app, cache)  # the same BUILD_DIR, as a retry
    assert DCREQS in rebuild.stdout and USERREQS in rebuild.stdout, rebuild
    assert half_made(cache) == []
    assert not [p for p in (app / ".dotcloud").rglob("*.tmp.*")]
    assert installed(app, "itsdangerous") == "2.2.0" and installed(app, "supervisor")
    assert make_q(app, cache) == 0


@pytest.mark.parametrize("damage", ["truncated", "tampered"])
def test_corrupt_runtime_archive_is_fetched_again(tmp_path, runtimes, pythons, damage):
    version = pythons[0]
    env = mirror_env(tmp_path, runtimes, version)
    cache = runtimes.seed(tmp_path / "cache", version)
    build(new_app(tmp_path / "cold", version), cache, **env)
    archive = cached_archive(cache, version)
    good = archive.read_bytes()
    archive.unlink()  # a hard link to the run's shared archive: never write through it
    if damage == "truncated":
        archive.write_bytes(good[: len(good) // 2])
    else:
        middle = len(good) // 2
        archive.write_bytes(good[:middle] + bytes([good[middle] ^ 0xFF]) + good[middle + 1:])
    # The layers go too: while a dependency layer exists, the runtime layer is not needed
    # (each layer is a whole tree), so make does not extract the archive again.
    shutil.rmtree(cache / "python-dotcloud" / "layers")

    app = new_app(tmp_path / "app", version)
    again = build(app, cache, **env)
    assert work(again) == [f"-----> Installing Python {version}", DCREQS, USERREQS], again
    assert f"       Discarding cached {archive.name}: its sha256 does not match" in again.stdout
    assert f"       Downloading {Path(env['PYTHON_MIRROR']).as_uri()}/{archive.name}" in again.stdout
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == hashlib.sha256(good).hexdigest()
    assert again.stdout.count(FROM_WHEELS) == 2
    assert slug_python(app) == f"Python {version}"


MOUNTS = {
    "read-only": ('mount --bind "$1" "$1" && mount -o remount,bind,ro "$1"', "is not writable"),
    "nearly full": ('mount -t tmpfs -o size=64m tmpfs "$1"', "has only 64 MB free"),
}


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="mounting over the cache needs root (unshare --mount)")
@pytest.mark.parametrize("kind", MOUNTS)
def test_unusable_cache_builds_uncached_with_a_warning(tmp_path, runtimes, pythons, kind):
    version = pythons[0]
    env = mirror_env(tmp_path, runtimes, version)
    cache = runtimes.seed(tmp_path / "cache", version)
    build(new_app(tmp_path / "cold", version), cache, **env)

    def snapshot() -> tuple[list[str], str]:
        # Names, not mtimes: the archive is a hard link to the run's, which other tests use.
        names = sorted(str(p.relative_to(cache)) for pattern in ("*/*", "*/*/*") for p in cache.glob(pattern))
        return names, (cache / "python-dotcloud" / "last-build.json").read_text()

    before = snapshot()
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    app = new_app(tmp_path / "app", version)
    mount, why = MOUNTS[kind]
    res = subprocess.run(["unshare", "--mount", "sh", "-c", f'{mount} && shift && exec "$@"', "sh", str(cache),
                          str(BP / "bin" / "compile"), str(app), str(cache)],
                         cwd=app, env=build_env(STACK="", TMPDIR=str(tmpdir), **env),
                         capture_output=True, text=True, timeout=900)
    result = Build(res.returncode, res.stdout, res.stderr)
    assert result.returncode == 0, result
    assert f" !     Warning: the cache directory {cache} {why}; building without a cache." in result.stderr
    assert work(result) == [f"-----> Installing Python {version}", DCREQS, USERREQS], result
    assert installed(app, "itsdangerous") == "2.2.0"
    assert snapshot() == before
    assert list(tmpdir.iterdir()) == []  # the stand-in cache is gone


# --- what the slug holds, and what the cache keeps -------------------------------------------


def test_removed_package_is_gone_from_the_slug(tmp_path, runtimes, pythons):
    version = pythons[0]
    cache = runtimes.seed(tmp_path / "cache", version)
    app = new_app(tmp_path / "app", version, requirements="itsdangerous==2.2.0\nsix==1.16.0\n")
    build(app, cache)
    assert installed(app, "six") == "1.16.0"
    (app / "requirements.txt").write_text("itsdangerous==2.2.0\n")  # the same BUILD_DIR, as `make compile`
    removed = build(app, cache)
    assert work(removed) == ["-----> Discarding cached packages: requirements.txt changed", USERREQS], removed
    assert FROM_WHEELS in removed.stdout
    assert installed(app, "six") is None
    assert not list((app / ".dotcloud" / "python").glob("lib/python3*/site-packages/six*"))
    assert installed(app, "itsdangerous") == "2.2.0"


def test_pruning_keeps_the_last_n_used(tmp_path, runtimes, pythons):
    version = pythons[0]
    cache = runtimes.seed(tmp_path / "cache", version)
    root = cache / "python-dotcloud"
    pins = {"a": "2.2.0", "b": "2.1.2", "c": "2.0.1"}

    def deploy(tag: str, pin: str) -> Build:  # pip's engine: its wheelhouse is pruned with the layers
        return build(new_app(tmp_path / tag, version, requirements=f"itsdangerous=={pin}\n"), cache,
                     DC_CACHE_KEEP="2", DC_INSTALLER="pip")

    def kept() -> list[str]:
        """The itsdangerous version of each kept userreqs layer, from the wheels it used."""
        out = []
        for layer in (root / "layers").glob("userreqs-*"):
            wheel = next(w for w in (layer / "wheels-used.txt").read_text().split() if w.startswith("itsdangerous-"))
            out.append(wheel.split("-")[1])
        return sorted(out)

    deploy("a1", pins["a"])
    deploy("b1", pins["b"])
    assert kept() == ["2.1.2", "2.2.0"]
    assert CACHED_PACKAGES in deploy("a2", pins["a"]).stdout  # a is now the most recently used
    deploy("c1", pins["c"])
    assert kept() == ["2.0.1", "2.2.0"]  # b went, not a
    layers = sorted(p.name.split("-", 1)[0] for p in (root / "layers").iterdir())
    assert layers == ["dcreqs", "dcruntime", "runtime", "userreqs", "userreqs"]  # dcruntime: its bytecode
    wheels = sorted(w.name.split("-")[0] for w in (root / "wheels").glob("*.whl"))
    assert wheels == ["itsdangerous", "itsdangerous", "pyuwsgi", "supervisor"]
    assert not (root / "wheels" / "itsdangerous-2.1.2-py3-none-any.whl").exists()

    # b again: its layer and wheel were pruned, so it is fetched and built again.
    again = deploy("b2", pins["b"])
    assert "       Not in the wheel cache: itsdangerous==2.1.2\n" in again.stdout
    assert kept() == ["2.0.1", "2.1.2"]  # a is now the least recently used
