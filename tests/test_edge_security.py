"""What nginx must never serve, and who may reach what, against a running slug.

test/fixtures/edge_app (the sample app's shape, plus its own nginx.conf, a dotcloud.yml and
static files) gets `.env`, `.git/config` and dotfiles before it is compiled, once per run
(test_faults.built_slug); each test starts it with the helpers of test_web_serve and makes real
requests on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest
import test_web_serve as serve
from test_faults import built_slug

place, web_builder, web = serve.place, serve.web_builder, serve.web
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("edge")]

# Every file of the app that must never be served, by a marker only it holds.
MARKERS = {
    "wsgi.py": "EDGE-SOURCE-MARKER",
    "requirements.txt": "EDGE-REQUIREMENTS-MARKER",
    "dotcloud.yml": "EDGE-DOTCLOUD-MARKER",
    "nginx.conf": "EDGE-NGINX-MARKER",
    ".env": "EDGE-DOTENV-MARKER",
    ".git/config": "EDGE-GIT-MARKER",
    ".hidden": "EDGE-DOTFILE-MARKER",
    "static/.hidden": "EDGE-STATIC-DOTFILE-MARKER",
    "static/.git/HEAD": "EDGE-STATIC-GIT-MARKER",
    "static/well-known/.hidden": "EDGE-WELL-KNOWN-DOTFILE-MARKER",
}
SECRET = "EDGE-ENVIRONMENT-JSON-MARKER"  # a config var: in $HOME/environment.json at start
# Also never in a response: the rendered nginx.conf (it lives in the run dir) and the slug's runtime.
NEVER = [*MARKERS.values(), SECRET, "uwsgi_pass unix:", "[supervisord]", "root:x:0:0"]

PATHS = [
    "/wsgi.py", "/requirements.txt", "/dotcloud.yml", "/nginx.conf", "/README.md",
    "/.env", "/.git/config", "/.git/", "/.git/HEAD", "/.hidden",
    "/environment.json", "/environment.yml", "/code/environment.json", "/current/.env",
    "/static/.hidden", "/static/.git/HEAD", "/static/%2ehidden", "/media/.hidden", "/media/.git/HEAD",
    "/.well-known/.hidden", "/.well-known/../.env", "/.well-known/%2e%2e/wsgi.py", "/.well-known",
    "/static/../wsgi.py", "/static/../.env", "/media/../wsgi.py", "/static//../wsgi.py",
    "/static/%2e%2e/wsgi.py", "/static/%2E%2E/.env", "/static/..%2fwsgi.py", "/static/%2e%2e%2fwsgi.py",
    "/%2e%2e/wsgi.py", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/static/../../../../etc/passwd",
    "/static/%252e%252e/wsgi.py", "/static/%252e%252e%252fwsgi.py", "/%252e%252e/wsgi.py",
    "/static/..%5cwsgi.py", "/static/%5c..%5cwsgi.py", "/static/.%2e/wsgi.py",
    "/config/nginx.conf.template", "/config/supervisord.conf", "/.dotcloud/service.json",
    "/.profile.d/python-dotcloud.sh", "/.dotcloud/python/bin/python3", "/Procfile",
]


def add_secrets(app: Path) -> None:
    for name, marker in MARKERS.items():
        path = app / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            assert marker in path.read_text(), name
        else:
            path.write_text(f"{marker}\n")


@pytest.fixture(scope="module")
def app(web_builder, shared_dir):
    slug = built_slug(web_builder, shared_dir, "edge_app", add_secrets)
    yield slug
    shutil.rmtree(slug.parent, ignore_errors=True)


@pytest.fixture
def running(app, web):
    w = web(app, EDGE_SECRET=SECRET)
    w.wait_ready()
    assert SECRET in (app / "environment.json").read_text()
    yield w
    serve.assert_clean_stop(w)


def raw_get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET with the path exactly as written (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.putheader("User-Agent", "dcweb-tests")
        conn.endheaders()
        res = conn.getresponse()
        return res.status, dict(res.getheaders()), res.read()
    finally:
        conn.close()


def test_no_file_of_the_app_is_served_only_static_ones(running):
    w = running
    leaks = []
    for path in PATHS:
        status, headers, body = raw_get(w.port, path)
        text = body.decode(errors="replace")
        found = [marker for marker in NEVER if marker in text]
        # 400/403/404 from nginx, or the app's own answer; never the file.
        if found or status not in (400, 403, 404) or headers.get("Server") != "nginx" or "nginx/" in text:
            leaks.append(f"{path}: {status} {headers.get('Server')} {text[:80]!r} {found}")
    assert leaks == [], "\n".join(leaks)
    # Dot paths and sources reach the app (its own 404), not a file.
    assert raw_get(w.port, "/.env")[0::2] == (404, b"edge app: no page at /.env\n")
    assert raw_get(w.port, "/static/.hidden")[0::2] == (404, b"edge app: no page at /static/.hidden\n")
    assert raw_get(w.port, "/media/.hidden")[0::2] == (404, b"edge app: no page at /media/.hidden\n")
    assert raw_get(w.port, "/static/../wsgi.py")[0::2] == (404, b"edge app: no page at /wsgi.py\n")

    # What is meant to be served still is: static/, the app's own nginx.conf location, error pages.
    hello = (w.app / "static/hello.txt").read_bytes()
    assert raw_get(w.port, "/static/hello.txt")[0::2] == (200, hello)
    assert raw_get(w.port, "/media/hello.txt")[0::2] == (200, hello)
    # .well-known is public by definition: the app's own location there still serves files.
    security = (w.app / "static/well-known/security.txt").read_bytes()
    assert raw_get(w.port, "/.well-known/security.txt")[0::2] == (200, security)
    assert raw_get(w.port, "/.well-known/.hidden")[0::2] == (404, b"edge app: no page at /.well-known/.hidden\n")
    assert raw_get(w.port, "/static/missing.txt")[0::2] == (404, b"edge app: the static 404 page\n")
    assert raw_get(w.port, "/")[0::2] == (200, b"edge app: home\n")


def test_no_version_in_headers_or_error_pages(running):
    w = running
    for path in ("/", "/static/hello.txt", "/static/missing.txt", "/static/", "/%2e%2e/x"):
        status, headers, body = raw_get(w.port, path)
        assert headers["Server"] == "nginx", path
        assert b"nginx/" not in body and b"uWSGI" not in body, (path, status, body)
    # An error page nginx writes itself (no static/400.html): no version either.
    status, headers, body = raw_get(w.port, "/%2e%2e/x")
    assert status == 400 and b"<center>nginx</center>" in body


def whoami(w: serve.Web, headers: dict[str, str]) -> dict[str, str | None]:
    status, _, body = w.request("/whoami", headers=headers)
    assert status == 200, body
    return json.loads(body)


def test_forwarded_headers_the_app_sees(running):
    """REMOTE_ADDR is the peer (the platform's router); X-Forwarded-For is passed as the router
    made it (it appends the client's address); X-Real-IP is set by nginx to that last address and
    never taken from the client."""
    w = running
    assert whoami(w, {}) == {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": None,
                             "HTTP_X_REAL_IP": "127.0.0.1", "HTTP_PROXY": None}
    seen = whoami(w, {"X-Forwarded-For": "198.51.100.9, 203.0.113.7", "X-Real-IP": "6.6.6.6"})
    assert seen["REMOTE_ADDR"] == "127.0.0.1"
    assert seen["HTTP_X_FORWARDED_FOR"] == "198.51.100.9, 203.0.113.7"
    assert seen["HTTP_X_REAL_IP"] == "203.0.113.7"
    assert whoami(w, {"X-Forwarded-For": "203.0.113.7"})["HTTP_X_REAL_IP"] == "203.0.113.7"
    # A client's own X-Real-IP, under any spelling, and Proxy (httpoxy) never reach the app.
    assert whoami(w, {"X-Real-IP": "6.6.6.6"})["HTTP_X_REAL_IP"] == "127.0.0.1"
    assert whoami(w, {"X_Real_IP": "6.6.6.6"})["HTTP_X_REAL_IP"] == "127.0.0.1"
    assert not whoami(w, {"Proxy": "http://6.6.6.6:8080"})["HTTP_PROXY"]


# --- who may reach what ---------------------------------------------------------------------

PROBE = r"""
import json, os, socket, sys
out = {"list_run_dir": True}
try:
    os.listdir(sys.argv[1])
except OSError:
    out["list_run_dir"] = False
for name in ("uwsgi.sock", "supervisor.sock"):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(os.path.join(sys.argv[1], name))
        out[name] = True
    except OSError:
        out[name] = False
    finally:
        s.close()
print(json.dumps(out))
"""


def probe(run_dir: Path, uid: int, gid: int) -> dict[str, bool]:
    argv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "/usr/bin/python3", "-I", "-c", PROBE,
            str(run_dir)]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd="/")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_the_run_directory_and_its_sockets_are_private(running):
    w = running
    (run_dir,) = Path(w.env["TMPDIR"]).glob("dcweb.*")
    supervisor_sock = (run_dir / "supervisor.sock").stat()
    uwsgi_sock = (run_dir / "uwsgi.sock").stat()
    assert supervisor_sock.st_mode & 0o777 == 0o700
    assert uwsgi_sock.st_mode & 0o007 == 0 and run_dir.stat().st_mode & 0o007 == 0
    if os.geteuid() != 0 or shutil.which("setpriv") is None or not Path("/usr/bin/python3").exists():
        pytest.skip("checking from other users needs root, setpriv and /usr/bin/python3")
    nobody = pwd.getpwnam("nobody")
    # Anyone else: not even the names in the directory.
    assert probe(run_dir, 4321, 4321) == {"list_run_dir": False, "uwsgi.sock": False, "supervisor.sock": False}
    # As root, nginx's workers run as nobody: they (and only they) may reach uWSGI, not supervisord.
    assert probe(run_dir, nobody.pw_uid, nobody.pw_gid) == {
        "list_run_dir": False, "uwsgi.sock": True, "supervisor.sock": False}


def sockets(pids: list[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def inet_sockets(table: str, inodes: set[str]) -> list[tuple[str, int]]:
    """(state, local port) of this table's sockets that belong to the given inodes."""
    found = []
    for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[9] in inodes:
            found.append((fields[3], int(fields[1].rsplit(":", 1)[1], 16)))
    return found


def test_only_port_listens(running):
    w = running
    inodes = sockets(serve.session_pids(w.proc.pid))
    assert inodes, "no sockets found: cannot read /proc/<pid>/fd"
    listening = {port for table in ("tcp", "tcp6") for state, port in inet_sockets(table, inodes) if state == "0A"}
    assert listening == {w.port}
    assert [s for table in ("udp", "udp6") for s in inet_sockets(table, inodes)] == []
    # supervisord has no TCP control port: its config has a unix socket only.
    conf = (w.app / "config/supervisord.conf").read_text()
    assert "[inet_http_server]" not in conf and "[unix_http_server]" in conf
