"""Bad input at build time (issue 6): real bin/compile runs on broken apps, paths, disks and
config vars. Each failure exits non-zero with one ` !     Error:` paragraph that names the file
and the fix, prints no traceback and leaves the cache as good as before (the next good build
says `Using cached`); what is unambiguous is accepted.

The matrix (case -> behaviour -> test):

- runtime.txt malformed, unknown, EOL, two lines, not UTF-8; .python-version malformed, EOL,
  unknown -> one error naming FILE:LINE and the fix; cache untouched; the next good build is
  all cached -> test_bad_python_versions
- BOM, CRLF, CR, tabs and spaces, blank lines, UTF-16 with BOM -> accepted; an empty runtime.txt
  -> ignored with a warning naming it; .python-version with comments and several lines -> the
  first version, a warning naming the others -> test_python_version_files_accepted
- a package not on the index, conflicting pins, a -r loop, a -r to a missing file -> one error
  naming the requirements file (and line); no layer published -> test_bad_requirements
- ENV_DIR values with $(...), backticks, BASH_ENV, SHELLOPTS+PS4 -> never run; bad names, NUL
  values, PATH, LD_PRELOAD, LD_LIBRARY_PATH, PYTHONHOME, PYTHONPATH -> ignored with one warning
  each; secrets masked in hook output, also from a failing hook
  -> test_config_vars_are_data_and_secrets_stay_out; a failing package build that prints its
  environment shows no config var -> test_a_failing_package_build_never_shows_config_vars
- spaces and non-ASCII in BUILD_DIR, CACHE_DIR, ENV_DIR -> built through a private directory of
  links, which nothing kept records; the slug serves
  -> test_paths_with_spaces_and_non_ascii_build_and_serve
- BUILD_DIR missing or unwritable, ENV_DIR missing -> one error naming it and the fix
  -> test_unusable_directories
- a cache on a nearly full disk -> warning, uncached build succeeds
  -> test_nearly_full_cache_is_not_used
- the disk fills up during the install -> error "the disk is full" naming where; no layer
  published; with space again the next build succeeds -> test_disk_fills_up_during_the_install
- BUILD_DIR's disk fills up (the slug's copy of Python) -> the same error naming BUILD_DIR; the
  layers made before stay usable -> test_build_dir_fills_up
"""

from __future__ import annotations

import contextlib
import http.client
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import BP, Build, build_env, copy_fixture, free_port, kill_session, local_index, make_wheel, run_compile
from dcbuild import configvars

ERROR = " !     Error: "
CACHED_PYTHON = "-----> Using cached Python"
CACHED_DCREQS = "-----> Using cached dotCloud requirements (config/dcrequirements.txt unchanged)"
CACHED_PACKAGES = "-----> Using cached packages (requirements.txt unchanged)"


# --- helpers ---------------------------------------------------------------------------


def assert_one_error(build: Build, *fragments: str) -> str:
    """A clean failure: non-zero, one error paragraph holding every fragment, no traceback."""
    assert build.returncode != 0, build
    assert "Traceback" not in build.output, build
    errors = [line for line in build.stderr.splitlines() if line.startswith(ERROR)]
    assert len(errors) == 1, build
    paragraph = "\n".join(line for line in build.stderr.splitlines() if line.startswith(" !     ")
                          and "Warning:" not in line)
    for fragment in fragments:
        assert fragment in paragraph, build
    return paragraph


def published(cache: Path) -> dict[str, str]:
    """What the cache offers the next build: layer and runtime entries, the last build's record.
    Nothing half-made may be among them."""
    root = cache / "python-dotcloud"
    leftovers = [p for p in root.glob("*/*") if ".tmp." in p.name] + [p for p in root.glob("*") if ".tmp." in p.name]
    assert leftovers == [], leftovers
    out = {f"{d}/{p.name}": "" for d in ("layers", "runtimes") for p in sorted((root / d).glob("*"))}
    record = root / "last-build.json"
    out["last-build.json"] = record.read_text() if record.exists() else ""
    return out


def seeded_app(tmp_path: Path, runtimes, version, fixture: str = "sample") -> tuple[Path, Path]:
    app = copy_fixture(fixture, tmp_path / "app")
    (app / "runtime.txt").write_text(f"python-{version}\n")
    return app, runtimes.seed(tmp_path / "cache", version)


