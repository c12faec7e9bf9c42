"""What the web log shows: a few lines at start and stop by default, everything with DC_VERBOSE=1.

A start used to print about fifty lines (uWSGI's banner, supervisord's INFO lines with their own
timestamps, uWSGI's warnings about running as root and about harakiri without post-buffering,
which do not apply behind nginx). Platforms stamp every line already. By default the web log
has, for a web service:

    dcweb | Python 3.13.0, uWSGI 2.0.30, nginx 1.22.1, port 5000
    dcweb | uWSGI processes: 2 (WEB_CONCURRENCY=2 by default: 2 cores, no memory limit)
    dcweb | the app's programs: worker (current/supervisord.conf)
    dcweb | ready in 412 ms (GET / answered 200)

then a line per request (nginx's access log), and on SIGTERM supervisord's line per program
(``supervisord | stopped: nginx (exit status 0)``) and dcweb's exit status. Errors, tracebacks,
warnings that apply, and what happens after the start (a program that exits, its restart) are
always shown. ``DC_VERBOSE=1`` shows everything (uWSGI's banner, every supervisord line);
so do uWSGI's own logging options (``UWSGI_LOG*``, ``UWSGI_DISABLE_LOGGING``,
``UWSGI_MEMORY_REPORT`` or dotcloud.yml's ``uwsgi_memory_report``) for uWSGI's output.

The filters work on complete lines (``dcruntime.web.LogHub`` hands them whole reads); uWSGI's
is one regular expression over each read, no Python work per line.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Mapping
from pathlib import Path

TRUE = ("1", "true", "yes", "on")

# uWSGI's lines at start, on a restart of its master, and at a graceful stop: what it found and
# did, none of it an error. A line that is not here (an error, a traceback, a worker that died or
# was respawned, harakiri) is shown.
UWSGI_ROUTINE = (
    r"\[uWSGI\] getting INI configuration from ",
    r"\*\*\* Starting uWSGI ",
    r"compiled with version: ",
    r"os: \w+-",
    r"nodename: \S+$",
    r"machine: \S+$",
    r"clock source: \w+$",
    r"pcre jit ",
    r"detected number of CPU cores: \d+$",
    r"current working directory: ",
    r"writing pidfile to ",
    r"detected binary path: ",
    r"chdir\(\) to ",
    r"your processes number limit is \d+$",
    r"your memory page size is \d+ bytes$",
    # nginx buffers request bodies: a slow upload never holds a worker.
    r" \*\*\* WARNING: you have enabled harakiri without post buffering\. ",
    r"detected max file descriptor number: \d+$",
    r"lock engine: ",
    r"thunder lock: ",
    r"uwsgi socket \d+ bound to UNIX address ",
    # As root on purpose (a container's default): the app runs as the container's user.
    r"uWSGI running as root, you can use --uid/--gid/--chroot options$",
    r"\*\*\* WARNING: you are running uWSGI as root !!! \(use the --uid flag\) \*\*\* ?$",
    r"Python version: ",
    r"--- Python VM already initialized ---$",
    r"Python main interpreter initialized at ",
    r"python threads support enabled$",
    r"your server socket listen backlog is limited to \d+ connections$",
    r"your mercy for graceful operations on workers is \d+ seconds$",
    r"mapped \d+ bytes \(\d+ KB\) for \d+ cores$",
    r"\*\*\* Operational MODE: ",
    r"added \S.* to pythonpath\.$",
    r"WSGI app \d+ \(mountpoint='[^']*'\) ready in \d+ seconds on interpreter ",
    r"\*\*\* uWSGI is running in multiple interpreter mode \*\*\*$",
    r"spawned uWSGI master process \(pid: \d+\)$",
    r"spawned uWSGI worker \d+ \(pid: \d+, cores: \d+\)$",
    r"running \"unix_signal:15 gracefully_kill_them_all\" \(master-start\)\.\.\.$",
    r"graceful shutdown triggered\.\.\.$",
    r"Gracefully killing worker \d+ \(pid: \d+\)\.\.\.$",
    r"worker \d+ buried after \d+ seconds$",
    r"goodbye to uWSGI\.$",
    r"VACUUM: ",
)
# The date uWSGI puts before some lines even without --logdate (uwsgi_log_verbose): "Fri Dec  4 17:18:46 2026 - ".
UWSGI_DATE = r"[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4} - "
_UWSGI_ROUTINE = re.compile(f"(?m)^(?:{UWSGI_DATE})?(?:{'|'.join(UWSGI_ROUTINE)})[^\n]*\n".encode())
_UWSGI_DATE = re.compile(f"(?m)^{UWSGI_DATE}".encode())

# supervisord's own lines: "2026-12-04 17:10:40,128 INFO spawned: 'uwsgi' with pid 22819".
_SUPERVISORD_LINE = re.compile(rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ([A-Z]+) (.*)$")
# What supervisord does as asked. Shown: WARN and worse, exits, programs given up, stops, and a
# program's RUNNING state after it exited (a restart).
_SUPERVISORD_ROUTINE = re.compile(
    rb"^(?:Included extra file |Set uid to user |RPC interface |supervisord started with pid |spawned: "
    rb"|waiting for .* to die$)"
)
_SUCCESS = re.compile(rb"^success: (\S+) entered RUNNING state")
_EXITED = re.compile(rb"^exited: (\S+) \(")


def flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() in TRUE


def uwsgi_verbose(environ: Mapping[str, str], values: Mapping[str, str]) -> bool:
    """uWSGI's output unfiltered: DC_VERBOSE=1, or one of uWSGI's own logging options is set."""
    if flag(environ, "DC_VERBOSE") or "memory-report" in values:
        return True
    return any(
        name.startswith("UWSGI_LOG") or name in ("UWSGI_DISABLE_LOGGING", "UWSGI_MEMORY_REPORT")
        for name in environ
    )


def uwsgi_filter(chunk: bytes) -> bytes:
    """Complete lines of uWSGI's output without its routine ones, nor the date before some."""
    return _UWSGI_DATE.sub(b"", _UWSGI_ROUTINE.sub(b"", chunk))


