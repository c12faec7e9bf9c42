"""The web stack's pieces, without servers: config rendering, the log listener, the
supervisord overlay, the configs and approot build steps, dcapproot.sh."""

from __future__ import annotations

import io
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BP
from dcbuild import log
from dcbuild import web as build_web
from dcruntime import events, programs, reach, render, startlog
from dcruntime import web as runtime_web

DC_ENV = {**os.environ, "PYTHONPATH": str(BP / "lib")}


# --- rendering ---------------------------------------------------------------------------


def test_render_replaces_only_allowed_braced_names():
    text = "listen ${PORT};\ntry_files $uri ${uri} /x/$1 $host $PORT ${FOO} ${HOME}/current/;\n"
    out = render.render(text, {"PORT": "8080", "HOME": "/app", "FOO": "nope"}, ["PORT", "HOME"])
    assert out == "listen 8080;\ntry_files $uri ${uri} /x/$1 $host $PORT ${FOO} /app/current/;\n"


def test_render_names_every_unset_variable_and_its_line():
    with pytest.raises(render.RenderError) as err:
        render.render("a\nlisten ${PORT};\nroot ${HOME};\n", {}, ["PORT", "HOME"], source="t.conf")
    assert str(err.value).splitlines() == ["t.conf:2: ${PORT} is not set", "t.conf:3: ${HOME} is not set"]


def test_render_allow_list_extends_with_dc_template_vars():
    names = render.allowed_names({"DC_TEMPLATE_VARS": "SERVER_NAME, REDIRECT_HOST"})
    assert {"PORT", "HOME", "TMPDIR", "DC_RUN_DIR", "SERVER_NAME", "REDIRECT_HOST"} <= names
    out = render.render("server_name ${SERVER_NAME};", {"SERVER_NAME": "example.org"}, names)
    assert out == "server_name example.org;"


def test_buildpack_template_renders_and_keeps_nginx_variables():
    env = {"PORT": "5000", "HOME": "/app", "TMPDIR": "/tmp", "DC_RUN_DIR": "/tmp/dcweb.x", "NGINX_WORKERS": "2",
           "DC_CLIENT_MAX_BODY_SIZE": "1m", "DC_UWSGI_READ_TIMEOUT": "59500ms"}
    text = (BP / "config" / "nginx.conf.template").read_text()
    out = render.render(text, env, render.allowed_names(env))
    assert "${" not in out.replace("${NAME}", "")
    assert "listen 5000;" in out
    assert "root /app/.dotcloud/home/current/;" in out
    assert "include /tmp/dcweb.x/app/*nginx.conf;" in out  # the app's, as dcruntime.appconf renders them
    assert "if (-f /app/.dotcloud/home/current/maintenance) {" in out
    assert "uwsgi_pass unix:/tmp/dcweb.x/uwsgi.sock;" in out
    assert "'$remote_addr ($http_x_real_ip) - $remote_user [$time_local] '" in out


def test_render_command_fails_clearly_on_unset_variable(tmp_path):
    template = tmp_path / "nginx.conf.template"
    template.write_text("events {}\nhttp { server { listen ${PORT}; } }\n")
    env = {k: v for k, v in DC_ENV.items() if k != "PORT"}
    res = subprocess.run(
        [sys.executable, "-m", "dcruntime.render", str(template), str(tmp_path / "out")],
        env=env, capture_output=True, text=True,
    )
    assert res.returncode == 1
    assert res.stderr == f"error: {template}:2: ${{PORT}} is not set\n"
    assert not (tmp_path / "out").exists()


# --- the FATAL listener -----------------------------------------------------------------


def envelope(serial: int, name: str, payload: str) -> str:
    header = f"ver:3.0 server:supervisor serial:{serial} pool:dcweb poolserial:{serial} eventname:{name}"
    return f"{header} len:{len(payload)}\n{payload}"


