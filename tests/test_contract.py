"""The platform contract: the buildpack deployed and started by herokuish's own sequence
(tests/herokuish_sim.sh, written from herokuish's source), as an unprivileged user when the
tests run as root, then real HTTP on 127.0.0.1.

Covered: a deploy from the `make dist` tarball (sample app; the hooks app with config vars), a
second deploy that reuses the cache, a cache on another filesystem (a tmpfs) together with a
read-only buildpack directory (a read-only bind mount of this checkout), and the simulator's own
fidelity to what herokuish was seen doing (a fake buildpack).

Platform roots live in world-traversable directories under /tmp (the unprivileged user must reach
them); each test has its own, and its own cache unless reusing one is the point.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import pwd
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import BP, FIXTURES, Build, free_port, kill_session, local_versions, once

pytestmark = pytest.mark.slow

SIM = BP / "tests" / "herokuish_sim.sh"
DOCKER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What a platform passes through to the build container besides its own variables.
PASSED = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_CERT", "http_proxy", "https_proxy",
          "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
AS_ROOT = os.geteuid() == 0
USER = "nobody" if AS_ROOT else pwd.getpwuid(os.geteuid()).pw_name
BUILDPACK = "00_buildpack-python-dotcloud"
# The steps that do work; a warm build prints none of them.
WORK = ("-----> Installing Python", "-----> Installing dotCloud requirements", "-----> Installing requirements")


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


@dataclass
class Web:
    proc: subprocess.Popen
    log: Path
    port: int

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def get(self, path: str = "/", timeout: float = 60.0) -> tuple[int, bytes]:
        """The first answer on the port, waiting for the process to listen."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", path, headers={"User-Agent": "contract-tests"})
                resp = conn.getresponse()
                return resp.status, resp.read()
            except OSError:
                if self.proc.poll() is not None:
                    raise AssertionError(f"the web process exited ({self.proc.returncode}):\n{self.output}") from None
                if time.monotonic() > deadline:
                    raise AssertionError(f"nothing on port {self.port} after {timeout}s:\n{self.output}") from None
                time.sleep(0.2)

    def stop(self) -> int:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            self.kill()

    def kill(self) -> None:
        kill_session(self.proc)


class Platform:
    """herokuish's paths under one root: IMPORT_PATH (what is pushed), APP_PATH, BUILD_PATH,
    ENV_PATH (config vars, one file each), CACHE_PATH, BUILDPACK_PATH."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache = root / "cache"
        self.env_dir = root / "env"
        self.buildpacks = root / "buildpacks"
        self.deploys = 0
        self.webs: list[Web] = []
        for path in (self.cache, self.env_dir, self.buildpacks):
            path.mkdir()

    @property
    def app(self) -> Path:
        return self.root / f"deploy{self.deploys}" / "app"

    def paths(self) -> dict[str, str]:
        deploy = self.app.parent
        return {"APP_PATH": str(self.app), "BUILD_PATH": str(deploy / "build"), "IMPORT_PATH": str(deploy / "import"),
                "CACHE_PATH": str(self.cache), "ENV_PATH": str(self.env_dir), "BUILDPACK_PATH": str(self.buildpacks)}

    def env(self, **extra: str) -> dict[str, str]:
        """A build container's environment: a bare PATH, USER, the paths; nothing of the host's."""
        env = {"PATH": DOCKER_PATH, "USER": USER, "HEROKUISH_SIM_ETC_PROFILE_D": "",
               "PYTHON_OFFLINE": os.environ.get("PYTHON_OFFLINE", "1")}
        env.update({k: os.environ[k] for k in PASSED if k in os.environ})
        env.update(self.paths())
        env.update(extra)
        return env

    def config(self, **values: str) -> None:
        for name, value in values.items():
            (self.env_dir / name).write_text(value + "\n")

    def seed_runtime(self, archive: Path, cache: Path | None = None) -> None:
        """The run's runtime archive, copied (the build user gets to own the cache)."""
        store = (cache or self.cache) / "python-dotcloud" / "runtimes"
        store.mkdir(parents=True, exist_ok=True)
        for src in (archive, archive.with_name(archive.name + ".sha256")):
            shutil.copy2(src, store / src.name)

    def new_deploy(self, fixture: Path) -> None:
        """git push: the app lands in IMPORT_PATH of a fresh container."""
        self.deploys += 1
        self.app.parent.mkdir()
        self.app.parent.chmod(0o755)
        shutil.copytree(fixture, self.app.parent / "import", symlinks=True)

    def build(self, fixture: Path, **env: str) -> Build:
        self.new_deploy(fixture)
        res = subprocess.run([str(SIM), "build"], env=self.env(**env), capture_output=True, text=True, timeout=900)
        return Build(res.returncode, res.stdout, res.stderr)

    def start(self, process: str = "web", **env: str) -> Web:
        port = free_port()
        log = self.root / f"web-{port}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([str(SIM), "start", process], env=self.env(PORT=str(port), **env),
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        web = Web(proc, log, port)
        self.webs.append(web)
        return web


