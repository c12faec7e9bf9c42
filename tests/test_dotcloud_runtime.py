"""dotcloud.yml at run time: environment.json, environment:, processes:, python-worker,
postinstall, uWSGI settings, /home/dotcloud in the app's snippets, nginx's defaults, str bodies.

The first part tests the pieces without servers; the second builds slugs with bin/compile and
runs them as a platform does (the helpers of test_web_serve), ending each scenario with a real
HTTP request or a check of the real processes' output.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import test_web_serve as serve

from conftest import BP
from dcbuild import tools
from dcruntime import appconf, concurrency, dotcloud, events, postinstall, programs, uwsgiconf

# The web-serving fixtures of test_web_serve (pytest finds fixtures by name in the module).
place, web_builder, slug, web = serve.place, serve.web_builder, serve.slug, serve.web

# --- environment and environment.json ---------------------------------------------------


SERVICE = {
    "name": "www",
    "type": "python",
    "environment": {"GREETING": "from yml", "OVERRIDDEN": "from yml"},
    "ports": {"api": "http", "raw": "tcp"},
    "data_services": {"db": "mysql", "pg": "postgresql", "cache": "redis", "docs": "mongodb", "mail": "smtp"},
}


def test_environment_platform_vars_win_and_dotcloud_keys_are_added():
    environ = {
        "OVERRIDDEN": "platform",
        "DATABASE_URL": "postgres://u:p%40ss@pg.example:5433/x",
        "DB_URL": "mysql://root:secret@mysql.example/app",
        "REDISCLOUD_URL": "redis://:pw@[::1]:6380",
        "MONGODB_URI": "mongodb://m:n@h1:27018,h2:27019/db",
        "DYNO": "web.3",
        "DOTCLOUD_PG_SQL_HOST": "set by the platform",
    }
    env = dotcloud.environment(SERVICE, environ, Path("/srv/shop"))
    assert (env["GREETING"], env["OVERRIDDEN"]) == ("from yml", "platform")
    assert env["DOTCLOUD_ENVIRONMENT"] == "default"
    assert (env["DOTCLOUD_PROJECT"], env["DOTCLOUD_SERVICE_NAME"], env["DOTCLOUD_SERVICE_ID"]) == ("shop", "www", "2")
    # A service-specific <SVC>_URL wins; a mismatched scheme is not taken (DATABASE_URL is postgres).
    assert [env[f"DOTCLOUD_DB_MYSQL_{k}"] for k in ("HOST", "PORT", "LOGIN", "PASSWORD", "URL")] == [
        "mysql.example", "3306", "root", "secret", "mysql://root:secret@mysql.example/app"]
    assert [env[f"DOTCLOUD_PG_SQL_{k}"] for k in ("HOST", "PORT", "LOGIN", "PASSWORD")] == [
        "set by the platform", "5433", "u", "p@ss"]
    redis = [env[f"DOTCLOUD_CACHE_REDIS_{k}"] for k in ("HOST", "PORT", "LOGIN", "PASSWORD")]
    assert redis == ["::1", "6380", "", "pw"]
    assert (env["DOTCLOUD_DOCS_MONGODB_HOST"], env["DOTCLOUD_DOCS_MONGODB_PORT"]) == ("h1", "27018")
    assert not any(k.startswith("DOTCLOUD_MAIL_") for k in env)  # no URL for it
    assert env["PORT_API"].isdigit() and env["PORT_RAW"].isdigit()
    project = dotcloud.environment({}, {"APP_NAME": "named"}, Path("/app"))
    assert (project["DOTCLOUD_PROJECT"], project["DOTCLOUD_SERVICE_NAME"], project["DOTCLOUD_SERVICE_ID"]) == (
        "named", "www", "0")


def test_worker_first_http_port_is_the_routed_one():
    service = {"type": "python-worker", "ports": {"www": "http", "admin": "http"}}
    env = dotcloud.environment(service, {"PORT": "5123"}, Path("/app"))
    assert env["PORT_WWW"] == "5123" and env["PORT_ADMIN"] not in ("5123", "")


def test_environment_files_are_private_json_and_yaml(tmp_path):
    tricky = 'quote " backslash \\ tab \t caf\u00e9 \U0001f600 \x7f'
    env = {"PLAIN": "x", "TRICKY": tricky, "_": "/bin/sh", "SHLVL": "2"}
    assert dotcloud.write_env_files(tmp_path, env) is None
    expected = {"PLAIN": "x", "TRICKY": env["TRICKY"]}
    assert json.loads((tmp_path / "environment.json").read_text()) == expected
    yaml = tools.yaml(tmp_path / "cache")
    for name in ("environment.yml", "environment.yaml"):
        assert yaml.safe_load((tmp_path / name).read_text(encoding="utf-8")) == expected
    for name in dotcloud.ENV_FILES:
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cache") == sorted(dotcloud.ENV_FILES)


def test_command_line_writes_the_files_for_other_processes(tmp_path):
    (tmp_path / ".dotcloud").mkdir()
    (tmp_path / ".dotcloud/service.json").write_text('{"name": "api", "environment": {"K": "v"}}')
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(BP / "lib")}
    res = subprocess.run([sys.executable, "-m", "dcruntime.dotcloud"], env=env, capture_output=True, text=True)
    assert (res.returncode, res.stderr) == (0, "")
    data = json.loads((tmp_path / "environment.json").read_text())
    assert (data["K"], data["DOTCLOUD_SERVICE_NAME"]) == ("v", "api") and "PYTHONPATH" not in data
    (tmp_path / ".dotcloud/service.json").write_text("[")
    res = subprocess.run([sys.executable, "-m", "dcruntime.dotcloud"], env=env, capture_output=True, text=True)
    assert res.returncode == 1 and "build the app again" in res.stderr


def test_env_link_is_relative_and_never_replaces_anything(tmp_path):
    (tmp_path / ".dotcloud/python/bin").mkdir(parents=True)
    assert dotcloud.link_env(tmp_path) is None
    assert os.readlink(tmp_path / "env") == ".dotcloud/python"
    other = tmp_path / "other"
    (other / ".dotcloud/python").mkdir(parents=True)
    (other / "env").mkdir()
    dotcloud.link_env(other)
    assert (other / "env").is_dir() and not (other / "env").is_symlink()


# --- uWSGI settings ---------------------------------------------------------------------


def test_uwsgi_options_precedence():
    config = {"uwsgi_processes": 2, "uwsgi_buffer_size": "16384", "uwsgi_harakiri": 30,
              "uwsgi_enable_threads": True, "uwsgi_single_interpreter": "false", "uwsgi_memory_report": "yes"}
    assert uwsgiconf.options(config, {}) == {
        "harakiri": "30", "enable-threads": "true", "memory-report": "true", "processes": "2", "buffer-size": "16384",
        "thunder-lock": "true"}
    # The default count is the container's (tests/test_web_concurrency.py); uWSGI's request log is
    # off unless memory-report (whose line is part of it) is on.
    cores = str(concurrency.limits({}).workers())
    lock = {"thunder-lock": "true"} if int(cores) > 1 else {}
    assert uwsgiconf.options({}, {}) == {
        "harakiri": "60", "processes": cores, "disable-logging": "true", "buffer-size": "8192", **lock}
    # accept() is serialized when more than one process shares the socket (the count that runs).
    assert "thunder-lock" not in uwsgiconf.options({"uwsgi_processes": 1}, {})
    assert "thunder-lock" not in uwsgiconf.options(config, {"UWSGI_PROCESSES": "1"})
    assert uwsgiconf.options({"uwsgi_processes": 1}, {"UWSGI_PROCESSES": "3"})["thunder-lock"] == "true"
    assert "thunder-lock" not in uwsgiconf.options(config, {"UWSGI_THUNDER_LOCK": "false"})
    # WEB_CONCURRENCY beats dotcloud.yml; UWSGI_<OPTION> beats both (left out of the ini file).
    assert uwsgiconf.options(config, {"WEB_CONCURRENCY": "3"})["processes"] == "3"
    out = uwsgiconf.options(config, {"WEB_CONCURRENCY": "3", "UWSGI_PROCESSES": "5", "UWSGI_HARAKIRI": "9"})
    assert "processes" not in out and "harakiri" not in out
    assert uwsgiconf.options({"uwsgi_harakiri": 0}, {"UWSGI_DISABLE_LOGGING": "false"}) == {
        "processes": cores, "buffer-size": "8192", **lock}
    assert uwsgiconf.ini_text({"processes": "2"}).splitlines()[1:] == ["[uwsgi]", "processes = 2"]
    assert uwsgiconf.conflicts({"UWSGI_HARAKIRI": "9", "UWSGI_PYTHONPATH": "lib"}) == []
    assert uwsgiconf.conflicts({"UWSGI_MODULE": "app:app"}) == [
        "UWSGI_MODULE is set: a second app, which uWSGI skips: current/wsgi.py's application is loaded already;"
        " unset it"]


@pytest.mark.parametrize(("config", "environ", "message"), [
    ({"uwsgi_processes": "four"}, {}, "dotcloud.yml config.uwsgi_processes is 'four'"),
    ({"uwsgi_processes": 0}, {}, "a whole number 1 or more"),
    ({}, {"WEB_CONCURRENCY": "lots"}, "WEB_CONCURRENCY is 'lots'"),
    ({"uwsgi_buffer_size": 100000}, {}, "from 1 to 65535"),
    ({"uwsgi_enable_threads": "maybe"}, {}, "config.uwsgi_enable_threads is 'maybe': use true or false"),
])
def test_uwsgi_options_errors_name_the_setting(config, environ, message):
    with pytest.raises(dotcloud.BootError, match=message.replace(".", r"\.")):
        uwsgiconf.options(config, environ)


# --- programs ---------------------------------------------------------------------------


def test_processes_become_programs_run_by_sh_from_a_file(tmp_path):
    commands = programs.processes({"processes": {"tick": 'python3 t.py "a ; b # c %(here)s"', "multi": "a\nb"}}, [])
    text = programs.process_sections(commands, Path("/app"), tmp_path, tmp_path / "log")
    assert f"[program:tick]\ncommand=/bin/sh {tmp_path}/processes/tick\ndirectory=/app/current\n" in text
    assert f"stdout_logfile={tmp_path}/log/tick\n" in text and "redirect_stderr=true" in text
    script = (tmp_path / "processes/tick").read_text()
    assert script.splitlines()[1] == 'exec python3 t.py "a ; b # c %(here)s"'
    assert (tmp_path / "processes/multi").read_text().splitlines()[1:] == ["a", "b"]
    res = subprocess.run(["/bin/sh", str(tmp_path / "processes/tick")], cwd=tmp_path, capture_output=True, text=True)
    assert "t.py" in res.stderr  # sh ran python3 with the file name: no quoting was lost


@pytest.mark.parametrize(("found", "message"), [
    ({"nginx": "x"}, "the buildpack's program nginx"),
    ({"legacy": "x"}, "current/supervisord.conf's program legacy"),
    ({"a b": "x"}, "is not a usable program name"),
    ({"empty": ""}, "has no command"),
])
def test_processes_names_are_checked(found, message):
    with pytest.raises(dotcloud.BootError, match=message):
        programs.processes({"processes": found}, ["legacy"])


def test_overlay_redirects_dotcloud_log_files_and_skips_web_programs_for_a_worker():
    found = [
        ("legacy", {"stdout_logfile": "/var/log/supervisor/legacy.log", "redirect_stderr": "true"}),
        ("own", {"stdout_logfile": "/srv/own.log", "stderr_logfile": "/srv/own.err"}),
    ]
    text = programs.overlay(found, Path("/run/log"), root=False, worker=True)
    assert "[program:legacy]\nstdout_logfile=/run/log/legacy\nstdout_logfile_maxbytes=0\n" in text
    assert "stderr_logfile=/run/log/legacy" not in text and "[program:own]" not in text
    assert "[program:nginx]\nautostart=false" in text and "[program:uwsgi]\nautostart=false" in text
    assert programs.watched([("off", {"autostart": "false"}), ("on", {})], {"p": "x"}) == ["on", "p"]


def envelope(serial: int, payload: str) -> str:
    header = f"ver:3.0 server:supervisor serial:{serial} pool:dcweb poolserial:{serial} eventname:PROCESS_STATE_FATAL"
    return f"{header} len:{len(payload)}\n{payload}"


def test_listener_stops_a_worker_service_once_all_its_programs_are_fatal(tmp_path):
    victim = subprocess.Popen(["sleep", "30"])
    out = io.StringIO()
    listener = events.Listener(out, set(), tmp_path, victim.pid, all_of={"a", "b"})
    stream = envelope(1, "processname:a groupname:a from_state:BACKOFF")
    stdin = io.TextIOWrapper(io.BytesIO(stream.encode()), encoding="utf-8", newline="")
    events.serve(listener, stdin, io.BytesIO())
    assert victim.poll() is None and not (tmp_path / "fatal").exists()
    stdin = io.TextIOWrapper(io.BytesIO(envelope(2, "processname:b groupname:b").encode()), encoding="utf-8")
    events.serve(listener, stdin, io.BytesIO())
    assert victim.wait(5) == -signal.SIGTERM
    assert (tmp_path / "fatal").read_text() == "a, b\n"
    assert out.getvalue().splitlines() == [
        "a could not be started (FATAL); the other programs keep running",
        "b could not be started (FATAL) and neither could the others (a, b): stopping",
    ]


def test_a_worker_with_nothing_to_run_falls_back_to_run_or_fails(tmp_path):
    from dcruntime import web as runtime_web

    (tmp_path / "current").mkdir()
    service = {"name": "workers", "type": "python-worker"}
    assert runtime_web.worker_programs(tmp_path, service, ["w"], {"w": "x"}) == {"w": "x"}
    with pytest.raises(runtime_web.WebError, match="python-worker service workers has nothing to run"):
        runtime_web.worker_programs(tmp_path, service, [], {})
    (tmp_path / "current/run").write_text("#!/bin/sh\n")
    (tmp_path / "current/run").chmod(0o755)
    assert runtime_web.worker_programs(tmp_path, service, [], {}) == {"process": "./run"}


# --- the app's snippets, nginx's defaults ---------------------------------------------------


def test_snippets_are_rendered_into_the_run_dir_and_the_app_files_kept(tmp_path):
    home, run_dir = tmp_path / "home", tmp_path / "run"
    (home / "current/static").mkdir(parents=True)
    run_dir.mkdir()
    (home / "current/nginx.conf").write_text("root /home/dotcloud/current/static; # not /home/dotcloudx\n")
    (home / "current/api-uwsgi.conf").write_text("uwsgi_param X /home/dotcloud;\n")
    (home / "current/supervisord.conf").write_text(
        "[program:w]\ncommand=/home/dotcloud/env/bin/python w.py\ndirectory=%(here)s\nuser = dotcloud\n")
    (home / "current/static/50x.html").write_text("down")
    (home / "current/static/503.html").write_text("maintenance")
    notes = appconf.prepare(home, run_dir, web=True)
    assert (run_dir / "app/nginx.conf").read_text() == f"root {home}/current/static; # not /home/dotcloudx\n"
    assert (run_dir / "app/api-uwsgi.conf").read_text() == f"uwsgi_param X {home};\n"
    lines = (run_dir / appconf.SUPERVISORD_APP).read_text().splitlines()
    assert lines[1:3] == [f"command={home}/env/bin/python w.py", f"directory={home}/current"]
    assert lines[3].startswith("; user = dotcloud")
    assert "/home/dotcloud" in (home / "current/nginx.conf").read_text()
    assert any("user=dotcloud dropped" in n for n in notes) and any("nginx.conf" in n for n in notes)
    defaults = (run_dir / appconf.NGINX_DEFAULTS).read_text()
    assert "error_page 404" not in defaults
    assert f"location @dc_error_503 {{ root {home}/current/static; try_files /503.html =503; }}" in defaults
    assert "try_files /50x.html =502;" in defaults
    (home / "current/nginx.conf").write_text("# mine\nlocation / {\n}\n")
    notes = appconf.copy_nginx_snippets(home, run_dir)
    assert any(n.startswith("warning: current/nginx.conf:2 defines `location /`") for n in notes)


# --- postinstall and the WSGI wrapper ---------------------------------------------------------


def test_postinstall_command(tmp_path):
    (tmp_path / "current").mkdir()
    assert postinstall.command({}, tmp_path) is None
    hook = tmp_path / "current/postinstall"
    hook.write_text("echo hi\n")
    with pytest.raises(dotcloud.BootError, match=r"run `chmod \+x postinstall`"):
        postinstall.command({}, tmp_path)
    hook.chmod(0o755)
    assert postinstall.command({}, tmp_path) == (["/bin/sh", str(hook)], "current/postinstall")
    hook.write_text("#!/usr/bin/env python3\n")
    assert postinstall.command({}, tmp_path)[0] == [str(hook)]
    assert postinstall.command({"postinstall": "python manage.py migrate"}, tmp_path) == (
        ["/bin/sh", "-c", "python manage.py migrate"], "python manage.py migrate")
    assert postinstall.timeout({}) == 600 and postinstall.timeout({"DC_POSTINSTALL_TIMEOUT": "2.5"}) == 2.5
    with pytest.raises(dotcloud.BootError, match="DC_POSTINSTALL_TIMEOUT"):
        postinstall.timeout({"DC_POSTINSTALL_TIMEOUT": "soon"})


def load_wrapper(monkeypatch, app, encode: bool):
    monkeypatch.setitem(sys.modules, "wsgi", types.SimpleNamespace(application=app, __file__="wsgi.py"))
    monkeypatch.setenv("DC_ENCODE_STR_BODY", "1" if encode else "")
    spec = importlib.util.spec_from_file_location("dc_wsgiapp_test", BP / "lib/dcruntime/wsgiapp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Closing:
    def __init__(self, chunks):
        self.chunks, self.closed = chunks, False

    def __iter__(self):
        return iter(self.chunks)

    def close(self):
        self.closed = True


def test_wsgi_wrapper_hints_once_or_encodes(monkeypatch, capsys):
    bodies = {"/list": ["caf\u00e9"], "/bytes": [b"ok"], "/str": "x", "/gen": Closing(["a", b"b"])}
    app = lambda environ, start_response: bodies[environ["PATH_INFO"]]  # noqa: E731
    wrapper = load_wrapper(monkeypatch, app, encode=False)
    assert wrapper.application({"PATH_INFO": "/bytes"}, None) is bodies["/bytes"]
    assert wrapper.application({"PATH_INFO": "/list", "REQUEST_METHOD": "GET"}, None) is bodies["/list"]
    assert list(wrapper.application({"PATH_INFO": "/gen"}, None)) == ["a", b"b"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "GET /list" in err and "DC_ENCODE_STR_BODY=1" in err
    wrapper = load_wrapper(monkeypatch, app, encode=True)
    assert wrapper.application({"PATH_INFO": "/list"}, None) == ["caf\u00e9".encode()]
    assert wrapper.application({"PATH_INFO": "/str"}, None) == [b"x"]
    result = wrapper.application({"PATH_INFO": "/gen"}, None)
    assert list(result) == [b"a", b"b"]
    result.close()
    assert bodies["/gen"].closed and capsys.readouterr().err == ""
    file_like = io.BytesIO(b"sendfile")
    bodies["/file"] = file_like
    assert wrapper.application({"PATH_INFO": "/file"}, None) is file_like


def test_wsgi_wrapper_names_a_missing_application(monkeypatch):
    monkeypatch.setitem(sys.modules, "wsgi", types.SimpleNamespace(__file__="wsgi.py"))
    spec = importlib.util.spec_from_file_location("dc_wsgiapp_missing", BP / "lib/dcruntime/wsgiapp.py")
    with pytest.raises(RuntimeError, match="must be called application"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


# --- real slugs, real servers --------------------------------------------------------------


def json_get(w, path: str):
    status, _, body = w.request(path)
    assert status == 200, (path, status, body)
    return json.loads(body)


@pytest.mark.slow
def test_dotcloud_web_service(slug, web):
    app = slug("dotcloud_web")
    assert (app / ".dotcloud/service.json").is_file()
    platform = {
        "OVERRIDDEN": "platform", "APP_NAME": "shop", "DYNO": "web.2", "WEB_CONCURRENCY": "3", "UWSGI_HARAKIRI": "45",
        "DATABASE_URL": "mysql://shop:s3cret@db.example:3307/shop", "REDIS_URL": "redis://:pw@cache.example:6380",
    }
    w = web(app, **platform)
    w.wait_ready()
    out = w.output
    # postinstall ran from current/, after environment.json was written, before supervisord.
    assert f"postinstall | postinstall in {app} for www\n" in out
    assert "postinstall | postinstall on stderr\npostinstall | environment.json is there\n" in out
    assert out.index("postinstall | ") < out.index("dcweb | the app's programs: ")

    # environment.json: the platform's vars win over dotcloud.yml's, dotCloud's keys are added.
    data = json_get(w, "/env-file")
    assert (data["OVERRIDDEN"], data["GREETING"]) == ("platform", "hello from dotcloud.yml")
    assert [data[f"DOTCLOUD_{k}"] for k in ("ENVIRONMENT", "PROJECT", "SERVICE_NAME", "SERVICE_ID")] == [
        "default", "shop", "www", "1"]
    assert [data[f"DOTCLOUD_DB_MYSQL_{k}"] for k in ("HOST", "PORT", "LOGIN", "PASSWORD")] == [
        "db.example", "3307", "shop", "s3cret"]
    assert data["DOTCLOUD_CACHE_REDIS_URL"] == "redis://:pw@cache.example:6380"
    assert data["PORT_API"].isdigit()
    assert not [k for k in data if k.startswith("DC_RUN") or k == "DC_SUPERVISOR_PASSWORD"]
    for name in ("environment.json", "environment.yml", "environment.yaml"):
        assert stat.S_IMODE((app / name).stat().st_mode) == 0o600
    yaml = tools.yaml(app.parent / "cache")
    assert yaml.safe_load((app / "environment.yml").read_text()) == data

    # The programs' environment is the same; the app's uwsgi.conf had /home/dotcloud rewritten;
    # the buildpack's own modules are not on the app's path.
    seen = json_get(w, "/environ")
    assert seen["environ"]["OVERRIDDEN"] == "platform" and seen["environ"]["DOTCLOUD_DB_MYSQL_HOST"] == "db.example"
    assert seen["X_APP_HOME"] == f"{app}/code"
    assert not [p for p in seen["sys.path"] if ".dotcloud/lib" in p]

    # uWSGI: dotcloud.yml's config, WEB_CONCURRENCY over uwsgi_processes, UWSGI_HARAKIRI over both.
    info = json_get(w, "/uwsgi")
    assert info["numproc"] == 3
    opt = info["opt"]
    assert (opt["buffer-size"], opt["harakiri"], opt["enable-threads"], opt["memory-report"]) == (
        "16384", "45", "true", "true")
    w.wait_for("uwsgi | {address space usage:")  # memory-report's request log

    # The app's nginx.conf, /home/dotcloud rewritten; its regex location serves .json files as
    # files, but never environment.json/.yml/.yaml, wherever they are reached from.
    assert w.request("/assets/hello.txt")[2] == b"hello static\n"
    assert w.request("/static/data.json")[2] == (app / "static/data.json").read_bytes()
    for path in ("/environment.json", "/environment.yml", "/code/environment.yaml", "/current/code/environment.json"):
        status, _, body = w.request(path)
        assert (status, body) == (404, f"app: no page at {path}\n".encode()), path
    assert "/home/dotcloud" in (app / "nginx.conf").read_text()  # the app's file is left as it was

    # Error pages and maintenance from current/static/.
    assert w.request("/static/missing.txt")[0:3:2] == (404, b"custom not found\n")
    (app / "maintenance").touch()
    assert w.wait_status("/static/hello.txt", 503)[2] == b"custom unavailable\n"
    w.wait_status("/env-file", 503)
    (app / "maintenance").unlink()
    w.wait_status("/static/hello.txt", 200)

    # processes: (sh runs the command from a file: its ; # % survive) and the app's own
    # supervisord.conf written for dotCloud (/home/dotcloud, ~/env, /var/log/supervisor, user=dotcloud).
    w.wait_for(f"ticker | ticker argv=['a ; b # c %(here)s'] cwd={app} GREETING=hello from dotcloud.yml")
    w.wait_for(f"legacy | legacy started by {app}/env/bin/python")
    assert os.readlink(app / "env") == ".dotcloud/python"
    assert "dcweb | current/supervisord.conf: user=dotcloud dropped (1x)" in w.output
    serve.assert_clean_stop(w)
    assert "stopped: ticker (exit status 0)" in w.output and "stopped: legacy (exit status 0)" in w.output


@pytest.mark.slow
def test_app_error_page_wins_over_the_default(slug, web):
    def pages(app: Path) -> None:
        (app / "static").mkdir()
        (app / "static/404.html").write_text("default page\n")
        (app / "static/own-404.html").write_text("the app's page\n")
        (app / "nginx.conf").write_text("error_page 404 /static/own-404.html;\n")

    app = slug("web_plain", pages)
    w = web(app)
    w.wait_ready()
    assert w.request("/static/missing")[0:3:2] == (404, b"the app's page\n")
    serve.assert_clean_stop(w)


@pytest.mark.slow
def test_python_2_str_body_gets_a_hint_or_is_encoded(slug, web):
    app = slug("dotcloud_py2")
    w = web(app)
    w.wait_ready()
    for _ in range(3):
        assert w.request("/")[0:3:2] == (200, b"")
    assert w.request("/generator")[2] == b""
    assert w.request("/bytes")[2] == b"bytes are fine\n"
    w.wait_for("Unhandled object from iterator")
    hints = [line for line in w.output.splitlines() if "the app returned str body chunks" in line]
    assert len(hints) == 1, w.output  # one uWSGI worker: one line
    assert hints[0].startswith("uwsgi | dcweb: worker ") and "GET /" in hints[0]
    assert "return [body.encode('utf-8')]" in hints[0] and "DC_ENCODE_STR_BODY=1" in hints[0]
    serve.assert_clean_stop(w)

    w = web(app, DC_ENCODE_STR_BODY="1")
    w.wait_ready()
    assert w.request("/")[2] == b"Hello World!\n"
    assert w.request("/generator")[2] == "Hello from a generator, caf\u00e9\n".encode()
    assert "str body chunks" not in w.output and "Unhandled object" not in w.output
    serve.assert_clean_stop(w)


@pytest.mark.slow
def test_python_worker_runs_only_its_processes(slug, web):
    app = slug("dotcloud_worker")
    w = web(app)
    w.wait_for("consumer | consumer reading jobs as workers")
    commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in serve.session_pids(w.proc.pid)]
    assert not [c for c in commands if b"uwsgi" in c or c.startswith(b"nginx")], commands
    with pytest.raises(OSError):
        w.request("/", timeout=2)
    serve.assert_clean_stop(w)


@pytest.mark.slow
def test_python_worker_exits_non_zero_when_none_of_its_processes_can_run(slug, web):
    def failing(app: Path) -> None:
        (app / "dotcloud.yml").write_text(
            "workers:\n  type: python-worker\n  processes:\n"
            "    one: python3 -c 'raise SystemExit(3)'\n    two: python3 -c 'raise SystemExit(4)'\n"
        )

    app = slug("dotcloud_worker", failing)
    w = web(app)
    assert w.exit_status(timeout=60) == 1, w.output
    # Both fail at once: supervisord decides which one it reports FATAL first.
    one_first = "dcweb | one could not be started (FATAL); the other" in w.output
    first, last = ("one", "two") if one_first else ("two", "one")
    assert f"dcweb | {first} could not be started (FATAL); the other programs keep running" in w.output
    assert f"dcweb | {last} could not be started (FATAL) and neither could the others (one, two): stopping" \
        in w.output
    assert "dcweb | exiting with status 1: one, two could not be started" in w.output
    assert w.leftovers() == []


@pytest.mark.slow
def test_postinstall_runs_before_the_programs_and_its_failure_stops_the_start(slug, web):
    app = slug("dotcloud_postinstall")
    w = web(app)
    w.wait_ready()
    body = w.request("/")[2].decode()
    assert body.startswith("postinstall ") and body.endswith(f" in {app}\n")
    w.wait_for("dcweb | ready in ")
    out = w.output
    assert out.index("postinstall | postinstall finished") < out.index("dcweb | ready in ")
    serve.assert_clean_stop(w)

    w = web(app, PI_MODE="fail")
    assert w.exit_status() == 1
    assert "postinstall | postinstall starting\npostinstall | postinstall about to fail\n" in w.output
    assert "dcweb | error: postinstall exited with status 3: the app is not started" in w.output
    assert "supervisord" not in w.output and w.leftovers() == []

    start = time.monotonic()
    w = web(app, PI_MODE="sleep", DC_POSTINSTALL_TIMEOUT="1")
    assert w.exit_status() == 1
    assert time.monotonic() - start < 8
    assert "dcweb | error: postinstall did not finish within 1 s (DC_POSTINSTALL_TIMEOUT)" in w.output
    assert w.leftovers() == []  # its whole process group was stopped
    assert not list(Path(w.env["TMPDIR"]).glob("dcweb.*"))

    (app / "postinstall").chmod(0o644)
    w = web(app)
    assert w.exit_status() == 1
    assert "dcweb | error: current/postinstall is not executable: run `chmod +x postinstall`" in w.output
