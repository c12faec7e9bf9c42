"""The web process for real: slugs built by bin/compile, started the way a platform starts
them (`.profile.d` sourced, then `bin/dcweb`), real nginx, uWSGI and supervisord, real HTTP on
127.0.0.1.

Slugs and TMPDIRs live in a world-traversable directory under /tmp, not in tmp_path: as root,
nginx's workers run as nobody and must reach the app's static files; and the uWSGI socket's
path must stay short. One build cache is shared by the whole run, behind a file lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import pty
import pwd
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import BP, Build, copy_fixture, free_port, kill_session, local_versions, run_compile, session_pids

pytestmark = pytest.mark.slow

SHUTDOWN_BUDGET = 10.0


# --- building --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def web_builder(shared_dir, runtimes):
    root = shared_dir / "web"
    root.mkdir(exist_ok=True)
    cache = root / "cache"
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if local_versions():
            # Offline, the default Python is the newest local one: share the run's archive.
            with contextlib.suppress(FileExistsError):
                runtimes.seed(cache, max(local_versions()))

    def build(fixture: str, dest: Path, prepare=None, **env: str) -> Build:
        copy_fixture(fixture, dest)
        if prepare is not None:
            prepare(dest)
        with open(root / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            build = run_compile(dest, cache, **env)
            return build

    return build


@pytest.fixture
def place(world_dir):
    """A fresh world-traversable directory under /tmp for one test's slug and TMPDIR."""
    return world_dir


@pytest.fixture
def slug(web_builder, place):
    def make(fixture: str, prepare=None, **env: str) -> Path:
        build = web_builder(fixture, place / "app", prepare, **env)
        assert build.returncode == 0, build
        assert "-----> Installing runtime configs" in build.stdout, build
        make.build = build
        return place / "app"

    return make


# --- running ---------------------------------------------------------------------------