def test_listener_speaks_supervisor_protocol_and_stops_supervisord_on_core_fatal(tmp_path):
    victim = subprocess.Popen(["sleep", "30"])
    out = io.StringIO()
    listener = events.Listener(out, {"nginx", "uwsgi"}, tmp_path, victim.pid)
    stream = envelope(1, "PROCESS_STATE_FATAL", "processname:w\u00e9rker groupname:w\u00e9rker from_state:BACKOFF")
    stream += envelope(2, "PROCESS_STATE_FATAL", "processname:uwsgi groupname:uwsgi from_state:BACKOFF")
    stream += envelope(3, "PROCESS_STATE_FATAL", "processname:nginx groupname:nginx from_state:BACKOFF")
    stdin = io.TextIOWrapper(io.BytesIO(stream.encode()), encoding="utf-8", newline="")
    protocol = io.BytesIO()
    events.serve(listener, stdin, protocol)
    assert protocol.getvalue() == b"READY\n" + b"RESULT 2\nOKREADY\n" * 3
    assert victim.wait(5) == -signal.SIGTERM
    assert (tmp_path / "fatal").read_text() == "uwsgi\n"
    assert out.getvalue().splitlines() == [
        "w\u00e9rker could not be started (FATAL); the web process keeps running",
        "uwsgi could not be started (FATAL): stopping the web process",
    ]


# --- the web process's parent --------------------------------------------------------------


def test_app_programs_and_overlay_send_their_output_to_fifos(tmp_path):
    conf = tmp_path / "supervisord.conf"
    conf.write_text(
        "[program:worker]\ncommand=python3 worker.py ; a comment\n\n"
        "[program:logs]\ncommand=x\nstdout_logfile=/var/log/x.log\nredirect_stderr=true\n\n"
        "[program:odd/name]\ncommand=x\n\n[group:g]\nprograms=worker\n"
    )
    found, note = programs.app_programs(conf)
    assert note is None
    assert [name for name, _ in found] == ["worker", "logs", "odd/name"]
    text = programs.overlay(found, Path("/run/log"), root=False)
    assert (
        "[program:worker]\nstdout_logfile=/run/log/worker\nstdout_logfile_maxbytes=0\n"
        "stderr_logfile=/run/log/worker\nstderr_logfile_maxbytes=0\n"
    ) in text
    # Its own log file, stderr redirected to it: nothing to add (supervisord would ignore it).
    assert "[program:logs]" not in text
    assert "odd/name" not in text and "[group:g]" not in text and "[supervisord]" not in text
    assert programs.app_programs(tmp_path / "missing.conf") == ([], None)
    assert programs.overlay([], Path("/x"), root=True).splitlines()[1:] == ["[supervisord]", "user=root"]
    conf.write_text("no section header\n")
    found, note = programs.app_programs(conf)
    assert found == [] and "does not parse" in note


def test_log_hub_prefixes_complete_lines_per_program(tmp_path):
    out_r, out_w = os.pipe()
    main_r, main_w = os.pipe()
    hub = runtime_web.LogHub(tmp_path / "log", ["nginx", "uwsgi", "nginx"], out_fd=out_w)
    nginx = os.open(tmp_path / "log" / "nginx", os.O_WRONLY)
    uwsgi = os.open(tmp_path / "log" / "uwsgi", os.O_WRONLY)
    os.write(nginx, b"GET / 200\nGET /x ")
    os.write(uwsgi, b"caf\xc3\xa9\r\n\n")
    os.write(main_w, b"2026-01-01 INFO supervisord started\n")
    os.write(nginx, b"404\nno newline at the end")
    os.close(main_w)
    hub.run(main_r)
    hub.close()
    for fd in (nginx, uwsgi, out_w):
        os.close(fd)
    with os.fdopen(out_r, "rb") as f:
        lines = f.read().split(b"\n")[:-1]
    assert sorted(lines) == sorted([
        b"nginx | GET / 200", b"nginx | GET /x 404", b"nginx | no newline at the end",
        b"uwsgi | caf\xc3\xa9\r", b"uwsgi | ", b"supervisord | 2026-01-01 INFO supervisord started",
    ])
    assert lines.index(b"nginx | GET / 200") < lines.index(b"nginx | GET /x 404")
    assert sorted(p.name for p in (tmp_path / "log").iterdir()) == ["nginx", "uwsgi"]


def test_child_env_removes_only_our_own_pythonpath_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([runtime_web.LIB_DIR, "/app/lib"]))
    env = runtime_web.child_env(tmp_path)
    assert env["PYTHONPATH"] == "/app/lib"
    assert env["DC_RUN_DIR"] == str(tmp_path)
    assert len(env["DC_SUPERVISOR_PASSWORD"]) == 32
    monkeypatch.setenv("PYTHONPATH", runtime_web.LIB_DIR)
    assert "PYTHONPATH" not in runtime_web.child_env(tmp_path)


