"""Faults at run time, against a running slug: workers and masters killed, a program that cannot
start again, SIGTERM with a request in flight, a hung app, a body over the limit.

One slug (test/fixtures/faults_app) is compiled once per run (``built_slug``), copied for each
xdist worker that runs these tests, and started by each test with the helpers of test_web_serve
(bin/dcweb in its own session, real nginx, uWSGI and supervisord, real HTTP on 127.0.0.1).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import test_web_serve as serve

from conftest import once
from dcruntime import limits, stale
from dcruntime.dotcloud import BootError

place, web_builder, web = serve.place, serve.web_builder, serve.web
# Meant to keep these tests on one worker, but pytest-xdist 3.8's loadgroup does not group under
# pytest 9.2 (pytest-dev/pytest-xdist#1386): built_slug makes that only a matter of speed.
faults = pytest.mark.xdist_group("faults")


def built_slug(web_builder, shared_dir: Path, fixture: str, prepare=None) -> Path:
    """``fixture`` compiled once per run (all xdist workers of it), copied for this module.

    The copy lives in a world-traversable directory under /tmp (as root, nginx's workers run as
    nobody); the caller removes ``result.parent``. The slug is relocatable, so a copy serves.
    """
    own = Path(tempfile.mkdtemp(prefix="dcwf-", dir="/tmp"))
    own.chmod(0o755)
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:  # a single process: nothing to share
        build = web_builder(fixture, own / "app", prepare)
        assert build.returncode == 0, build
        return own / "app"
    root = shared_dir / "slugs"
    built = root / f"{fixture}-{run}"
    mark = root / f"{fixture}-{run}.ok"

    def build_it() -> None:
        shutil.rmtree(built, ignore_errors=True)
        build = web_builder(fixture, built, prepare)
        assert build.returncode == 0, build
        mark.touch()

    once(root / f"{fixture}.lock", mark.exists, build_it)
    subprocess.run(["cp", "-a", str(built), str(own / "app")], check=True)
    return own / "app"


@pytest.fixture(scope="module")
def app(web_builder, shared_dir):
    slug = built_slug(web_builder, shared_dir, "faults_app")
    yield slug
    shutil.rmtree(slug.parent, ignore_errors=True)


def procs(w: serve.Web) -> dict[int, tuple[int, int, str]]:
    """The web process's live processes: pid -> (parent pid, process group, command line)."""
    out = {}
    for pid in serve.session_pids(w.proc.pid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        out[pid] = (int(fields[1]), int(fields[2]), cmdline)
    return out


def uwsgi_master(w: serve.Web) -> tuple[int, list[int]]:
    """uWSGI's master (supervisord's child) and its workers."""
    table = procs(w)
    uwsgi = {pid: row for pid, row in table.items() if row[2].startswith(("uwsgi master", "uwsgi worker "))}
    (master,) = [pid for pid, row in uwsgi.items() if row[0] not in uwsgi]
    return master, sorted(pid for pid, row in uwsgi.items() if row[0] == master)


def nginx_master(w: serve.Web) -> tuple[int, list[int]]:
    table = procs(w)
    (master,) = [pid for pid, row in table.items() if row[2].startswith("nginx: master")]
    return master, sorted(pid for pid, row in table.items() if row[0] == master)


def until(check, what: str, w: serve.Web, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except (OSError, http.client.HTTPException, ValueError):
            result = None
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s\n{w.output}"
        time.sleep(0.1)


def served_by(w: serve.Web) -> int | None:
    """The uWSGI worker pid that answered /, None if the answer was not a 200."""
    status, _, body = w.request("/", timeout=5)
    return int(body.split()[-1]) if status == 200 else None


def post(w: serve.Web, path: str, size: int) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", w.port, timeout=20)
    try:
        conn.request("POST", path, body=b"x" * size, headers={"Content-Type": "application/octet-stream"})
        res = conn.getresponse()
        return res.status, dict(res.getheaders()), res.read()
    finally:
        conn.close()


# --- workers and masters killed --------------------------------------------------------------


@pytest.mark.slow
@faults
def test_a_killed_uwsgi_worker_is_replaced_and_requests_keep_succeeding(app, web):
    w = web(app, WEB_CONCURRENCY="2")
    w.wait_ready()
    master, workers = uwsgi_master(w)
    assert len(workers) == 2
    # One client keeps asking meanwhile: only a request the killed worker was serving may fail.
    stop, answers = threading.Event(), []

    def ask() -> None:
        while not stop.is_set():
            try:
                answers.append(served_by(w))
            except (OSError, http.client.HTTPException):
                answers.append(None)

    client = threading.Thread(target=ask)
    client.start()
    try:
        until(lambda: len(answers) > 20, "answers before the kill", w)
        os.kill(workers[0], signal.SIGKILL)
        w.wait_for(f"(pid: {workers[0]}) died, killed by signal 9 :( trying respawn")
        w.wait_for("Respawned uWSGI worker ")
        seen = len(answers)
        until(lambda: len(answers) > seen + 20, "answers after the respawn", w)
    finally:
        stop.set()
        client.join(10)
    assert answers.count(None) <= 1, w.output
    now_master, now_workers = uwsgi_master(w)
    assert now_master == master and len(now_workers) == 2 and workers[0] not in now_workers
    answered = {served_by(w) for _ in range(40)}
    assert None not in answered, w.output
    assert answered <= set(now_workers)
    serve.assert_clean_stop(w)


@pytest.mark.slow
@faults
def test_a_killed_uwsgi_master_is_restarted_by_supervisord(app, web):
    w = web(app, WEB_CONCURRENCY="2")
    w.wait_ready()
    master, workers = uwsgi_master(w)
    os.kill(master, signal.SIGKILL)
    w.wait_for("exited: uwsgi (terminated by SIGKILL; not expected)")
    pid = until(lambda: (p := served_by(w)) not in workers and p, "a new uWSGI worker answers", w)
    # The old workers noticed their master was gone and left.
    until(lambda: not [p for p, row in procs(w).items() if row[1] == master], "the old workers are gone", w)
    new_master, new_workers = uwsgi_master(w)
    assert new_master != master and pid in new_workers
    w.wait_for("success: uwsgi entered RUNNING state")
    serve.assert_clean_stop(w)


@pytest.mark.slow
@faults
def test_a_killed_nginx_master_is_restarted_and_its_workers_do_not_hold_the_port(app, web):
    w = web(app)
    w.wait_ready()
    master, workers = nginx_master(w)
    assert workers
    os.kill(master, signal.SIGKILL)
    w.wait_for("exited: nginx (terminated by SIGKILL; not expected)")
    # The orphaned workers still listen on $PORT; the new nginx_start stops them, then binds.
    w.wait_for(f"nginx | nginx master {master} is gone but left {len(workers)} process(es) running: stopping them")
    until(lambda: nginx_master(w)[0] != master and w.request("/", timeout=5)[0] == 200, "a new nginx answers", w)
    assert not [p for p, row in procs(w).items() if row[1] == master], "the old nginx workers are still there"
    assert "nginx could not be started" not in w.output and "Address already in use" not in w.output
    serve.assert_clean_stop(w)


@pytest.mark.slow
@faults
def test_uwsgi_that_cannot_start_again_stops_the_web_process(app, web):
    """Not a dyno that answers 502 forever: the platform sees the exit and restarts it."""
    w = web(app)
    w.wait_ready()
    source = app / "wsgi.py"
    good = source.read_text()
    try:
        source.unlink()  # the slug's files may be hard links into the build cache: never write through
        source.write_text("raise RuntimeError('faults_app cannot start any more')\n")
        master, _ = uwsgi_master(w)
        os.kill(master, signal.SIGKILL)
        assert w.exit_status() == 1, w.output
    finally:
        source.unlink()
        source.write_text(good)
    out = w.output
    assert "uwsgi | RuntimeError: faults_app cannot start any more" in out
    assert "gave up: uwsgi entered FATAL state, too many start retries too quickly" in out
    assert "dcweb | uwsgi could not be started (FATAL): stopping the web process" in out
    assert "dcweb | exiting with status 1: uwsgi could not be started" in out
    assert w.leftovers() == []


def test_stale_stops_only_the_group_of_a_dead_master(tmp_path):
    """dcruntime.stale, which nginx_start and uwsgi_start run when a pid file is left behind."""
    leader = subprocess.Popen(["bash", "-c", "sleep 300 & echo $!"], stdout=subprocess.PIPE, text=True,
                              process_group=0)
    orphan = int(leader.stdout.readline())
    assert leader.wait(10) == 0  # the "master" is gone; its group lives on in the orphan
    pidfile = tmp_path / "master.pid"
    try:
        pidfile.write_text(f"{os.getpid()}\n")  # a live process: not a dead master's group
        assert stale.stop_group(pidfile, "test") == []
        pidfile.write_text("garbage\n")
        assert stale.stop_group(pidfile, "test") == []
        pidfile.write_text(f"{leader.pid}\n")
        assert stale.stop_group(pidfile, "test", grace=5) == [orphan]
        assert stale.members(leader.pid, os.getsid(0)) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(orphan, signal.SIGKILL)


# --- SIGTERM with a request in flight -----------------------------------------------------


@pytest.mark.slow
@faults
def test_sigterm_lets_the_request_in_flight_finish_and_refuses_new_connections(app, web):
    release = app / "release"
    release.unlink(missing_ok=True)
    w = web(app, WEB_CONCURRENCY="2")
    w.wait_ready()
    result: list = []
    slow_request = threading.Thread(target=lambda: result.append(w.request("/slow", timeout=30)), daemon=True)
    try:
        slow_request.start()
        w.wait_for("slow request started in worker")
        stopped = time.monotonic()
        w.proc.send_signal(signal.SIGTERM)

        def refused() -> bool:
            try:
                socket.create_connection(("127.0.0.1", w.port), timeout=2).close()
            except ConnectionRefusedError:
                return True
            return False

        until(refused, "new connections are refused", w, timeout=5)
        assert slow_request.is_alive(), f"the request did not wait for ./release: {result}"
        release.touch()
        slow_request.join(20)
    finally:
        release.touch()
        slow_request.join(20)
        release.unlink()
    assert len(result) == 1 and result[0][0::2] == (200, b"slow request done\n"), f"{result}\n{w.output}"
    assert w.exit_status(10) == 0, w.output
    assert time.monotonic() - stopped < serve.SHUTDOWN_BUDGET, w.output
    assert w.leftovers() == []
    assert not list(Path(w.env["TMPDIR"]).glob("dcweb.*")), "the run directory was left behind"


@pytest.mark.slow
@faults
def test_sigterm_with_a_stuck_request_still_stops_within_the_budget(app, web):
    """nginx gives a request in flight 3 s, uWSGI 2 s more: then they are cut, not waited for."""
    w = web(app, WEB_CONCURRENCY="2")
    w.wait_ready()
    outcome: list = []

    def stuck() -> None:
        try:
            outcome.append(w.request("/hang", timeout=30)[0])
        except (OSError, http.client.HTTPException) as exc:
            outcome.append(type(exc).__name__)

    client = threading.Thread(target=stuck, daemon=True)
    client.start()
    w.wait_for("hanging in worker")
    stopped = time.monotonic()
    w.proc.send_signal(signal.SIGTERM)
    assert w.exit_status(30) == 0, w.output
    assert time.monotonic() - stopped < serve.SHUTDOWN_BUDGET, w.output
    client.join(10)
    assert outcome and outcome[0] != 200, outcome  # closed on the client, which is not left hanging
    assert "stopped: nginx (exit status 0)" in w.output
    assert w.leftovers() == []


# --- a hung app ---------------------------------------------------------------------------


@pytest.mark.slow
@faults
def test_a_hung_request_gets_504_and_harakiri_frees_the_worker(app, web):
    w = web(app, UWSGI_HARAKIRI="2", WEB_CONCURRENCY="1")
    w.wait_ready()
    _, (worker,) = uwsgi_master(w)
    status, headers, body = w.request("/hang", timeout=20)  # a hung connection would time out here
    assert status == 504, w.output
    assert headers["Server"] == "nginx" and b"nginx/" not in body
    w.wait_for(f"HARAKIRI ON WORKER 1 (pid: {worker}", timeout=10)
    w.wait_for("Respawned uWSGI worker 1 (new pid: ", timeout=10)
    # The only worker was freed: the next request is answered (not 504) by its replacement.
    assert served_by(w) not in (None, worker), w.output
    serve.assert_clean_stop(w)


@pytest.mark.slow
@faults
def test_harakiri_is_60_seconds_by_default_and_nginx_gives_up_just_before(app, web):
    w = web(app)
    w.wait_ready()
    (run_dir,) = Path(w.env["TMPDIR"]).glob("dcweb.*")
    assert "harakiri = 60\n" in (run_dir / "uwsgi.ini").read_text()
    assert "    uwsgi_read_timeout 59500ms;\n" in (run_dir / "nginx.conf").read_text()
    serve.assert_clean_stop(w)


def test_limits_follow_harakiri_and_check_the_body_size():
    assert limits.template_vars({"harakiri": "60"}, {}) == {
        "DC_CLIENT_MAX_BODY_SIZE": "1m", "DC_UWSGI_READ_TIMEOUT": "59500ms"}
    # UWSGI_HARAKIRI beats the ini file's (dotcloud.yml's or the default); 0 turns harakiri off.
    assert limits.template_vars({"harakiri": "30"}, {"UWSGI_HARAKIRI": "2"})["DC_UWSGI_READ_TIMEOUT"] == "1500ms"
    assert limits.template_vars({}, {"UWSGI_HARAKIRI": "0"})["DC_UWSGI_READ_TIMEOUT"] == "60s"
    assert limits.template_vars({}, {})["DC_UWSGI_READ_TIMEOUT"] == "60s"
    for size in ("0", "512k", "20M", "1g", "1048576"):
        assert limits.body_size({"NGINX_CLIENT_MAX_BODY_SIZE": size}) == size
    for bad in ("lots", "1.5m", "-1", "1m;", "1 m", "10t"):
        with pytest.raises(BootError, match=r"NGINX_CLIENT_MAX_BODY_SIZE is .*: use a size nginx understands"):
            limits.body_size({"NGINX_CLIENT_MAX_BODY_SIZE": bad})
    with pytest.raises(BootError, match="UWSGI_HARAKIRI is 'soon': it must be a whole number of seconds"):
        limits.template_vars({}, {"UWSGI_HARAKIRI": "soon"})


# --- request bodies -----------------------------------------------------------------------


@pytest.mark.slow
@faults
def test_a_body_over_the_limit_gets_413_and_the_limit_is_configurable(app, web):
    w = web(app)
    w.wait_ready()
    assert post(w, "/upload", 1000 * 1000)[0::2] == (200, b"received 1000000 bytes\n")
    status, headers, body = post(w, "/upload", 2 * 1024 * 1024)
    assert status == 413 and headers["Server"] == "nginx" and b"nginx/" not in body
    serve.assert_clean_stop(w)
    assert "POST /upload HTTP/1.1\" 413" in w.output and "received 2097152" not in w.output

    w = web(app, NGINX_CLIENT_MAX_BODY_SIZE="4m")
    w.wait_ready()
    assert post(w, "/upload", 2 * 1024 * 1024)[0::2] == (200, b"received 2097152 bytes\n")
    assert post(w, "/upload", 5 * 1024 * 1024)[0] == 413
    serve.assert_clean_stop(w)

    w = web(app, NGINX_CLIENT_MAX_BODY_SIZE="lots")
    assert w.exit_status() == 1, w.output
    assert "dcweb | error: NGINX_CLIENT_MAX_BODY_SIZE is 'lots': use a size nginx understands" in w.output
    assert "Traceback" not in w.output