def plain(text: str) -> str:
    """The build log without herokuish's cursor escapes."""
    return text.replace("\x1b[1G", "")


@pytest.fixture
def platform():
    root = Path(tempfile.mkdtemp(prefix="dcct-", dir="/tmp"))
    root.chmod(0o755)
    p = Platform(root)
    yield p
    for web in p.webs:
        web.kill()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def runtime_archive(runtimes) -> Path:
    """The run's runtime archive: offline, the default Python is the newest local one."""
    if not local_versions():
        pytest.skip("no local CPython to package a runtime from")
    return runtimes.ensure(max(local_versions()))


@pytest.fixture(scope="session")
def dist(shared_dir) -> Path:
    """`make dist` once per run, unpacked (read-only for the tests: each copies it)."""
    root = shared_dir / "dist"
    unpacked = root / "unpacked"

    def make_dist() -> None:
        res = subprocess.run(["make", "-C", str(BP), "--no-print-directory", "dist", f"DIST_DIR={root}"],
                             capture_output=True, text=True, timeout=1800)
        assert res.returncode == 0, res.stdout + res.stderr
        (tgz,) = root.glob("*.tgz")
        tmp = root / "unpacked.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        subprocess.run(["tar", "-xzf", str(tgz), "-C", str(tmp)], check=True)  # as herokuish installs it
        tmp.rename(unpacked)

    once(root / "lock", unpacked.is_dir, make_dist)
    return unpacked


def install_dist(platform: Platform, dist: Path) -> Path:
    """The tarball unpacked into BUILDPACK_PATH, as herokuish installs a tarball buildpack."""
    target = platform.buildpacks / BUILDPACK
    shutil.copytree(dist, target, symlinks=True)
    return target


# --- deploys ------------------------------------------------------------------------------


def test_sample_app_from_the_dist_tarball_serves_and_redeploys_from_the_cache(platform, dist, runtime_archive):
    install_dist(platform, dist)
    platform.seed_runtime(runtime_archive)
    build = platform.build(FIXTURES / "sample")
    log = plain(build.stdout)
    assert build.returncode == 0, build
    assert "-----> Python (dotCloud) app detected" in log
    assert "-----> Installing dotCloud requirements (config/dcrequirements.txt)" in log
    assert "-----> Using vendored nginx" in log  # from the tarball: compile never builds nginx
    assert "Procfile declares types -> web" in log
    app = platform.app
    assert (app / ".release").read_text().startswith("---\ndefault_process_types:")
    assert (app / ".profile.d" / "00_config_vars.sh").read_text() == ""  # no config_vars in bin/release
    assert not (app.parent / "build").exists() or not any((app.parent / "build").iterdir())
    if AS_ROOT:
        owners = {p.lstat().st_uid for p in app.rglob("*")}
        assert owners == {pwd.getpwnam(USER).pw_uid}, "compile ran as the unprivileged user"
    assert not list((platform.buildpacks / BUILDPACK).rglob("__pycache__")), "compile wrote into the buildpack"

    web = platform.start()
    status, body = web.get()
    assert (status, body.decode()) == (200, f"Hello from dotCloud-style Python {runtime_archive.name.split('-')[1]}!\n")
    if AS_ROOT:
        assert uid_of(web.proc.pid) == pwd.getpwnam(USER).pw_uid  # setuidgid, as herokuish's start
    assert web.stop() == 0, web.output

    again = platform.build(FIXTURES / "sample")
    log = plain(again.stdout)
    assert again.returncode == 0, again
    assert "-----> Using cached Python" in log
    assert "-----> Using cached dotCloud requirements (config/dcrequirements.txt unchanged)" in log
    assert "-----> Using cached packages (requirements.txt unchanged)" in log
    assert not any(work in log for work in WORK), log
    web = platform.start()
    assert web.get()[0] == 200
    assert web.stop() == 0, web.output