def assert_all_cached(build: Build) -> None:
    assert build.returncode == 0, build
    for line in (CACHED_PYTHON, CACHED_DCREQS, CACHED_PACKAGES):
        assert line in build.stdout, build
    assert "-----> Installing" not in build.stdout.replace("-----> Installing runtime configs", ""), build


@contextlib.contextmanager
def tmpfs(where: Path, size: str):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    where.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {res.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(fs: Path, leave_kb: int) -> Path:
    filler = fs / "filler"
    avail = os.statvfs(fs)
    free = avail.f_bavail * avail.f_frsize
    size = free - leave_kb * 1024
    assert size > 0, f"only {free} bytes free on {fs}"
    subprocess.run(["fallocate", "-l", str(size), str(filler)], check=True)
    return filler


# --- 1. runtime.txt and .python-version ----------------------------------------------------

BAD_VERSIONS = [
    # (file, content, fragments the error paragraph holds)
    ("runtime.txt", "pyhton-3.12\n", ["runtime.txt:1: 'pyhton-3.12' is not a Python version",
                                      "Did you mean 'python-3.12'? Change runtime.txt to that."]),
    ("runtime.txt", "python-3.12.99\n", ["runtime.txt:1: Python 3.12.99 is not a known release",
                                          "release), or just 'python-3.12'."]),
    ("runtime.txt", "python-2.7\n", ["runtime.txt:1: Python 'python-2.7' is not supported", "end of life",
                                     "Change runtime.txt to, for example, 'python-3.14'"]),
    ("runtime.txt", "3.8\n", ["runtime.txt:1: Python '3.8' is not supported", "end of life"]),
    ("runtime.txt", "python-3.8\r\n", ["runtime.txt:1: Python 'python-3.8' is not supported"]),
    ("runtime.txt", "python-3.12\npython-3.13\n", ["runtime.txt:2: unexpected second line 'python-3.13'",
                                                   "Remove the other lines"]),
    ("runtime.txt", b"python-3.12\xff\n", ["runtime.txt is not UTF-8 text", "'python-3.14'"]),
    (".python-version", "pyhton-3.12\n", [".python-version:1: 'pyhton-3.12' is not a Python version"]),
    (".python-version", "python-3.12\n", ["without the 'python-' prefix, which runtime.txt uses"]),
    (".python-version", "# pinned\n3.8\n3.12\n", [".python-version:2: Python '3.8' is not supported",
                                                  "Change .python-version to, for example, '3.14'"]),
    (".python-version", "2.7.18\n", [".python-version:1: Python '2.7.18' is not supported"]),
    (".python-version", "3.12.99\n", [".python-version:1: Python 3.12.99 is not a known release",
                                           "release), or just '3.12'."]),
]


@pytest.mark.slow
def test_bad_python_versions(tmp_path, runtimes, py312):
    app, cache = seeded_app(tmp_path, runtimes, py312)
    assert run_compile(app, cache).returncode == 0
    before = published(cache)
    good = (app / "runtime.txt").read_bytes()
    for name, content, fragments in BAD_VERSIONS:
        (app / "runtime.txt").unlink(missing_ok=True)
        (app / name).write_bytes(content.encode() if isinstance(content, str) else content)
        build = run_compile(app, cache)
        assert_one_error(build, *fragments)
        assert published(cache) == before, f"{name}: {content!r}"
        (app / name).unlink()
    (app / "runtime.txt").write_bytes(good)
    assert_all_cached(run_compile(app, cache))


ACCEPTED = [
    # (files, what the log says about the version's origin, a warning it must print or None)
    ({"runtime.txt": "\ufeff{py}\r\n"}, "runtime.txt:1", None),
    ({"runtime.txt": "\n\t {py} \t\r\n\r\n\n"}, "runtime.txt:2", None),
    ({"runtime.txt": "{py}\r"}, "runtime.txt:1", None),
    ({"runtime.txt": ("{py}\r\n", "utf-16")}, "runtime.txt:1", None),
    ({"runtime.txt": "", ".python-version": "{v}\n"}, ".python-version:1",
     " !     Warning: runtime.txt holds nothing; ignoring it"),
    ({".python-version": "# pinned for prod\n{v}  # this one\n3.11\nsystem\n"}, ".python-version:2",
     " !     Warning: .python-version:2: using '{v}', the first version in .python-version"),
]


@pytest.mark.slow
def test_python_version_files_accepted(tmp_path, runtimes, py312):
    app, cache = seeded_app(tmp_path, runtimes, py312)
    assert run_compile(app, cache).returncode == 0
    for files, origin, warning in ACCEPTED:
        for name in ("runtime.txt", ".python-version"):
            (app / name).unlink(missing_ok=True)
        for name, text in files.items():
            text, encoding = text if isinstance(text, tuple) else (text, "utf-8")
            (app / name).write_bytes(text.format(py=f"python-{py312}", v=py312).encode(encoding))
        build = run_compile(app, cache)
        assert_all_cached(build)
        assert f"{CACHED_PYTHON} {py312} ({origin})" in build.stdout, build
        if warning:
            assert warning.format(v=py312) in build.stderr, build
        else:
            assert "Warning" not in build.stderr, build


# --- 2. requirements -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_bad_requirements(tmp_path, runtimes, py312, installer):
    app, cache = seeded_app(tmp_path, runtimes, py312)
    # An index the test controls beside PyPI (which has the sample's own package): one project with
    # two versions. Every build installs the whole list afresh, as an empty cache would.
    wheels = [make_wheel(tmp_path / "wheels", "dcbp-pin", "1.0"), make_wheel(tmp_path / "wheels", "dcbp-pin", "2.0")]
    index = local_index(tmp_path / "index", wheels)
    first = run_compile(app, cache, PIP_EXTRA_INDEX_URL=index, DC_INSTALLER=installer)
    assert first.returncode == 0, first
    good = (app / "requirements.txt").read_text()
    before = published(cache)
    cases = [
        ({"requirements.txt": good + "dcbp-nowhere==1.0\n"},
         ["requirements.txt", "dcbp-nowhere", "requirements.txt:2"]),
        ({"requirements.txt": good + "dcbp-pin==1.0\ndcbp-pin==2.0\n"},
         ["dcbp-pin==1.0 (requirements.txt:2)", "dcbp-pin==2.0 (requirements.txt:3)"]),
        ({"requirements.txt": "-r base.txt\n", "base.txt": good + "-r requirements.txt\n"},
         ["base.txt:2: requirement files include each other in a loop",
          "requirements.txt -> base.txt -> requirements.txt", "Remove one of the -r/-c lines"]),
        ({"requirements.txt": good + "-r nope.txt\n"},
         ["requirements.txt:2: requirement file nope.txt does not exist", "Fix the -r/-c line"]),
    ]
    for files, fragments in cases:
        for name, text in files.items():
            (app / name).write_text(text)
        build = run_compile(app, cache, PIP_EXTRA_INDEX_URL=index, DC_INSTALLER=installer)
        assert_one_error(build, *fragments)
        assert published(cache) == before, files
        (app / "base.txt").unlink(missing_ok=True)
    (app / "requirements.txt").write_text(good)
    assert_all_cached(run_compile(app, cache, PIP_EXTRA_INDEX_URL=index, DC_INSTALLER=installer))


# --- 5. ENV_DIR ----------------------------------------------------------------------------


SECRET = "hunter2xyz"
DB_PASSWORD = "pw-hunter3-db"


def config_vars(env_dir: Path, marks: Path, **extra: str) -> Path:
    env_dir.mkdir()
    values = {
        "EVIL": f"$(touch {marks}/dollar)",
        "EVIL2": f"`touch {marks}/backtick`",
        "BASH_ENV": f"$(touch {marks}/bash_env)",  # bash expands it when a non-interactive shell starts
        "SHELLOPTS": "xtrace",  # with PS4: bash would expand PS4 before every traced command
        "PS4": f"$(touch {marks}/ps4)",
        "BAD-NAME": "x",
        "a b": "x",
        "NULVAL": "a\0b",
        "PATH": "/nonexistent/bin",
        "LD_PRELOAD": "/nonexistent/libdcbp.so",
        "LD_LIBRARY_PATH": "/nonexistent/lib",
        "PYTHONHOME": "/nonexistent/python",
        "PYTHONPATH": "/nonexistent/site",
        "SECRET_KEY": SECRET + "\n",
        "DATABASE_URL": f"postgres://app:{DB_PASSWORD}@db.example.invalid:5432/app",
        "PLAIN_SETTING": "visible-value",
        **extra,
    }
    for name, value in values.items():
        (env_dir / name).write_text(value)
    return env_dir


def test_config_var_rules(tmp_path, capsys):
    env_dir = config_vars(tmp_path / "env", tmp_path)
    (env_dir / ".hidden").write_text("x")  # a platform's or editor's file: silently not a config var
    (env_dir / "SUBDIR").mkdir()
    config = configvars.read(env_dir)
    assert {"BAD-NAME", "a b", "NULVAL", ".hidden", "SUBDIR"}.isdisjoint(config)
    assert config["EVIL"] == f"$(touch {tmp_path}/dollar)"
    build = configvars.for_build(env_dir)
    assert configvars.DENIED.isdisjoint(build) and "SECRET_KEY" in build
    configvars.check(env_dir)
    warned = re.findall(r"Warning: config var '([^']+)' is ignored", capsys.readouterr().err)
    assert sorted(warned) == sorted(["BAD-NAME", "a b", "NULVAL", "PATH", "LD_PRELOAD", "LD_LIBRARY_PATH",
                                     "PYTHONHOME", "PYTHONPATH", "BASH_ENV", "SHELLOPTS", "PS4"])
    masked = configvars.secrets({**config, "GITHUB_TOKEN": "ghp_x1", "PORT": "5000", "API_KEY": "abc",
                                 "REDIS_URL": "redis://:s3cretpw@h:6379"})
    assert SECRET in masked and DB_PASSWORD in masked and "ghp_x1" in masked and "s3cretpw" in masked
    assert "5000" not in masked and "visible-value" not in masked
    assert "abc" not in masked  # too short to mask without masking ordinary text
    line = f"SECRET_KEY={SECRET} url=postgres://app:{DB_PASSWORD}@db"
    assert configvars.redact(line, masked) == "SECRET_KEY=******** url=postgres://app:********@db"


@pytest.mark.slow
def test_config_vars_are_data_and_secrets_stay_out(tmp_path, runtimes, py312):
    marks = tmp_path / "marks"
    marks.mkdir()
    app, cache = seeded_app(tmp_path, runtimes, py312, "badin_hooks_env")
    env_dir = config_vars(tmp_path / "env", marks)
    build = run_compile(app, cache, env_dir)
    assert build.returncode == 0, build
    assert list(marks.iterdir()) == [], "a config var's value was run as shell"
    out = build.output
    # Values are handed over as data.
    assert f"pre_compile EVIL=[$(touch {marks}/dollar)] EVIL2=[`touch {marks}/backtick`]" in out
    # Names validated, dangerous ones ignored: one warning each, once.
    for name in ("BAD-NAME", "a b", "NULVAL", "PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONHOME", "PYTHONPATH",
                 "BASH_ENV", "SHELLOPTS", "PS4"):
        assert build.stderr.count(f" !     Warning: config var {name!r} is ignored during the build") == 1, name
    for hook in ("pre_compile", "post_compile"):
        assert f"{hook} env: PLAIN_SETTING=visible-value" in out  # config vars do reach hooks ...
        assert f"{hook} env: SECRET_KEY=********" in out  # ... secrets masked
        assert f"{hook} env: DATABASE_URL=postgres://app:********@db.example.invalid:5432/app" in out
        for name in ("PATH=/nonexistent", "LD_PRELOAD=", "LD_LIBRARY_PATH=/nonexistent", "PYTHONHOME=",
                     "PYTHONPATH=/nonexistent", "BASH_ENV=", "SHELLOPTS=", "PS4=", "NULVAL="):
            assert f"{hook} env: {name}" not in out, name
    assert f"post_compile python: {app / '.dotcloud' / 'python'}" in out
    assert "cannot be preloaded" not in out
    assert SECRET not in out and DB_PASSWORD not in out

    # A failing hook that prints the environment.
    (env_dir / "FAIL_HOOK").write_text("1")
    failed = run_compile(app, cache, env_dir)
    assert_one_error(failed, "bin/post_compile failed (exit status 3)")
    assert "post_compile fails on purpose" in failed.stdout
    assert "post_compile env: SECRET_KEY=********" in failed.stdout
    assert SECRET not in failed.output and DB_PASSWORD not in failed.output
    assert list(marks.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_a_failing_package_build_never_shows_config_vars(tmp_path, runtimes, py312, installer):
    app, cache = seeded_app(tmp_path, runtimes, py312, "badin_envpkg")
    env_dir = config_vars(tmp_path / "env", tmp_path, DC_INSTALLER=installer)
    build = run_compile(app, cache, env_dir)
    assert_one_error(build, "requirements.txt")
    assert "ENVDUMP-BEGIN" in build.output, build  # the backend's output is shown ...
    assert SECRET not in build.output and DB_PASSWORD not in build.output  # ... and has no config var
    assert "PLAIN_SETTING" not in build.output
    assert not list((cache / "python-dotcloud" / "layers").glob("userreqs-*")), "a failed layer was published"


# --- 3. paths ------------------------------------------------------------------------------


def start_web(app: Path, tmpdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    tmpdir.mkdir(exist_ok=True)
    env = {"HOME": str(app), "PORT": str(port), "TMPDIR": str(tmpdir), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    command = 'set -eo pipefail; for f in .profile.d/*.sh; do . "$f"; done; exec bin/dcweb'
    proc = subprocess.Popen(["bash", "-c", command],
                            cwd=app, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    return proc, port


def get(port: int, path: str = "/") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        res = conn.getresponse()
        return res.status, res.read()
    finally:
        conn.close()


@pytest.mark.slow
def test_paths_with_spaces_and_non_ascii_build_and_serve(world_dir, runtimes, py312):
    app = copy_fixture("sample", world_dir / "my app é")
    (app / "runtime.txt").write_text(f"python-{py312}\n")
    cache = runtimes.seed(world_dir / "cache dir ü 'q'", py312)
    env_dir = world_dir / "env ß"
    env_dir.mkdir()
    (env_dir / "GREETING").write_text("hi")
    build_tmp = world_dir / "buildtmp"
    build_tmp.mkdir()
    build = run_compile(app, cache, env_dir, TMPDIR=str(build_tmp))
    assert build.returncode == 0, build
    assert list(build_tmp.glob("dcbp-*")) == [], "the links were left behind"
    # Nothing the slug or the cache keeps records the links' path, except what names a directory
    # that existed only during the build (a layer's *.tmp.* while it was made) and bytecode
    # (importlib replaces a .pyc's recorded source path with the real one when it loads it).
    shim = re.escape(f"{build_tmp}/dcbp-paths.".encode()) + rb"[^\0\s\"'`]*"
    in_bytecode = 0
    for root in (app, cache):
        for path in root.rglob("*"):
            if path.is_symlink():
                assert not re.search(shim, os.readlink(path).encode()), path
            elif path.suffix == ".pyc":
                in_bytecode += bool(re.search(shim, path.read_bytes()))
            elif path.is_file():
                for m in re.finditer(shim, path.read_bytes()):
                    assert b".tmp." in m.group(0), f"{path} records {m.group(0)!r}"
    assert in_bytecode, "the build did not go through a directory of links"
    # The slug serves, from where a platform runs it (Heroku: /app, a plain path; the run-time
    # configs do not quote $HOME, so a HOME with spaces is not supported at run time).
    run_tmp = Path(tempfile.mkdtemp(prefix="dcbi-run-", dir="/tmp"))
    run_tmp.chmod(0o755)
    slug = shutil.copytree(app, run_tmp / "app", symlinks=True)
    proc, port = start_web(slug, run_tmp / "t")
    try:
        deadline = time.monotonic() + 30
        answer = None
        while time.monotonic() < deadline and answer is None:
            assert proc.poll() is None, proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            with contextlib.suppress(OSError):
                answer = get(port)
            if answer is None:
                time.sleep(0.1)
        assert answer == (200, f"Hello from dotCloud-style Python {py312}!\n".encode()), answer
    finally:
        kill_session(proc)
        shutil.rmtree(run_tmp, ignore_errors=True)
    # And a redeploy from the same odd paths is all cached.
    assert_all_cached(run_compile(app, cache, env_dir, TMPDIR=str(build_tmp)))


def test_unusable_directories(world_dir):
    app = copy_fixture("sample", world_dir / "app")
    missing = run_compile(app, world_dir / "cache", world_dir / "no-env")
    assert_one_error(missing, f"the config vars directory (ENV_DIR) {world_dir}/no-env does not exist")
    res = subprocess.run([str(BP / "bin" / "compile"), str(world_dir / "nowhere"), str(world_dir / "cache")],
                         env=build_env(), capture_output=True, text=True, timeout=60)
    assert_one_error(Build(res.returncode, res.stdout, res.stderr),
                     f"the build directory {world_dir}/nowhere does not exist")
    if os.geteuid() != 0:
        pytest.skip("an unwritable BUILD_DIR needs another uid to build as (run as root)")
    nobody = pwd.getpwnam("nobody")
    app.chmod(0o555)
    env = build_env(HOME=str(world_dir))
    res = subprocess.run(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
                          str(BP / "bin" / "compile"), str(app), str(world_dir / "cache")],
                         env=env, capture_output=True, text=True, timeout=60)
    assert_one_error(Build(res.returncode, res.stdout, res.stderr),
                     f"the build directory {app} is not writable by the build (uid {nobody.pw_uid})",
                     f"Give uid {nobody.pw_uid} write access to it")
    assert not (app / ".dotcloud").exists()


# --- 4. full disk --------------------------------------------------------------------------


@pytest.mark.slow
def test_nearly_full_cache_is_not_used(tmp_path, py312):
    with tmpfs(tmp_path / "small", "40m") as cache:
        app = copy_fixture("sample", tmp_path / "app")
        (app / "runtime.txt").write_text(f"python-{py312}\n")
        build = run_compile(app, cache)
        assert build.returncode == 0, build
        assert re.search(rf"Warning: the cache directory {cache} has only \d+ MB free; building without a cache",
                         build.stderr), build
        assert sorted(p.name for p in cache.rglob("*")) == ["python-dotcloud"] or \
            sorted(p.name for p in cache.rglob("*")) == [".lock", "python-dotcloud"]


@pytest.mark.slow
def test_build_dir_fills_up(tmp_path, runtimes, py312):
    cache = runtimes.seed(tmp_path / "cache", py312)
    with tmpfs(tmp_path / "disk", "40m") as disk:
        app = copy_fixture("sample", disk / "app")
        (app / "runtime.txt").write_text(f"python-{py312}\n")
        build = run_compile(app, cache)
        assert build.returncode != 0, build
        assert "Traceback" not in build.output, build
        assert re.search(rf" !     Error: the disk is full: the build ran out of space (writing {app}/|in BUILD_DIR)",
                         build.stderr), build
        assert f" !       BUILD_DIR {app}: " in build.stderr, build
        before = published(cache)
    # The layers were made before the slug's copy ran out of space: a roomier BUILD_DIR uses them.
    roomy = copy_fixture("sample", tmp_path / "roomy")
    (roomy / "runtime.txt").write_text(f"python-{py312}\n")
    assert_all_cached(run_compile(roomy, cache))
    assert published(cache).keys() == before.keys()


@pytest.mark.slow
def test_disk_fills_up_during_the_install(tmp_path, runtimes, py312):
    archive = runtimes.ensure(py312)
    with tmpfs(tmp_path / "disk", "300m") as cache:
        store = cache / "python-dotcloud" / "runtimes"
        store.mkdir(parents=True)
        for src in (archive, archive.with_name(archive.name + ".sha256")):
            shutil.copy(src, store / src.name)  # another filesystem: no hard links
        app = copy_fixture("sample", tmp_path / "app")
        (app / "runtime.txt").write_text(f"python-{py312}\n")
        (app / "requirements.txt").unlink()
        first = run_compile(app, cache, DC_CACHE_MIN_FREE_MB="0")
        assert first.returncode == 0, first
        before = published(cache)
        # A requirements.txt of 4 MB that cannot be compressed, then a disk with 1 MB left.
        big = make_wheel(app / "wheels", "dcbp-big", "1.0", payload=os.urandom(4 << 20))
        (app / "requirements.txt").write_text(f"./wheels/{big.name}\n")
        filler = fill(cache, leave_kb=1024)
        build = run_compile(app, cache, DC_CACHE_MIN_FREE_MB="0")
        assert build.returncode != 0, build
        assert "Traceback" not in build.output, build
        # Where: the file a failed write named, else the fullest of the build's directories.
        assert re.search(rf" !     Error: the disk is full: the build ran out of space (writing {cache}/|in CACHE_DIR)",
                         build.stderr), build
        assert f" !       CACHE_DIR {cache}: " in build.stderr, build
        assert "ran out of disk space while installing the packages in requirements.txt" in build.stderr, build
        assert "Fix requirements.txt" not in build.stderr, build  # the requirements are not at fault
        assert published(cache) == before
        # Space again: the next build installs it, from what the cache kept.
        filler.unlink()
        again = run_compile(app, cache, DC_CACHE_MIN_FREE_MB="0")
        assert again.returncode == 0, again
        assert CACHED_DCREQS in again.stdout, again
        python = str(app / ".dotcloud/python/bin/python3")
        res = subprocess.run([python, "-c", "import dcbp_big; print(dcbp_big.VERSION)"], capture_output=True, text=True)
        assert res.stdout.strip() == "1.0", res.stderr