class Web:
    """bin/dcweb in its own session, its stdout (and stderr) a pipe, file, socket or tty."""

    def __init__(self, app: Path, tmpdir: Path, stdout: str = "pipe", user: str | None = None, **env: str):
        self.app, self.port = app, free_port()
        tmpdir.mkdir(exist_ok=True)
        self.env = {"HOME": str(app), "PORT": str(self.port), "TMPDIR": str(tmpdir), "PATH": "/usr/bin:/bin",
                    "LANG": "C.UTF-8", **env}
        self.chunks: list[bytes] = []
        self.logfile = tmpdir / "web.log"
        reader = None
        if stdout == "pipe":
            reader, out = os.pipe()
        elif stdout == "socket":
            a, b = socket.socketpair()
            reader, out = a.detach(), b.detach()
        elif stdout == "tty":
            reader, out = pty.openpty()
        else:
            out = os.open(self.logfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        command = 'set -eo pipefail; for f in .profile.d/*.sh; do . "$f"; done; exec bin/dcweb'
        argv = ["bash", "-c", command]
        if user:
            argv = ["setpriv", f"--reuid={user}", f"--regid={pwd.getpwnam(user).pw_gid}", "--clear-groups", *argv]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, cwd=app, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=out, start_new_session=True)
        os.close(out)
        self.thread = None
        if reader is not None:
            self.thread = threading.Thread(target=self._read, args=(reader,), daemon=True)
            self.thread.start()

    def _read(self, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the tty's last writer is gone
                break
            if not data:
                break
            self.chunks.append(data)
        os.close(fd)

    @property
    def output(self) -> str:
        if self.thread is None:
            return self.logfile.read_text(errors="replace")
        return b"".join(self.chunks).decode(errors="replace")

    def request(self, path: str = "/", headers: dict[str, str] | None = None, timeout: float = 10.0):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"User-Agent": "dcweb-tests", **(headers or {})})
            res = conn.getresponse()
            return res.status, dict(res.getheaders()), res.read()
        finally:
            conn.close()

    def wait_status(self, path: str, status: int, timeout: float = 5.0):
        """The first answer on ``path`` with ``status``: nginx sees a file appear or go (the
        maintenance file) within a second (open_file_cache_valid), per worker."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self.request(path)
            if answer[0] == status or time.monotonic() > deadline:
                assert answer[0] == status, f"{path}: still {answer[0]} after {timeout}s, not {status}"
                return answer
            time.sleep(0.1)

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Seconds from start to the first 200 on /."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"dcweb exited with {self.proc.returncode}:\n{self.output}"
            try:
                if self.request("/", timeout=2)[0] == 200:
                    return time.monotonic() - self.started
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"no 200 on / within {timeout}s:\n{self.output}")

    def wait_for(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert time.monotonic() < deadline, f"{text!r} not in the output:\n{self.output}"
            time.sleep(0.05)

    def exit_status(self, timeout: float = 30.0) -> int:
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout}s:\n{self.output}") from None
        if self.thread is not None:
            self.thread.join(5)
        return status

    def stop(self) -> tuple[int, float]:
        """SIGTERM, as platforms do; the exit status and the seconds it took."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        status = self.proc.wait(30)
        return status, time.monotonic() - start

    def leftovers(self, timeout: float = 2.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while (pids := session_pids(self.proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        return [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode() for pid in pids]

    def kill(self) -> None:
        kill_session(self.proc)
        if self.thread is not None:
            self.thread.join(5)


@pytest.fixture
def web(place):
    started: list[Web] = []

    def start(app: Path, **kw) -> Web:
        w = Web(app, place / "t", **kw)
        started.append(w)
        return w

    yield start
    for w in started:
        w.kill()


def assert_clean_stop(w: Web) -> None:
    status, seconds = w.stop()
    assert status == 0, w.output
    assert seconds < SHUTDOWN_BUDGET, f"took {seconds:.1f}s\n{w.output}"
    assert w.leftovers() == []
    assert not list(Path(w.env["TMPDIR"]).glob("dcweb.*")), "the run directory was left behind"


# --- tests -------------------------------------------------------------------------------


def test_plain_app_serves_logs_and_stops_cleanly(slug, web):
    app = slug("web_plain")
    assert (app / "Procfile").read_text() == "web: bin/dcweb\n"
    w = web(app)
    ready = w.wait_ready()
    status, headers, body = w.request("/")
    assert (status, body) == (200, b"Hello from web_plain\n")
    assert headers["Server"] == "nginx"  # server_tokens off: no version
    w.wait_for('nginx | 127.0.0.1 (-) - - [')
    w.wait_for('"GET / HTTP/1.1" 200 21 "-" "dcweb-tests"')
    w.wait_for("dcweb | ready in ")
    (app / "maintenance").touch()
    w.wait_status("/", 503)
    (app / "maintenance").unlink()
    w.wait_status("/", 200)
    print(f"first 200 after {ready:.2f}s")
    assert_clean_stop(w)


def test_static_files_come_from_nginx_in_the_approot(slug, web):
    app = slug("web_static_approot")
    assert os.readlink(app / ".dotcloud/home/current") == "code/site"
    assert not (app / "current").exists() and not (app / "code").exists()  # nothing in the app's directory
    w = web(app)
    w.wait_ready()
    assert w.request("/wsgi.py")[2] == b"app: /wsgi.py\n"  # sources are never served as files
    assert w.request("/robots.txt")[2] == b"app: /robots.txt\n"  # no static/robots.txt: the app's
    expected = (app / "site/static/hello.txt").read_bytes()
    # Freeze uWSGI: whatever still answers is nginx.
    uwsgi = [pid for pid in session_pids(w.proc.pid) if b"uwsgi" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert uwsgi
    for pid in uwsgi:
        os.kill(pid, signal.SIGSTOP)
    try:
        status, headers, body = w.request("/static/hello.txt", timeout=5)
        assert (status, body) == (200, expected)
        assert "ETag" in headers and headers["Content-Type"] == "text/plain"
        status, headers, _ = w.request("/static/hello.txt", headers={"Accept-Encoding": "gzip"}, timeout=5)
        assert headers.get("Content-Encoding") == "gzip"
        assert w.request("/favicon.ico", timeout=5)[2] == b"\0\0\1\0"
        assert w.request("/static/missing.txt", timeout=5)[0] == 404
    finally:
        for pid in uwsgi:
            os.kill(pid, signal.SIGCONT)
    assert_clean_stop(w)


def test_app_nginx_conf_rules_apply_and_nginx_variables_survive(slug, web):
    app = slug("web_nginx_conf")
    w = web(app)
    w.wait_ready()
    status, headers, body = w.request("/echo/a%20b?x=1")
    assert (status, body) == (200, b"uri=/echo/a b args=x=1\n")
    assert headers["X-App-Nginx"] == "yes"
    assert w.request("/static/any.css")[2] == b"app static location: /static/any.css\n"
    assert_clean_stop(w)


def test_app_nginx_template_wins_and_keeps_its_own_variables(slug, web):
    template = (BP / "config/nginx.conf.template").read_text()
    template = template.replace("server_tokens off;", 'server_tokens off;\n    add_header X-Uri "$uri via ${PORT}";')

    def own_template(app: Path) -> None:
        (app / "config").mkdir()
        (app / "config/nginx.conf.template").write_text(template)

    app = slug("web_plain", own_template)
    kept = "       Keeping the app's own config/nginx.conf.template (not replaced by the buildpack's)"
    assert kept in slug.build.stdout
    w = web(app)
    w.wait_ready()
    assert w.request("/x")[1]["X-Uri"] == f"/x via {w.port}"
    assert_clean_stop(w)


def test_app_uwsgi_conf_applies_to_the_app_location(slug, web):
    app = slug("web_uwsgi_conf")
    w = web(app)
    w.wait_ready()
    start = time.monotonic()
    assert w.request("/slow")[0] == 504
    assert time.monotonic() - start < 3
    assert_clean_stop(w)


def test_app_supervisord_programs_run_and_log_to_the_web_log(slug, web):
    app = slug("web_worker")
    w = web(app)
    w.wait_ready()
    w.wait_for("worker | worker started")
    w.wait_for("worker | worker warning on stderr")
    assert (app / "worker.out").read_text().startswith("worker pid ")
    assert_clean_stop(w)
    assert "stopped: worker (exit status 0)" in w.output


def test_sigterm_to_every_process_at_once_like_heroku(slug, web):
    app = slug("web_worker")
    w = web(app, DC_VERBOSE="1")  # uWSGI's last words too
    w.wait_ready()
    w.wait_for("worker | worker started")
    # DC_VERBOSE=1: uWSGI's banner and every supervisord line, without supervisord's timestamps.
    assert "uwsgi | *** Starting uWSGI " in w.output and "supervisord | INFO spawned: 'uwsgi' with pid " in w.output
    start = time.monotonic()
    for pid in session_pids(w.proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    assert w.exit_status() == 0, w.output
    assert time.monotonic() - start < SHUTDOWN_BUDGET
    assert w.leftovers() == []
    assert "uwsgi | " in w.output.split("received SIGTERM")[-1]  # the listener outlived the signal
    assert "goodbye to uWSGI" in w.output


START_LOG = [
    r"dcweb \| Python 3\.\d+\.\d+, uWSGI 2\.\d+\.\d+, nginx 1\.\d+\.\d+, port \d+",
    r"dcweb \| uWSGI processes: 2 \(WEB_CONCURRENCY=2\)",
    r"dcweb \| the app's programs: worker \(current/supervisord\.conf\)",
    r"dcweb \| ready in \d+ ms \(GET / answered 200\)",
    r'nginx \| 127\.0\.0\.1 \(-\) - - \[[^]]+\] "GET / HTTP/1\.1" 200 21 "-" "dcweb-probe"',
]


def titles(w: Web) -> dict[int, tuple[bytes, bytes]]:
    """pid -> (command line as ps -f shows it, name as top shows it), for the web process's processes."""
    found = {}
    for pid in session_pids(w.proc.pid):
        with contextlib.suppress(OSError):
            found[pid] = (Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").replace(b"\0", b" "),
                          Path(f"/proc/{pid}/comm").read_bytes().strip())
    return found


def test_the_start_and_stop_logs_are_short_and_processes_have_titles(slug, web):
    app = slug("web_worker")
    w = web(app, WEB_CONCURRENCY="2")
    w.wait_for('"dcweb-probe"')  # the probe's line in nginx's access log: the last of the start's
    w.wait_for("worker | worker warning on stderr")
    time.sleep(1.5)  # anything late would show now
    lines = w.output.splitlines()
    ours = [line for line in lines if not line.startswith("worker | ")]  # the app's own lines are its own
    assert len(ours) == len(START_LOG), w.output
    for pattern in START_LOG:
        assert [line for line in ours if re.fullmatch(pattern, line)], f"{pattern}\n{w.output}"
    assert sorted(line for line in lines if line.startswith("worker | ")) == [
        "worker | worker started", "worker | worker warning on stderr"]

    table = titles(w)
    assert table[w.proc.pid] == (b"dcweb", b"dcweb")
    named = sorted(title for title in table.values() if title[0].startswith(b"uwsgi"))
    assert named == [(b"uwsgi master", b"uwsgi master"), (b"uwsgi worker 1", b"uwsgi worker 1"),
                     (b"uwsgi worker 2", b"uwsgi worker 2")], table
    assert sum(title[0] == b"nginx: worker process" for title in table.values()) == 2, table

    assert w.stop()[0] == 0
    assert w.exit_status() == 0  # and the log read to its end
    # On a loaded machine uWSGI may outlast its 2 s (config/supervisord.conf): supervisord then says
    # it kills it, a warning that applies.
    stop = [line for line in w.output.splitlines()[len(lines):]
            if not line.startswith("supervisord | WARN killing 'uwsgi' (")]
    assert sorted(stop) == sorted([
        "supervisord | WARN received SIGTERM indicating exit request",
        "supervisord | stopped: worker (exit status 0)",
        "supervisord | stopped: nginx (exit status 0)",
        "supervisord | stopped: uwsgi (exit status 0)",
        "supervisord | stopped: dcweb (exit status 0)",
        "dcweb | exiting with status 0",
    ]), w.output
    assert stop[-1] == "dcweb | exiting with status 0"


def test_broken_app_shows_its_traceback_and_exits_non_zero(slug, web):
    app = slug("web_import_error")
    w = web(app)
    assert w.exit_status() == 1, w.output
    assert "Traceback (most recent call last)" in w.output
    assert "uwsgi | RuntimeError: boom from web_import_error" in w.output
    assert "dcweb | uwsgi could not be started (FATAL): stopping the web process" in w.output
    assert w.leftovers() == []


def test_nginx_config_error_is_shown_and_exits_non_zero(slug, web):
    app = slug("web_plain")
    (app / "nginx.conf").write_text("location / { return 200; }\n")  # clashes with ours
    w = web(app)
    assert w.exit_status() == 1, w.output
    assert 'nginx | ' in w.output and 'duplicate location "/"' in w.output
    assert "dcweb | warning: current/nginx.conf:1 defines `location /`, which the buildpack" in w.output
    assert "dcweb | nginx could not be started (FATAL)" in w.output
    assert w.leftovers() == []


def test_moved_slug_still_serves(slug, web, place):
    app = slug("web_static_approot")
    moved = app.rename(place / "elsewhere")
    w = web(moved)
    w.wait_ready()
    assert w.request("/static/hello.txt")[2] == (moved / "site/static/hello.txt").read_bytes()
    link = os.readlink(moved / ".dotcloud/home/current")
    assert link == "code/site" and os.readlink(moved / ".dotcloud/home/code") == "../.."  # relative: moves
    assert_clean_stop(w)


@pytest.mark.parametrize("stdout", ["pipe", "file", "socket", "tty"])
def test_logs_reach_any_kind_of_stdout(slug, web, stdout):
    app = slug("web_plain")
    w = web(app, stdout=stdout)
    w.wait_ready()
    w.wait_for('"GET / HTTP/1.1" 200')
    assert_clean_stop(w)
    assert "ENXIO" not in w.output and "spawnerr" not in w.output


@pytest.mark.skipif(os.geteuid() != 0, reason="the root case needs root")
def test_as_root_nginx_workers_are_nobody_and_the_socket_is_not_world_writable(slug, web):
    app = slug("web_plain")
    w = web(app)
    w.wait_ready()
    (run_dir,) = Path(w.env["TMPDIR"]).glob("dcweb.*")
    nobody = pwd.getpwnam("nobody")
    st = run_dir.stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o710, 0, nobody.pw_gid)
    sock = (run_dir / "uwsgi.sock").stat()
    assert (sock.st_mode & 0o777, sock.st_uid, sock.st_gid) == (0o660, 0, nobody.pw_gid)
    workers = [pid for pid in session_pids(w.proc.pid)
               if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"nginx: worker")]
    assert workers
    for pid in workers:
        status = Path(f"/proc/{pid}/status").read_text()
        assert f"\nUid:\t{nobody.pw_uid}\t" in status
    assert "CRIT" not in w.output  # user=root is said on purpose; the control socket has a password
    assert "warning" not in w.output
    assert_clean_stop(w)


@pytest.mark.skipif(os.geteuid() != 0, reason="the root case needs root")
def test_as_root_a_tmpdir_the_workers_cannot_enter_gets_a_run_directory_they_can(slug, web, place):
    app = slug("web_plain")
    closed = place / "closed"  # as `mktemp -d` makes it
    (closed / "tmp").mkdir(parents=True)
    closed.chmod(0o700)
    w = web(app, TMPDIR=str(closed / "tmp"))
    w.wait_ready()
    assert w.request("/")[0:3:2] == (200, b"Hello from web_plain\n")
    note = f"dcweb | TMPDIR={closed}/tmp: nginx's workers (nobody) cannot enter {closed}; the run directory is under"
    assert note in w.output
    run_dir = Path(re.search(r"the run directory is under /tmp instead: (/tmp/dcweb\.\S+)", w.output).group(1))
    assert (run_dir / "uwsgi.sock").is_socket()
    assert_clean_stop(w)
    assert not run_dir.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the root case needs root")
def test_as_root_an_app_the_workers_cannot_enter_stops_at_once_or_runs_with_root_workers(slug, web, place):
    built = slug("web_static_approot")
    closed = place / "closed"  # as /root is
    closed.mkdir(mode=0o700)
    app = built.rename(closed / "app")
    w = web(app)
    started = time.monotonic()
    assert w.exit_status(timeout=10) == 1, w.output
    assert time.monotonic() - started < 5
    assert w.output.splitlines()[-1] == (
        f"dcweb | error: nginx's workers run as nobody and cannot enter {closed}, on the way to the app"
        f" ({app}/site): every request would fail. Either let them through: chmod o+x {closed} (they can then"
        " enter it, not list it), or run them as root: set NGINX_USER=root"
    )
    assert "supervisord" not in w.output and w.leftovers() == []

    w = web(app, NGINX_USER="root")
    w.wait_ready()
    assert w.request("/static/hello.txt")[2] == (app / "site/static/hello.txt").read_bytes()
    assert "dcweb | nginx's workers run as root (NGINX_USER)" in w.output
    workers = [pid for pid, title in titles(w).items() if title[0] == b"nginx: worker process"]
    assert workers and all("\nUid:\t0\t" in Path(f"/proc/{pid}/status").read_text() for pid in workers)
    assert_clean_stop(w)

    closed.chmod(0o711)  # the first fix
    w = web(app)
    w.wait_ready()
    assert w.request("/static/hello.txt")[2] == (app / "site/static/hello.txt").read_bytes()
    assert_clean_stop(w)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_unprivileged_user_serves_app_and_static_files(slug, web, place):
    built = slug("web_static_approot")
    app = place / "nobody-app"
    shutil.copytree(built, app, symlinks=True)  # new inodes: the cache's hard links stay root's
    subprocess.run(["chown", "-R", "nobody:", str(app)], check=True)
    (place / "t").mkdir()
    subprocess.run(["chown", "nobody:", str(place / "t")], check=True)
    w = web(app, user="nobody")
    w.wait_ready()
    assert w.request("/static/hello.txt")[2] == (app / "site/static/hello.txt").read_bytes()
    (run_dir,) = Path(w.env["TMPDIR"]).glob("dcweb.*")
    assert run_dir.stat().st_mode & 0o777 == 0o700
    assert_clean_stop(w)