# --- the start log --------------------------------------------------------------------------

# What uWSGI 2.0.30 (pyuwsgi, as root, 2 workers) printed at start and at SIGTERM, without --logdate.
UWSGI_START = b"""[uWSGI] getting INI configuration from /tmp/dcweb.x/uwsgi.ini
*** Starting uWSGI 2.0.30 (64bit) on [Fri Dec  4 17:18:59 2026] ***
compiled with version: 14.2.1 20250110 (Red Hat 14.2.1-10) on 24 February 2026 19:10:36
os: Linux-6.18.44-fc-v1272 #1 SMP PREEMPT_DYNAMIC @0
nodename: vm
machine: x86_64
clock source: unix
pcre jit disabled
detected number of CPU cores: 2
current working directory: /app
writing pidfile to /tmp/dcweb.x/uwsgi.pid
detected binary path: /app/.dotcloud/python/bin/python3.13
chdir() to /app/current
your processes number limit is 96368
your memory page size is 4096 bytes
{harakiri}
detected max file descriptor number: 20000
lock engine: pthread robust mutexes
thunder lock: enabled
uwsgi socket 0 bound to UNIX address /tmp/dcweb.x/uwsgi.sock fd 3
uWSGI running as root, you can use --uid/--gid/--chroot options
{root}
Python version: 3.13.0 (main, May  9 2026, 07:36:57) [GCC 12.2.0]
--- Python VM already initialized ---
Python main interpreter initialized at 0x7f354796e620
python threads support enabled
your server socket listen backlog is limited to 100 connections
your mercy for graceful operations on workers is 60 seconds
mapped 231000 bytes (225 KB) for 2 cores
*** Operational MODE: preforking ***
added /app/current/ to pythonpath.
WSGI app 0 (mountpoint='') ready in 0 seconds on interpreter 0x7f354796e620 pid: 12547 (default app)
*** uWSGI is running in multiple interpreter mode ***
spawned uWSGI master process (pid: 12547)
spawned uWSGI worker 1 (pid: 12552, cores: 1)
spawned uWSGI worker 2 (pid: 12553, cores: 1)
running "unix_signal:15 gracefully_kill_them_all" (master-start)...
Fri Dec  4 17:18:46 2026 - graceful shutdown triggered...
Gracefully killing worker 2 (pid: 12553)...
worker 1 buried after 1 seconds
goodbye to uWSGI.
VACUUM: pidfile removed.
""".replace(
    b"{harakiri}", b" *** WARNING: you have enabled harakiri without post buffering. Slow upload could be rejected"
    b" on post-unbuffered webservers *** ",
).replace(b"{root}", b"*** WARNING: you are running uWSGI as root !!! (use the --uid flag) *** ")
UWSGI_PROBLEMS = b"""Traceback (most recent call last):
  File "/app/current/wsgi.py", line 1, in <module>
RuntimeError: boom
Fri Dec  4 17:20:01 2026 - DAMN ! worker 1 (pid: 12552) died, killed by signal 9 :( trying respawn ...
Respawned uWSGI worker 1 (new pid: 12600)
*** HARAKIRI ON WORKER 2 (pid: 12553, try: 1, graceful: yes) ***
os: something the app printed
"""


def test_uwsgi_routine_lines_are_dropped_and_problems_kept_without_uwsgis_date():
    assert startlog.uwsgi_filter(UWSGI_START) == b""
    assert startlog.uwsgi_filter(UWSGI_START + UWSGI_PROBLEMS + UWSGI_START) == UWSGI_PROBLEMS.replace(
        b"Fri Dec  4 17:20:01 2026 - ", b"")


def test_uwsgi_output_is_whole_when_verbose_or_with_uwsgis_own_logging_options():
    assert not startlog.uwsgi_verbose({"UWSGI_HARAKIRI": "30"}, {"processes": "2"})
    for environ in ({"DC_VERBOSE": "1"}, {"UWSGI_DISABLE_LOGGING": "false"}, {"UWSGI_LOGDATE": "true"},
                    {"UWSGI_LOG_FORMAT": "%(uri)"}, {"UWSGI_MEMORY_REPORT": "1"}):
        assert startlog.uwsgi_verbose(environ, {}), environ
    assert startlog.uwsgi_verbose({}, {"memory-report": "true"})  # dotcloud.yml's uwsgi_memory_report


