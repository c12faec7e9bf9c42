"""The default uWSGI process count (WEB_CONCURRENCY) from cgroup v1 and v2 files, and the log relay.

The first part reads fake cgroup trees (DC_CGROUP_ROOT); the second boots real slugs with a fake
tree and counts the uWSGI workers that really started.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path

import pytest
import test_web_serve as serve

from dcruntime import concurrency, uwsgiconf
from dcruntime import web as runtime_web

# The web-serving fixtures of test_web_serve (pytest finds fixtures by name in the module).
place, web_builder, slug, web = serve.place, serve.web_builder, serve.slug, serve.web

MB = 1024 * 1024
CORES = len(os.sched_getaffinity(0))


def cgroup(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return root


def v2(root: Path, memory: str = "max", cpu: str = "max 100000") -> Path:
    return cgroup(root, {"cgroup.controllers": "cpu memory", "memory.max": memory, "cpu.max": cpu})


def v1(root: Path, memory: str = "9223372036854771712", quota: str = "-1") -> Path:
    return cgroup(root, {"memory/memory.limit_in_bytes": memory, "cpu/cpu.cfs_quota_us": quota,
                         "cpu/cpu.cfs_period_us": "100000"})


# --- reading the limits -----------------------------------------------------------------------


@pytest.mark.parametrize(("make", "cores", "memory", "workers", "text"), [
    (lambda r: v2(r, str(512 * MB), "200000 100000"), min(CORES, 2), 512 * MB, 2,
     f"{min(CORES, 2)} core{'s' if min(CORES, 2) > 1 else ''}, 512 MB memory limit"),
    (lambda r: v2(r), CORES, None, max(2, CORES), f"{CORES} core{'s' if CORES > 1 else ''}, no memory limit"),
    (lambda r: v2(r, str(256 * MB), "150000 100000"), min(CORES, 2), 256 * MB, 1, "256 MB memory limit"),
    (lambda r: v1(r, str(1024 * MB), "50000"), 1, 1024 * MB, 2, "1 core, 1024 MB memory limit"),
    (lambda r: v1(r), CORES, None, max(2, CORES), "no memory limit"),
    (lambda r: v1(r, str(300 * MB)), CORES, 300 * MB, 1, "300 MB memory limit"),
    (lambda r: r, CORES, None, max(2, CORES), "no memory limit"),  # no cgroup files at all
])
def test_limits_from_fake_cgroups(tmp_path, make, cores, memory, workers, text):
    root = make(tmp_path / "cg")
    root.mkdir(exist_ok=True)
    found = concurrency.limits({"DC_CGROUP_ROOT": str(root)})
    assert (found.cores, found.memory, found.workers()) == (cores, memory, workers)
    assert text in found.describe()


def test_a_nested_cgroup_and_its_parents_give_the_lowest_limit(tmp_path):
    # Without a cgroup namespace, /proc/self/cgroup names the process's own group; a parent's
    # limit may be the lower one.
    root = v1(tmp_path, memory="9223372036854771712")
    cgroup(root, {"memory/svc/memory.limit_in_bytes": str(2048 * MB), "memory/svc/app/memory.limit_in_bytes": "max"})
    assert concurrency.memory_limit(root, {"memory": "/svc/app"}) == 2048 * MB
    cgroup(root, {"svc/memory.max": str(768 * MB), "svc/app/cpu.max": "100000 100000"})
    assert concurrency.memory_limit(root, {"": "/svc/app"}) == 768 * MB
    assert concurrency.cpu_quota(root, {"": "/svc/app"}) == 1
    assert concurrency.memory_limit(root, {"": "/elsewhere"}) is None


def test_garbage_in_cgroup_files_means_no_limit(tmp_path):
    root = cgroup(tmp_path, {"memory.max": "lots", "cpu.max": "100000", "memory/memory.limit_in_bytes": "-1"})
    found = concurrency.limits({"DC_CGROUP_ROOT": str(root)})
    assert (found.cores, found.memory) == (CORES, None)


def test_processes_precedence_and_the_start_line(tmp_path):
    env = {"DC_CGROUP_ROOT": str(v2(tmp_path, str(256 * MB)))}
    config = {"uwsgi_processes": 5}
    assert uwsgiconf.options({}, env)["processes"] == "1"
    assert uwsgiconf.processes_note({}, env, {"processes": "1"}).endswith("(WEB_CONCURRENCY=1 by default:"
                                                                          f" {CORES} core{'s' if CORES > 1 else ''},"
                                                                          " 256 MB memory limit)")
    assert uwsgiconf.options(config, env)["processes"] == "5"
    assert uwsgiconf.processes_note(config, env, {"processes": "5"}) == (
        "uWSGI processes: 5 (dotcloud.yml config.uwsgi_processes)")
    env["WEB_CONCURRENCY"] = "3"
    assert uwsgiconf.options(config, env)["processes"] == "3"
    assert uwsgiconf.processes_note(config, env, {"processes": "3"}) == "uWSGI processes: 3 (WEB_CONCURRENCY=3)"
    env["UWSGI_PROCESSES"] = "7"
    assert "processes" not in uwsgiconf.options(config, env)
    assert uwsgiconf.processes_note(config, env, {}) == "uWSGI processes: 7 (UWSGI_PROCESSES)"


# --- the relay --------------------------------------------------------------------------------


def test_relay_prefixes_an_extra_fifo_and_many_lines_per_read(tmp_path):
    out_r, out_w = os.pipe()
    main_r, main_w = os.pipe()
    hub = runtime_web.LogHub(tmp_path / "log", ["nginx", "uwsgi"], out_fd=out_w,
                             extra={tmp_path / "access.fifo": "nginx"})
    access = os.open(tmp_path / "access.fifo", os.O_WRONLY)
    many = b"".join(b"GET /%d 200\n" % n for n in range(300))
    os.write(access, many + b"GET /last")
    os.write(access, b" 200\nunfinished")
    os.close(main_w)
    hub.run(main_r)
    hub.close()
    os.close(access)
    os.close(out_w)
    with os.fdopen(out_r, "rb") as f:
        lines = f.read().split(b"\n")
    assert lines[:300] == [b"nginx | GET /%d 200" % n for n in range(300)]
    assert lines[300:] == [b"nginx | GET /last 200", b"nginx | unfinished", b""]


# --- real slugs ---------------------------------------------------------------------------------


def report_app(app: Path) -> None:
    (app / "wsgi.py").write_text(
        "import os\nimport uwsgi\n\n\n"
        "def application(environ, start_response):\n"
        "    body = f\"{os.environ.get('WEB_CONCURRENCY')} {uwsgi.numproc}\\n\".encode()\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [body]\n"
    )


def workers_started(w, count: int) -> set[int]:
    """The numbers of the uWSGI workers running, from their process titles (`uwsgi worker N`)."""
    deadline = time.monotonic() + 10
    while True:
        titles = set()
        for pid in serve.session_pids(w.proc.pid):
            with contextlib.suppress(OSError):
                titles.add(Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0"))
        found = {int(t.split()[-1]) for t in titles if re.fullmatch(rb"uwsgi worker \d+", t)}
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.mark.slow
def test_a_slug_sizes_uwsgi_from_the_container_limits(slug, web, place):
    app = slug("web_plain", report_app)

    # cgroup v2, 256 MB: one worker, said at start, and the app's programs see WEB_CONCURRENCY=1.
    w = web(app, DC_CGROUP_ROOT=str(v2(place / "cg2", str(256 * MB), "max 100000")))
    w.wait_ready()
    assert w.request("/")[2] == b"1 1\n"
    w.wait_for("dcweb | uWSGI processes: 1 (WEB_CONCURRENCY=1 by default: ")
    assert "256 MB memory limit)" in w.output
    w.wait_for('"GET / HTTP/1.1" 200')  # nginx's access log, through its own FIFO
    assert workers_started(w, 1) == {1}
    assert "uwsgi | [pid: " not in w.output  # no request log from uWSGI by default
    serve.assert_clean_stop(w)

    # cgroup v1, half a CPU and 512 MB: two workers; uWSGI's request log switched back on.
    w = web(app, DC_CGROUP_ROOT=str(v1(place / "cg1", str(512 * MB), "50000")), UWSGI_DISABLE_LOGGING="false")
    w.wait_ready()
    assert w.request("/")[2] == b"2 2\n"
    w.wait_for("dcweb | uWSGI processes: 2 (WEB_CONCURRENCY=2 by default: 1 core, 512 MB memory limit)")
    w.wait_for("uwsgi | [pid: ")
    assert workers_started(w, 2) == {1, 2}
    serve.assert_clean_stop(w)

    # UWSGI_PROCESSES beats WEB_CONCURRENCY, which the app still sees as set.
    w = web(app, DC_CGROUP_ROOT=str(place / "cg2"), WEB_CONCURRENCY="2", UWSGI_PROCESSES="3")
    w.wait_ready()
    assert w.request("/")[2] == b"2 3\n"
    assert "dcweb | uWSGI processes: 3 (UWSGI_PROCESSES)" in w.output
    assert workers_started(w, 3) == {1, 2, 3}
    serve.assert_clean_stop(w)