class SupervisordFilter:
    """supervisord's lines without their timestamps (``INFO`` dropped, ``WARN`` and worse kept);
    by default without the routine ones."""

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.exited: set[bytes] = set()  # programs that exited since they last ran

    def line(self, line: bytes) -> bytes | None:
        match = _SUPERVISORD_LINE.match(line)
        if match is None:
            return line  # a continuation (a traceback) or not supervisord's own format
        level, text = match.groups()
        if self.verbose:
            return line[match.start(1):]
        exited = _EXITED.match(text)
        if exited:
            self.exited.add(exited.group(1))
        if level == b"INFO":
            if _SUPERVISORD_ROUTINE.match(text):
                return None
            success = _SUCCESS.match(text)
            if success:
                if success.group(1) not in self.exited:
                    return None
                self.exited.discard(success.group(1))
            return text
        return level + b" " + text

    def __call__(self, chunk: bytes) -> bytes:
        kept = [line for line in (self.line(raw) for raw in chunk[:-1].split(b"\n")) if line is not None]
        return b"\n".join(kept) + b"\n" if kept else b""


def _dist_version(names: tuple[str, ...]) -> str | None:
    """The version of the first installed distribution of these names (from its dist-info
    directory's name: importlib.metadata would cost ~40 ms at every start)."""
    wanted = re.compile(rf"^(?:{'|'.join(names)})-([^-]+)\.dist-info$", re.I)
    for entry in sys.path:
        if not entry.endswith("site-packages"):
            continue
        try:
            found = [m.group(1) for m in map(wanted.match, sorted(p.name for p in Path(entry).iterdir())) if m]
        except OSError:
            continue
        if found:
            return re.sub(r"\.post\d+$", "", found[0])
    return None


def versions(home: Path, port: str | None) -> str:
    """``Python 3.13.0, uWSGI 2.0.30, nginx 1.22.1, port 5000`` (the worker service: Python only)."""
    parts = ["Python {}.{}.{}".format(*sys.version_info[:3])]
    if port is not None:
        uwsgi = _dist_version(("pyuwsgi", "uwsgi"))
        if uwsgi:
            parts.append(f"uWSGI {uwsgi}")
        with contextlib.suppress(OSError, IndexError):
            parts.append("nginx " + (home / ".dotcloud/nginx/VERSION").read_text(encoding="utf-8").split()[0])
        parts.append(f"port {port}")
    return ", ".join(parts)


def programs_line(app_programs: list[str], processes: list[str]) -> str | None:
    """The app's own programs, where they come from; None when there are none."""
    parts = []
    if app_programs:
        parts.append(f"{', '.join(app_programs)} (current/supervisord.conf)")
    if processes:
        parts.append(f"{', '.join(processes)} (dotcloud.yml)")
    return f"the app's programs: {'; '.join(parts)}" if parts else None