SUPERVISORD = b"""2026-12-04 17:10:40,128 INFO Included extra file "/tmp/dcweb.x/supervisord-app.conf" during parsing
2026-12-04 17:10:40,128 INFO Set uid to user 0 succeeded
2026-12-04 17:10:40,131 INFO RPC interface 'supervisor' initialized
2026-12-04 17:10:40,132 INFO supervisord started with pid 22812
2026-12-04 17:10:40,141 INFO spawned: 'uwsgi' with pid 22819
2026-12-04 17:10:43,296 INFO success: uwsgi entered RUNNING state, process has stayed up for > than 3 seconds
2026-12-04 17:11:00,001 WARN exited: uwsgi (terminated by SIGKILL; not expected)
2026-12-04 17:11:00,002 INFO spawned: 'uwsgi' with pid 22900
2026-12-04 17:11:03,003 INFO success: uwsgi entered RUNNING state, process has stayed up for > than 3 seconds
2026-12-04 17:12:46,424 WARN received SIGTERM indicating exit request
2026-12-04 17:12:46,425 INFO waiting for dcweb, uwsgi, nginx to die
2026-12-04 17:12:46,428 INFO stopped: nginx (exit status 0)
a line of a traceback
"""


def test_supervisord_lines_lose_their_timestamp_and_the_routine_ones_by_default():
    assert startlog.SupervisordFilter()(SUPERVISORD).decode().splitlines() == [
        "WARN exited: uwsgi (terminated by SIGKILL; not expected)",
        "success: uwsgi entered RUNNING state, process has stayed up for > than 3 seconds",  # a restart
        "WARN received SIGTERM indicating exit request",
        "stopped: nginx (exit status 0)",
        "a line of a traceback",
    ]
    verbose = startlog.SupervisordFilter(verbose=True)(SUPERVISORD).decode().splitlines()
    assert len(verbose) == len(SUPERVISORD.splitlines())
    assert verbose[0] == 'INFO Included extra file "/tmp/dcweb.x/supervisord-app.conf" during parsing'
    assert startlog.SupervisordFilter()(SUPERVISORD.splitlines(keepends=True)[0]) == b""
    # Killed before its first RUNNING state: the one after the restart is shown.
    early = SUPERVISORD.splitlines(keepends=True)
    assert startlog.SupervisordFilter()(b"".join(early[4:5] + early[6:9])).decode().splitlines() == [
        "WARN exited: uwsgi (terminated by SIGKILL; not expected)",
        "success: uwsgi entered RUNNING state, process has stayed up for > than 3 seconds",
    ]


def test_log_hub_filters_by_program(tmp_path):
    out_r, out_w = os.pipe()
    main_r, main_w = os.pipe()
    filters = {"uwsgi": startlog.uwsgi_filter, "supervisord": startlog.SupervisordFilter()}
    hub = runtime_web.LogHub(tmp_path / "log", ["uwsgi"], out_fd=out_w, filters=filters)
    uwsgi = os.open(tmp_path / "log" / "uwsgi", os.O_WRONLY)
    os.write(uwsgi, UWSGI_START + b"RuntimeError: boom\n")
    os.write(main_w, SUPERVISORD)
    os.close(main_w)
    hub.run(main_r)
    hub.close()
    os.close(uwsgi)
    os.close(out_w)
    with os.fdopen(out_r, "rb") as f:
        lines = f.read().decode().splitlines()
    assert "uwsgi | RuntimeError: boom" in lines
    assert "supervisord | stopped: nginx (exit status 0)" in lines
    assert len(lines) == 6, lines


def test_versions_and_programs_lines(tmp_path):
    (tmp_path / ".dotcloud/nginx").mkdir(parents=True)
    (tmp_path / ".dotcloud/nginx/VERSION").write_text("1.22.1 debian-1.22.1-9+deb12u9 a16adb5c5e08\n")
    python = "Python {}.{}.{}".format(*sys.version_info[:3])
    line = startlog.versions(tmp_path, "5000")
    assert line.startswith(f"{python}, ") and line.endswith(", nginx 1.22.1, port 5000")
    assert startlog.versions(tmp_path, None) == python  # a python-worker service
    assert startlog.programs_line([], []) is None
    assert startlog.programs_line(["worker", "beat"], ["ticker"]) == (
        "the app's programs: worker, beat (current/supervisord.conf); ticker (dotcloud.yml)")