def test_hooks_see_config_vars_and_the_slug_serves_what_they_wrote(platform, dist, runtime_archive):
    install_dist(platform, dist)
    platform.seed_runtime(runtime_archive)
    platform.config(HOOK_GREETING="hello")
    build = platform.build(FIXTURES / "hooks_pass")
    log = plain(build.stdout)
    assert build.returncode == 0, build
    build_path = platform.app.parent / "build"
    # herokuish's indent re-indents every line (7 columns); compile ran in BUILD_PATH.
    assert f"       pre_compile: cwd={build_path} greeting=hello\n" in log
    assert f"       post_compile: BUILD_DIR={build_path} MAKEFLAGS=none\n" in log
    assert "       last line without a newline\n" in log  # our lines always end: none is lost
    web = platform.start()
    assert web.get() == (200, b"pre_compile\nprebuild\npostbuild\npost_compile\n")
    assert web.stop() == 0, web.output


def test_static_files_and_the_approot_through_herokuish(platform, dist, runtime_archive):
    install_dist(platform, dist)
    platform.seed_runtime(runtime_archive)
    build = platform.build(FIXTURES / "web_static_approot")
    assert build.returncode == 0, build
    web = platform.start()
    assert web.get("/static/hello.txt") == (200, (FIXTURES / "web_static_approot/site/static/hello.txt").read_bytes())
    assert web.get("/robots.txt") == (200, b"app: /robots.txt\n")
    assert web.stop() == 0, web.output


def test_dotclouds_home_beside_the_app_not_in_it(platform, dist, runtime_archive):
    """A Pyramid-style app with __init__.py at the top: `import code` is the standard library's
    under uWSGI, whose sys.path holds the approot only; dotCloud's `code` and `current` are in
    the slug's dotCloud home, not in the app's directory."""
    install_dist(platform, dist)
    platform.seed_runtime(runtime_archive)
    build = platform.build(FIXTURES / "home_init_top")
    assert build.returncode == 0, build
    assert "dotCloud's home is .dotcloud/home: code -> the app, current -> code" in plain(build.stdout)
    app = platform.app
    assert not {"code", "current"} & {p.name for p in app.iterdir()}
    assert os.readlink(app / ".dotcloud/home/current") == "code"
    web = platform.start()
    status, body = web.get()
    assert status == 200, body
    seen = json.loads(body)
    assert seen["code_is_stdlib"] and seen["pdb"], seen
    assert not seen["current_importable"], seen
    assert seen["app_paths"] == [str(app)], seen
    assert web.get("/static/hello.txt") == (200, b"hello static\n")
    assert web.stop() == 0, web.output


def test_raw_wsgi_app_with_an_approot_and_dotclouds_paths(platform, dist, runtime_archive):
    install_dist(platform, dist)
    platform.seed_runtime(runtime_archive)
    build = platform.build(FIXTURES / "home_approot")
    assert build.returncode == 0, build
    assert "current -> code/hellowsgi" in plain(build.stdout)
    app = platform.app
    web = platform.start()
    assert web.get() == (200, b"Hello World!\n")
    status, body = web.get("/where")
    assert status == 200, body
    assert json.loads(body) == {"cwd": str(app / "hellowsgi"), "app_paths": [str(app / "hellowsgi")],
                                "environment.json": True}
    # The app's nginx.conf: /home/dotcloud/current and /home/dotcloud/code as on dotCloud.
    assert web.get("/media/hello.txt") == (200, b"hello media\n")
    assert web.get("/readme.txt") == (200, (FIXTURES / "home_approot/README.txt").read_bytes())
    assert web.stop() == 0, web.output


