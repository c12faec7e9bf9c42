"""The app's own nginx, uWSGI and supervisord snippets, made to run here; nginx's defaults.

dotCloud apps ship ``current/*nginx.conf`` (server-level nginx rules), ``current/*uwsgi.conf``
(nginx ``uwsgi_*`` directives for the app's location) and ``current/supervisord.conf`` (their
own programs), written for dotCloud's home, ``/home/dotcloud``. At each start they are copied
into the private run directory with ``/home/dotcloud`` replaced by the real ``$HOME``, except
``/home/dotcloud/code`` and ``/home/dotcloud/current``, which lead to those links in the slug's
dotCloud home (``$HOME/.dotcloud/home``, dcruntime.dotcloud); the app's files are never changed.
In the supervisord copy, ``%(here)s`` keeps meaning the app's directory and ``user=dotcloud``
lines (there is no such user here, and the platform's user cannot switch users) are commented
out, leaving the line numbers as they were.

nginx's error pages: ``static/404.html`` for 404, ``static/50x.html`` for 500, 502, 503 and 504
(``static/<code>.html`` first), each only when the file is there at start. They are included
after the app's rules, and nginx uses the first ``error_page`` given for a code, so the app's
own win.
"""

from __future__ import annotations

import re
from pathlib import Path

from .dotcloud import DOTCLOUD_HOME, current

HOME_DOTCLOUD = re.compile(r"/home/dotcloud(?![\w.-])(?:/+(code|current)(?![\w.-]))?")
# supervisord.conf's own spelling of the app directory's links (older versions of this buildpack
# had current and code there): they lead to the dotCloud home's links instead.
ENV_HOME_LINK = re.compile(r"%\(ENV_HOME\)s/+(code|current)(?![\w.-])")
# `location / {` (or `^~ /`): the same location as the buildpack's, which nginx refuses.
ROOT_LOCATION = re.compile(r"^\s*location\s+(?:\^~\s*)?/\s*\{", re.M)
USER_DOTCLOUD = re.compile(r"(?m)^([ \t]*user[ \t]*=[ \t]*dotcloud[ \t]*(?:[;#].*)?)$")
SNIPPETS = ("*nginx.conf", "*uwsgi.conf")
APP_DIR = "app"  # in the run directory: the copies of the app's nginx snippets
SUPERVISORD_APP = "supervisord-app.conf"
NGINX_DEFAULTS = "nginx-defaults.conf"
ERROR_CODES = (404, 500, 502, 503, 504)


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="surrogateescape")


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", errors="surrogateescape")


def rewrite_home(text: str, home: str) -> tuple[str, int]:
    """``/home/dotcloud`` -> ``home`` (``$HOME``, escaped as the caller needs), and
    ``/home/dotcloud/code``, ``/current`` -> those links in the dotCloud home under it."""
    dc_home = f"{home}/{DOTCLOUD_HOME}"
    return HOME_DOTCLOUD.subn(lambda m: f"{dc_home}/{m.group(1)}" if m.group(1) else home, text)


def copy_nginx_snippets(home: Path, run_dir: Path) -> list[str]:
    """current/*nginx.conf and *uwsgi.conf into run_dir/app/; notes on what was rewritten."""
    out = run_dir / APP_DIR
    out.mkdir(exist_ok=True)
    notes = []
    for pattern in SNIPPETS:
        for path in sorted(current(home).glob(pattern)):
            if not path.is_file():
                continue
            text, count = rewrite_home(_read(path), str(home))
            _write(out / path.name, text)
            if count:
                notes.append(f"current/{path.name}: /home/dotcloud -> {home} ({count}x)")
            clash = ROOT_LOCATION.search(text)
            if clash and pattern == "*nginx.conf":
                line = text.count("\n", 0, clash.start()) + 1
                notes.append(
                    f"warning: current/{path.name}:{line} defines `location /`, which the buildpack's nginx.conf"
                    " has (it passes requests to uWSGI); nginx will refuse the duplicate: put uwsgi_* directives"
                    " in uwsgi.conf, and other rules in a more specific location or at server level"
                )
    return notes


def render_supervisord(home: Path, run_dir: Path) -> list[str]:
    """current/supervisord.conf into run_dir/supervisord-app.conf (empty without one)."""
    source = current(home) / "supervisord.conf"
    target = run_dir / SUPERVISORD_APP
    if not source.is_file():
        _write(target, "; the app has no current/supervisord.conf\n")
        return []
    escaped = str(home).replace("%", "%%")
    text, count = rewrite_home(_read(source), escaped)
    text = text.replace("%(here)s", str(current(home)).replace("%", "%%"))
    text = ENV_HOME_LINK.sub(lambda m: f"%(ENV_HOME)s/{DOTCLOUD_HOME}/{m.group(1)}", text)
    text, users = USER_DOTCLOUD.subn(r"; \1  (dropped: every program runs as the platform's user)", text)
    _write(target, text)
    notes = [f"current/supervisord.conf: /home/dotcloud -> {home} ({count}x)"] if count else []
    if users:
        notes.append(f"current/supervisord.conf: user=dotcloud dropped ({users}x): programs run as this user")
    return notes


def nginx_defaults(home: Path) -> str:
    """Server-level nginx rules for the error pages the app's static/ holds."""
    static = current(home) / "static"
    lines = ["# written by dcruntime.web at start: error pages from current/static/"]
    for code in ERROR_CODES:
        names = [f"{code}.html"] + (["50x.html"] if code >= 500 else [])
        page = next((name for name in names if (static / name).is_file()), None)
        if page:
            lines += [
                f"error_page {code} @dc_error_{code};",
                f"location @dc_error_{code} {{ root {static}; try_files /{page} ={code}; }}",
            ]
    return "\n".join(lines) + "\n"


def prepare(home: Path, run_dir: Path, web: bool) -> list[str]:
    """Everything above, into run_dir; notes for the log."""
    notes = render_supervisord(home, run_dir)
    if web:
        notes += copy_nginx_snippets(home, run_dir)
        _write(run_dir / NGINX_DEFAULTS, nginx_defaults(home))
    return notes