def test_process_titles_show_in_ps_and_top():
    code = (
        "import sys; from dcruntime import proctitle; assert proctitle.set_title('uwsgi worker 1');"
        "sys.stdout.buffer.write(open('/proc/self/cmdline', 'rb').read() + b'|' + open('/proc/self/comm', 'rb').read())"
    )
    res = subprocess.run([sys.executable, "-c", code, "--a-long-argument-to-make-room"], env=DC_ENV,
                         capture_output=True, check=True)
    cmdline, comm = res.stdout.split(b"|")
    assert cmdline.rstrip(b"\0") == b"uwsgi worker 1" and comm == b"uwsgi worker 1\n"
    res = subprocess.run([sys.executable, "-c", code.replace("uwsgi worker 1", "x" * 5000)], env=DC_ENV,
                         capture_output=True, check=True)
    cmdline, comm = res.stdout.split(b"|")
    assert set(cmdline.rstrip(b"\0")) == {ord("x")} and comm == b"x" * 15 + b"\n"  # cut to the room there is


# --- who nginx's workers are, what they reach ------------------------------------------------

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the root case needs root")


@as_root
def test_the_kernel_says_what_the_workers_can_enter(world_dir):
    closed = world_dir / "closed"
    (closed / "inner").mkdir(parents=True)
    closed.chmod(0o700)
    nobody = reach.named("nobody")
    assert reach.first_closed(closed / "inner", nobody) == closed
    assert reach.first_closed(world_dir, nobody) is None
    assert reach.searchable([world_dir, closed, closed / "inner"], nobody) == [True, False, False]
    root = reach.Workers("root", "root", 0, 0)
    assert reach.first_closed(closed / "inner", root) is None


@as_root
def test_a_closed_app_directory_stops_the_start_or_the_apps_owner_serves_it(world_dir):
    closed = world_dir / "closed"
    home = closed / "app"
    (home / "site").mkdir(parents=True)
    (home / ".dotcloud" / "home").mkdir(parents=True)  # dotCloud's home, as bin/dcapproot.sh makes it
    (home / ".dotcloud" / "home" / "code").symlink_to("../..")
    (home / ".dotcloud" / "home" / "current").symlink_to("code/site")
    closed.chmod(0o700)
    with pytest.raises(reach.ReachError) as failed:
        reach.choose(home, {})
    message = str(failed.value)
    assert f"nginx's workers run as nobody and cannot enter {closed}, on the way to the app" in message
    assert f"chmod o+x {closed}" in message and "NGINX_USER=root" in message
    chosen = reach.choose(home, {"NGINX_USER": "root"})
    assert chosen is not None and (chosen.uid, chosen.directive) == (0, "root root")
    with pytest.raises(reach.ReachError, match="NGINX_USER=no-such-user-dc: there is no such user"):
        reach.choose(home, {"NGINX_USER": "no-such-user-dc"})
    # The app's owner (not root), who can enter it: the workers run as that user.
    owner = pwd.getpwnam("daemon")
    for path in (closed, home, home / "site"):
        os.chown(path, owner.pw_uid, owner.pw_gid)
    chosen = reach.choose(home, {})
    assert chosen is not None and chosen.uid == owner.pw_uid
    assert chosen.why == f"nginx's workers run as daemon, the app's owner: nobody cannot enter {closed}"
    # Open: nobody, and nothing to say.
    closed.chmod(0o711)
    chosen = reach.choose(home, {})
    assert chosen is not None and (chosen.name, chosen.why) == ("nobody", "")


@as_root
def test_the_run_directory_goes_where_the_workers_can_enter(world_dir):
    nobody = reach.named("nobody")
    assert reach.run_parent(str(world_dir), nobody) == (str(world_dir), "")
    assert reach.run_parent(str(world_dir), None) == (str(world_dir), "")  # not root: TMPDIR as it is
    closed = world_dir / "closed"
    (closed / "tmp").mkdir(parents=True)
    closed.chmod(0o700)
    parent, note = reach.run_parent(str(closed / "tmp"), nobody)
    assert parent == "/tmp"
    assert note == (f"TMPDIR={closed}/tmp: nginx's workers (nobody) cannot enter {closed};"
                    " the run directory is under /tmp instead")
    env = runtime_web.privileges(world_dir, nobody)
    assert env == {"DC_NGINX_USER": f"nobody {nobody.group}", "DC_SOCKET_OWNER": f"0:{nobody.gid}"}
    st = world_dir.stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o710, 0, nobody.gid)


