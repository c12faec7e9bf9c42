"""The web process's parent: a private run directory, supervisord, its log, its exit status.

``bin/dcweb`` execs ``python3 -m dcruntime.web``, which

1. makes a private run directory under ``$TMPDIR`` (default ``/tmp``): ``dcweb.XXXXXXXX``, mode
   0700 (0710 with nobody's group as its group when run as root, see ``privileges``). It holds
   nginx's pid and temp files, the uWSGI socket, supervisord's pid and control socket; its path
   is exported as ``DC_RUN_DIR`` and it is removed at exit;
2. writes ``supervisord-overlay.conf`` there, which config/supervisord.conf includes last:
   for each ``[program:x]`` of the app's own ``current/supervisord.conf`` that names no log
   file, the settings that send its output to this log (``stdout_logfile=NONE``,
   ``stdout_events_enabled=true``, same for stderr); ``user=root`` when run as root (said
   on purpose, so supervisord does not log a CRIT about it). The control socket's password,
   new at each start, is ``DC_SUPERVISOR_PASSWORD`` in the environment of every program;
3. runs ``supervisord -c config/supervisord.conf`` with its stdout and stderr on a pipe, and
   copies that pipe to its own stdout. supervisord opens ``/dev/stdout`` for its children's
   logs, which fails with ENXIO when stdout is a socket; a pipe always works;
4. forwards TERM, INT, QUIT, HUP, USR1 and USR2 to supervisord, reaps orphans (it may be pid 1
   in a container), and exits with supervisord's status, or 1 if a core program went FATAL
   (``dcruntime.events`` leaves ``fatal`` in the run directory).
"""

from __future__ import annotations

import configparser
import contextlib
import errno
import grp
import os
import pwd
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
SOCKET_NAME = "uwsgi.sock"
MAX_SOCKET_PATH = 107  # sizeof(sun_path) - 1 on Linux
LOG_KEYS = {
    "stdout": ("stdout_logfile", "stdout_events_enabled"),
    "stderr": ("stderr_logfile", "stderr_events_enabled"),
}
LIB_DIR = str(Path(__file__).resolve().parents[1])


class WebError(Exception):
    pass


def say(message: str) -> None:
    sys.stderr.write(f"dcweb | {message}\n")
    sys.stderr.flush()


def privileges(run_dir: Path) -> dict[str, str]:
    """Make nginx's workers able to reach the uWSGI socket, without opening it to anyone else.

    Unprivileged (the platform case) everything runs as one user: the directory stays 0700 and
    the socket 0660 (uWSGI's ``chmod-socket``). As root, nginx's workers must not run as root
    (they parse untrusted HTTP), so they run as ``nobody``; the run directory becomes 0710
    with nobody's group, and the socket is chowned to ``root:<that group>``, mode 0660. Only
    root and that group can reach the socket; nothing is world-writable.
    """
    if os.geteuid() != 0:
        return {}
    try:
        nobody = pwd.getpwnam("nobody")
        group = grp.getgrgid(nobody.pw_gid).gr_name
    except KeyError:
        say("warning: running as root and there is no user 'nobody': nginx's workers run as root")
        return {"DC_NGINX_USER": "root"}
    os.chown(run_dir, 0, nobody.pw_gid)
    run_dir.chmod(0o710)
    return {"DC_NGINX_USER": f"nobody {group}", "DC_SOCKET_OWNER": f"0:{nobody.pw_gid}"}


def make_run_dir(tmpdir: str) -> Path:
    try:
        run_dir = Path(tempfile.mkdtemp(prefix="dcweb.", dir=tmpdir))
    except OSError as exc:
        raise WebError(f"cannot create a run directory in TMPDIR={tmpdir}: {exc.strerror}") from None
    if len(str(run_dir / SOCKET_NAME)) > MAX_SOCKET_PATH:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise WebError(f"TMPDIR={tmpdir} is too long for a unix socket path: use a shorter TMPDIR")
    return run_dir


def overlay(app_conf: Path, root: bool) -> str:
    """supervisord settings merged over config/supervisord.conf and the app's programs."""
    lines = ["; written by dcruntime.web at start"]
    if root:
        lines += ["[supervisord]", "user=root"]
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
    try:
        parser.read(app_conf, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return "\n".join([*lines, f"; {app_conf} does not parse: supervisord will say why"]) + "\n"
    for section in parser.sections():
        if not section.startswith("program:"):
            continue
        added = []
        for logfile, events in LOG_KEYS.values():
            if not parser.has_option(section, logfile):
                added += [f"{logfile}=NONE", f"{events}=true"]
        if added:
            lines += ["", f"[{section}]", *added]
    return "\n".join(lines) + "\n"


def child_env(run_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    # Our own PYTHONPATH entry (from bin/dcweb) is not for the app.
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != LIB_DIR]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    else:
        env.pop("PYTHONPATH", None)
    env["DC_RUN_DIR"] = str(run_dir)
    env["DC_SUPERVISOR_PASSWORD"] = secrets.token_hex(16)
    env.setdefault("TMPDIR", "/tmp")
    env.setdefault("NGINX_WORKERS", "2")
    env.update(privileges(run_dir))
    return env


def write_all(fd: int, data: bytes) -> bool:
    """Write everything to fd; False once the reader is gone (the output is then dropped)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:  # a non-blocking stdout (some socket holders hand us one)
            select.select([], [fd], [], 1.0)
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.ECONNRESET, errno.EBADF):
                return False
            raise
    return True


class Parent:
    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd
        )
        self.status: int | None = None
        for signum in FORWARDED:
            signal.signal(signum, self.forward)
        signal.signal(signal.SIGCHLD, self.reap)

    def forward(self, signum: int, _frame) -> None:
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signum)

    def reap(self, _signum: int = 0, _frame=None) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.proc.pid:
                self.status = os.waitstatus_to_exitcode(status)
                self.proc.returncode = self.status

    def relay(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        out_ok = True
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            if out_ok:
                out_ok = write_all(1, data)

    def wait(self) -> int:
        while self.status is None:
            try:
                _, status = os.waitpid(self.proc.pid, 0)
            except ChildProcessError:  # reaped by the SIGCHLD handler meanwhile
                break
            self.status = self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.reap()
        return 1 if self.status is None else self.status


def run() -> int:
    home = Path(os.environ.get("HOME") or os.getcwd())
    conf = home / "config" / "supervisord.conf"
    if not conf.is_file():
        raise WebError(f"{conf} is missing: the slug was not built by this buildpack's compile")
    supervisord = Path(sys.executable).parent / "supervisord"
    if not supervisord.exists():
        supervisord = Path(shutil.which("supervisord") or "supervisord")
    run_dir = make_run_dir(os.environ.get("TMPDIR") or "/tmp")
    try:
        env = child_env(run_dir)
        text = overlay(home / "current" / "supervisord.conf", root=os.geteuid() == 0)
        (run_dir / "supervisord-overlay.conf").write_text(text, encoding="utf-8")
        parent = Parent([str(supervisord), "-c", str(conf)], env, home)
        parent.relay()
        status = parent.wait()
        fatal = run_dir / "fatal"
        if fatal.exists():
            name = fatal.read_text(encoding="utf-8").strip()
            say(f"exiting with status 1: {name} could not be started")
            return 1
        if status < 0:
            return 128 - status
        return status
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def main() -> int:
    try:
        return run()
    except WebError as exc:
        say(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