def test_a_worker_service_runs_as_a_process_type_or_inside_the_web_process(platform, dist, runtime_archive):
    install_dist(platform, dist)
    platform.seed_runtime(runtime_archive)
    platform.config(REDIS_URL="redis://:pw@cache.example:6380")
    build = platform.build(FIXTURES / "services_worker")
    log = plain(build.stdout)
    assert build.returncode == 0, build
    assert "service 'workers' (python-worker) runs as the process type 'workers' (bin/dcweb workers)" in build.stderr
    assert "Procfile: web: bin/dcweb, workers: bin/dcweb workers" in log
    assert "Procfile declares types -> web, workers" in log
    app = platform.app
    assert (app / "Procfile").read_text() == "web: bin/dcweb\nworkers: bin/dcweb workers\n"

    worker = platform.start("workers")  # its own dyno: the processes only, no nginx, no uWSGI
    line = f"consumer | consumer of jobs for service workers in {app}, redis at cache.example"
    deadline = time.monotonic() + 60
    while line not in worker.output and worker.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert line in worker.output, worker.output
    assert "nginx |" not in worker.output and "uwsgi |" not in worker.output
    assert worker.stop() == 0, worker.output

    web = platform.start(DC_WORKERS_IN_WEB="1")  # dotCloud's single container: one web dyno runs both
    assert web.get() == (200, b"Hello from www\n")
    line = f"workers_consumer | consumer of jobs for service workers in {app}, redis at cache.example"
    deadline = time.monotonic() + 30
    while line not in web.output and time.monotonic() < deadline:
        time.sleep(0.2)
    assert line in web.output, web.output
    assert "DC_WORKERS_IN_WEB: running the worker services' processes here too: workers_consumer" in web.output
    assert web.stop() == 0, web.output


def test_dotclouds_django_tutorial_builds_and_serves(platform, dist, runtime_archive):
    """settings.py reads ~/environment.json at import, in collectstatic at build as at boot."""
    install_dist(platform, dist)
    platform.seed_runtime(runtime_archive)
    platform.config(DJANGO_SECRET_KEY="s3cret")
    build = platform.build(FIXTURES / "django_envjson")
    log = plain(build.stdout)
    assert build.returncode == 0, build
    assert "-----> $ python manage.py collectstatic --noinput" in log
    assert not list(platform.app.glob("environment.*"))  # the build's copy is gone; the boot writes its own
    web = platform.start()
    assert web.get() == (200, b"Hello from hellodjango (www)\n")
    assert web.get("/static/site.css") == (200, (FIXTURES / "django_envjson/static_src/site.css").read_bytes())
    assert web.stop() == 0, web.output


@pytest.mark.skipif(not AS_ROOT or shutil.which("unshare") is None, reason="mounts need root and unshare")
def test_cache_on_a_tmpfs_and_a_read_only_buildpack(platform, runtime_archive):
    """In a private mount namespace: the cache is a fresh tmpfs (another filesystem than the
    build), the buildpack a read-only bind mount of this checkout (root cannot write it either:
    `chmod -R a-w` would not stop root)."""
    bp_mount = platform.buildpacks / BUILDPACK
    bp_mount.mkdir()
    platform.new_deploy(FIXTURES / "sample")
    first = platform.paths()
    platform.new_deploy(FIXTURES / "sample")
    second = platform.paths()
    script = r"""
        mount -t tmpfs -o mode=0755,size=2g tmpfs "$CACHE"
        mkdir -p "$CACHE/python-dotcloud/runtimes"
        cp "$ARCHIVE" "$ARCHIVE.sha256" "$CACHE/python-dotcloud/runtimes/"
        mount --bind "$BP" "$BP_MOUNT"
        mount -o remount,bind,ro "$BP_MOUNT"
        if touch "$BP_MOUNT/.write-probe" 2>/dev/null; then echo "the bind mount is writable" >&2; exit 97; fi
        [[ "$(stat -f -c %T "$CACHE")" == tmpfs ]]
        env APP_PATH="$APP1" BUILD_PATH="$BUILD1" IMPORT_PATH="$IMPORT1" "$SIM" build
        echo "=== second deploy ==="
        env APP_PATH="$APP2" BUILD_PATH="$BUILD2" IMPORT_PATH="$IMPORT2" "$SIM" build
    """
    env = platform.env(CACHE=str(platform.cache), ARCHIVE=str(runtime_archive), BP=str(BP), BP_MOUNT=str(bp_mount),
                       SIM=str(SIM), APP1=first["APP_PATH"], BUILD1=first["BUILD_PATH"],
                       IMPORT1=first["IMPORT_PATH"], APP2=second["APP_PATH"], BUILD2=second["BUILD_PATH"],
                       IMPORT2=second["IMPORT_PATH"])
    res = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-euo", "pipefail", "-c", script],
                         env=env, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, f"exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    cold, warm = plain(res.stdout).split("=== second deploy ===")
    assert "-----> Installing dotCloud requirements" in cold
    assert "-----> Using cached dotCloud requirements (config/dcrequirements.txt unchanged)" in warm
    assert "-----> Using cached packages (requirements.txt unchanged)" in warm
    assert not any(work in warm for work in WORK), warm
    assert not list(platform.cache.iterdir()), "the tmpfs is gone with its namespace"
    web = platform.start()  # the slug holds copies, not links into the cache
    assert web.get()[0] == 200
    assert web.stop() == 0, web.output