def test_run_dir_is_private_and_refuses_socket_paths_that_are_too_long(tmp_path):
    run_dir = runtime_web.make_run_dir(str(tmp_path))
    assert run_dir.parent == tmp_path and run_dir.stat().st_mode & 0o777 == 0o700
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    with pytest.raises(runtime_web.WebError, match="too long for a unix socket path"):
        runtime_web.make_run_dir(str(deep))
    assert list(deep.iterdir()) == []


# --- the configs build step ------------------------------------------------------------------


def fake_slug(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    conf = app / ".dotcloud" / "nginx" / "conf"
    conf.mkdir(parents=True)
    (conf / "uwsgi_params").write_text("uwsgi_param QUERY_STRING $query_string;\n")
    (conf / "mime.types").write_text("types { text/html html; }\n")
    return app


def test_configs_installs_runtime_files_and_a_procfile(tmp_path, capsys):
    app = fake_slug(tmp_path)
    build_web.install_configs(app)
    out = capsys.readouterr().out
    assert out.startswith("-----> Installing runtime configs\n       Installed bin/dcweb ")
    for dest in ("bin/dcweb", "bin/nginx_start", "bin/uwsgi_start", "bin/dcapproot.sh"):
        assert os.access(app / dest, os.X_OK)
    assert (app / "config/uwsgi_params").read_text().startswith("uwsgi_param QUERY_STRING")
    assert (app / "config/nginx.conf.template").read_bytes() == (BP / "config/nginx.conf.template").read_bytes()
    assert (app / "Procfile").read_text() == "web: bin/dcweb\n"
    assert (app / ".dotcloud/lib/dcruntime/web.py").is_file()
    assert not list((app / ".dotcloud/lib/dcruntime").glob("__pycache__"))


def test_configs_never_overwrites_the_apps_own_files(tmp_path, capsys):
    app = fake_slug(tmp_path)
    (app / "config").mkdir()
    (app / "config/supervisord.conf").write_text("; the app's own\n")
    (app / "Procfile").write_text("web: gunicorn wsgi\n")
    build_web.install_configs(app)
    out = capsys.readouterr().out
    assert "       Keeping the app's own config/supervisord.conf (not replaced by the buildpack's)\n" in out
    assert "       Using the app's own Procfile (the default would be: web: bin/dcweb)\n" in out
    assert (app / "config/supervisord.conf").read_text() == "; the app's own\n"
    assert (app / "Procfile").read_text() == "web: gunicorn wsgi\n"


def test_configs_again_replaces_its_own_files_only(tmp_path, capsys):
    app = fake_slug(tmp_path)
    bp = tmp_path / "bp"
    for sub in ("bin", "config", "lib/dcruntime"):
        (bp / sub).mkdir(parents=True)
    for src, _, _ in build_web.FILES:
        if not src.startswith("nginx:"):
            (bp / src).write_text("v1\n")
    (bp / "lib/dcruntime/__init__.py").write_text("")
    build_web.install_configs(app, bp)
    (app / "config/supervisord.conf").write_text("; edited by the app\n")
    (bp / "bin/dcweb").write_text("v2\n")
    capsys.readouterr()
    build_web.install_configs(app, bp)
    out = capsys.readouterr().out
    assert (app / "bin/dcweb").read_text() == "v2\n"
    assert (app / "config/supervisord.conf").read_text() == "; edited by the app\n"
    assert "Keeping the app's own config/supervisord.conf" in out
    record = json.loads((app / build_web.RECORD).read_text())
    assert set(record) == {dest for _, dest, _ in build_web.FILES} | {"Procfile"}


def test_configs_needs_the_nginx_layer(tmp_path):
    (tmp_path / "app").mkdir()
    with pytest.raises(log.BuildError, match="nginx layer is missing"):
        build_web.install_configs(tmp_path / "app")


# --- the approot build step and dcapproot.sh ---------------------------------------------------


def approot_step(app: Path, approot: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in DC_ENV.items() if k != "APPROOT"}
    if approot is not None:
        env["APPROOT"] = approot
    return subprocess.run(
        [sys.executable, "-m", "dcbuild.web", "approot", str(app)], env=env, capture_output=True, text=True
    )


def test_approot_links_are_relative_idempotent_and_survive_a_move(tmp_path):
    app = tmp_path / "app"
    (app / "src").mkdir(parents=True)
    (app / "src/wsgi.py").write_text("")
    res = approot_step(app, "src/")
    assert res.returncode == 0, res.stderr
    assert res.stdout == ("-----> Linking the approot\n"
                          "       dotCloud's home is .dotcloud/home: code -> the app, current -> code/src\n")
    home = app / ".dotcloud/home"
    links = {p.name: os.readlink(p) for p in home.iterdir()}
    assert links == {"code": "../..", "current": "code/src", "env": "../python", "environment.json":
                     "../../environment.json", "environment.yml": "../../environment.yml",
                     "environment.yaml": "../../environment.yaml"}
    assert sorted(p.name for p in app.iterdir()) == [".dotcloud", "src"]  # nothing in the app's own directory
    before = (home / "current").lstat()
    assert approot_step(app, "src").returncode == 0
    assert (home / "current").lstat().st_ino == before.st_ino
    moved = app.rename(tmp_path / "moved")
    home = moved / ".dotcloud/home"
    assert (home / "current" / "wsgi.py").is_file() and (home / "code" / "src").is_dir()
    # At run time, with no APPROOT, the script keeps the link it finds; a read-only slug is fine.
    moved.joinpath(".dotcloud").chmod(0o555)
    home.chmod(0o555)
    try:
        res = subprocess.run([str(BP / "bin/dcapproot.sh"), str(moved)], capture_output=True, text=True,
                             env={"PATH": os.environ["PATH"], "HOME": str(moved)})
    finally:
        home.chmod(0o755)
        moved.joinpath(".dotcloud").chmod(0o755)
    assert res.returncode == 0, res.stderr
    assert os.readlink(home / "current") == "code/src"


def test_approot_dot_and_the_links_of_older_versions(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "wsgi.py").write_text("")
    (app / "code").symlink_to(".")  # what versions before 14 made
    (app / "current").symlink_to(".")
    assert approot_step(app).returncode == 0
    assert sorted(p.name for p in app.iterdir()) == [".dotcloud", "wsgi.py"]
    assert os.readlink(app / ".dotcloud/home/current") == "code"
    assert (app / ".dotcloud/home/current/wsgi.py").is_file()
    # With no APPROOT, the link of an older version says where the approot is.
    (app / "src").mkdir()
    shutil.rmtree(app / ".dotcloud")
    (app / "current").symlink_to("src")
    res = subprocess.run([str(BP / "bin/dcapproot.sh"), str(app)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert os.readlink(app / ".dotcloud/home/current") == "code/src" and not (app / "current").is_symlink()


@pytest.mark.parametrize(
    ("approot", "message"),
    [
        ("site", " !     Error: APPROOT: approot 'site' does not exist.\n"),
        ("/srv/app", " !     Error: APPROOT: approot 'srv/app' does not exist."),
        ("../up", " !     Error: APPROOT: approot '../up' is not a plain relative path inside the app."),
        ("out", " !     Error: APPROOT: approot 'out' leads outside the app.\n"),
    ],
)
def test_approot_errors_are_clear(tmp_path, approot, message):
    app = tmp_path / "app"
    app.mkdir()
    (app / "out").symlink_to(tmp_path)
    res = approot_step(app, approot)
    assert res.returncode == 1
    assert res.stderr.startswith(message)
    assert "Traceback" not in res.stderr
    assert not (app / ".dotcloud").exists()


def test_approot_keeps_an_apps_own_code_and_current_and_warns_without_wsgi(tmp_path):
    app = tmp_path / "app"
    (app / "current").mkdir(parents=True)
    (app / "code").mkdir()
    res = approot_step(app)
    assert res.returncode == 0, res.stderr
    assert " !     Warning: No wsgi.py in the approot (.)" in res.stderr
    assert (app / "current").is_dir() and not (app / "current").is_symlink()
    assert (app / "code").is_dir() and not (app / "code").is_symlink()
    assert os.readlink(app / ".dotcloud/home/current") == "code"


def test_shell_scripts_are_shellcheck_clean():
    scripts = [BP / "bin" / name for name in ("dcweb", "nginx_start", "uwsgi_start", "dcapproot.sh")]
    try:
        res = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("shellcheck is not installed")
    assert res.returncode == 0, res.stdout