def test_dist_tarball_holds_what_compile_needs_and_is_reproducible(dist, tmp_path):
    (tgz,) = dist.parent.glob("*.tgz")
    version = (BP / "VERSION").read_text().strip()
    assert tgz.name == f"buildpack-python-dotcloud-{version}.tgz"
    assert (dist / "VERSION").read_text().strip() == version
    assert (tgz.parent / f"{tgz.name}.sha256").read_text().split()[0] == sha256(tgz)
    with tarfile.open(tgz) as tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
    key = subprocess.run(["make", "-C", str(BP), "--no-print-directory", "nginx-key"], capture_output=True,
                         text=True, check=True).stdout.strip()
    for name in ("bin/compile", "bin/detect", "bin/release", "bin/dcweb", "Makefile", "mk/hooks.mk",
                 "lib/dcbuild/hooks.py", "config/profile.sh", "vendor/python/manifest.tsv", "CHANGELOG.md",
                 f"vendor/nginx/{key}/bin/nginx"):
        assert name in members, name
    assert members["bin/compile"].mode & 0o777 == 0o755
    assert {(m.uid, m.gid) for m in members.values()} == {(0, 0)}
    unwanted = ("tests/", "test/", "cache/", "dist/", ".git", ".venv", ".ci")
    assert not [n for n in members if n.startswith(unwanted) or "__pycache__" in n]
    again = tmp_path / "again"
    subprocess.run(["make", "-C", str(BP), "--no-print-directory", "dist", f"DIST_DIR={again}"], check=True,
                   capture_output=True)
    assert sha256(again / tgz.name) == sha256(tgz)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the simulator itself -------------------------------------------------------------------

FAKE_DETECT = """#!/bin/sh
pwd >> "$1/.detect-cwd"
echo Fake
"""
FAKE_COMPILE = """#!/bin/sh
echo "-----> Fake compile"
echo "   cwd=$(pwd) home=$HOME stack=$STACK user=$(id -un) env=$(ls "$3") MY_VAR=${MY_VAR:-unset}"
printf 'a last line without a newline'
"""
FAKE_RELEASE = """#!/bin/sh
cat <<'YAML'
---
config_vars:
  NUM: 5
  WORDS: "a b"
default_process_types:
  web: 'echo $MY_VAR $NUM a;b'
YAML
"""


def test_the_simulator_behaves_as_herokuish_was_seen_to(platform):
    fake = platform.buildpacks / "00_fake"
    (fake / "bin").mkdir(parents=True)
    for name, text in (("detect", FAKE_DETECT), ("compile", FAKE_COMPILE), ("release", FAKE_RELEASE)):
        (fake / "bin" / name).write_text(text)
        (fake / "bin" / name).chmod(0o755)
    source = platform.root / "fake-app"
    source.mkdir()
    (source / "app.txt").write_text("x\n")
    platform.config(MY_VAR="value")
    build = platform.build(source)
    log = plain(build.stdout)
    assert build.returncode == 0, build
    app, build_path = platform.app, platform.app.parent / "build"
    assert (app / ".detect-cwd").read_text() == "/\n/\n"  # detect twice, from /
    assert f"       cwd={build_path} home={app} stack=heroku-24 user={USER} env=MY_VAR MY_VAR=unset\n" in log
    assert "a last line without a newline" not in log  # herokuish's `read` loop drops it
    assert sorted((app / ".profile.d" / "00_config_vars.sh").read_text().splitlines()) == [
        'export NUM="%!s(int=5)"', 'export WORDS="a b"']  # Go's %s of a YAML int
    assert (app / "Procfile").read_text() == "web: echo $MY_VAR $NUM a;b\n"
    # herokuish names no buildpack here: it chose one inside a pipeline's subshell.
    assert "       Default types for  -> web\n" in log

    web = platform.start()
    assert web.proc.wait(30) == 0
    # `eval echo`: ';b' ran inside the substitution (and failed there); one command survived.
    assert web.output.endswith("\nvalue %!s(int=5) a\n"), web.output
    assert "b: command not found" in web.output

    (app / ".profile.d" / "50-broken.sh").write_text("false\necho 'never reached'\n")
    web = platform.start()
    assert web.proc.wait(30) == 1  # set -eo pipefail: one failing line aborts the boot, silently
    assert web.output == ""
