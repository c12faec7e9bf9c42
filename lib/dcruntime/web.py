"""The web process's parent: a private run directory, supervisord, the log, the exit status.

``bin/dcweb`` execs ``python3 -m dcruntime.web``, which

1. makes a private run directory under ``$TMPDIR`` (default ``/tmp``): ``dcweb.XXXXXXXX``,
   mode 0700 (0710 with nobody's group when run as root, see ``privileges``). It holds nginx's
   pid and temp files, the uWSGI socket, supervisord's pid and control socket, and the log
   FIFOs; its path is exported as ``DC_RUN_DIR``; it is removed at exit;
2. makes one FIFO per program in ``$DC_RUN_DIR/log/``: ``nginx``, ``uwsgi``, ``dcweb`` (the
   event listener) and each ``[program:x]`` of the app's ``current/supervisord.conf``.
   supervisord writes each program's output to its FIFO (``stdout_logfile``); this process
   reads them all and writes every complete line to its own stdout, prefixed with the
   program's name (``nginx | ...``). supervisord itself cannot do that: it would open
   ``/dev/stdout``, which fails (ENXIO) when stdout is a socket, and has no per-line prefix;
   its event mechanism (PROCESS_LOG) has both but drops lines under load;
3. writes ``supervisord-overlay.conf`` there, which config/supervisord.conf includes last:
   for each of the app's programs that names no log file, the settings that send its output
   to its FIFO; and ``user=root`` when run as root (said on purpose: no CRIT line about it);
4. runs ``supervisord -c config/supervisord.conf`` (its own output, on a pipe, is copied to
   stdout as is), forwards TERM, INT, QUIT, HUP, USR1 and USR2 to it, reaps orphans (it may
   be pid 1 in a container), and exits with its status, or 1 if a core program could not be
   started (``dcruntime.events`` leaves ``fatal`` in the run directory).
"""

from __future__ import annotations

import configparser
import contextlib
import errno
import grp
import os
import pwd
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
CORE_LOGS = ("nginx", "uwsgi", "dcweb")
SOCKET_NAME = "uwsgi.sock"
MAX_SOCKET_PATH = 107  # sizeof(sun_path) - 1 on Linux
MAX_LINE = 64 * 1024
SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
LIB_DIR = str(Path(__file__).resolve().parents[1])


class WebError(Exception):
    pass


def say(message: str) -> None:
    sys.stderr.write(f"dcweb | {message}\n")
    sys.stderr.flush()


def privileges(run_dir: Path) -> dict[str, str]:
    """Let nginx's workers reach the uWSGI socket, without opening it to anyone else.

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
    home = Path(os.environ.get("HOME") or os.getcwd())
    closed = [d for d in (home, *home.parents) if not _traversable(d, nobody.pw_gid)]
    if closed:
        say(f"warning: nginx's workers run as nobody and cannot enter {closed[-1]}: static files will get 403")
        say("warning: make the app's directories world-searchable (chmod o+x), or run as a non-root user")
    return {"DC_NGINX_USER": f"nobody {group}", "DC_SOCKET_OWNER": f"0:{nobody.pw_gid}"}


def _traversable(directory: Path, gid: int) -> bool:
    try:
        st = directory.stat()
    except OSError:
        return False
    return bool(st.st_mode & 0o001 or (st.st_gid == gid and st.st_mode & 0o010))


def make_run_dir(tmpdir: str) -> Path:
    try:
        run_dir = Path(os.path.abspath(tempfile.mkdtemp(prefix="dcweb.", dir=tmpdir)))
    except OSError as exc:
        raise WebError(f"cannot create a run directory in TMPDIR={tmpdir}: {exc.strerror}") from None
    if len(str(run_dir / SOCKET_NAME)) > MAX_SOCKET_PATH:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise WebError(f"TMPDIR={tmpdir} is too long for a unix socket path: use a shorter TMPDIR")
    return run_dir


def app_programs(app_conf: Path) -> tuple[list[tuple[str, set[str]]], str | None]:
    """The app's ``[program:x]`` sections with their option names, or why they can't be read."""
    if not app_conf.exists():
        return [], None
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
    try:
        parser.read(app_conf, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return [], f"{app_conf} does not parse: supervisord will say why"
    programs = []
    for section in parser.sections():
        if section.startswith("program:"):
            programs.append((section.removeprefix("program:"), set(parser.options(section))))
    return programs, None


def overlay(programs: list[tuple[str, set[str]]], log_dir: Path, root: bool, note: str | None = None) -> str:
    """supervisord settings merged over config/supervisord.conf and the app's programs."""
    lines = ["; written by dcruntime.web at start"]
    if note:
        lines.append(f"; {note}")
    if root:
        lines += ["[supervisord]", "user=root"]
    for name, options in programs:
        if not SAFE_NAME.match(name):
            continue
        added = []
        for channel in ("stdout", "stderr"):
            if f"{channel}_logfile" not in options:
                added += [f"{channel}_logfile={log_dir / name}", f"{channel}_logfile_maxbytes=0"]
        if added:
            lines += ["", f"[program:{name}]", *added]
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


class LogHub:
    """Program output from FIFOs, line by line with the program's name, plus supervisord's own."""

    def __init__(self, log_dir: Path, names: list[str], out_fd: int = 1) -> None:
        log_dir.mkdir(mode=0o700)
        self.out_fd = out_fd
        self.out_ok = True
        self.prefix: dict[int, bytes] = {}
        self.partial: dict[int, bytes] = {}
        self.keep_open: list[int] = []
        for name in dict.fromkeys(names):
            path = log_dir / name
            os.mkfifo(path, 0o600)
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            # Our own writer: no EOF between the program's restarts.
            self.keep_open.append(os.open(path, os.O_WRONLY))
            self.prefix[fd] = f"{name} | ".encode()
            self.partial[fd] = b""

    def write(self, data: bytes) -> None:
        if self.out_ok and data:
            self.out_ok = write_all(self.out_fd, data)

    def lines(self, fd: int, data: bytes, final: bool = False) -> None:
        data = self.partial[fd] + data
        *complete, rest = data.split(b"\n")
        if (final and rest) or len(rest) > MAX_LINE:
            complete.append(rest)
            rest = b""
        self.partial[fd] = rest
        prefix = self.prefix[fd]
        self.write(b"".join(prefix + line + b"\n" for line in complete))

    def drain(self, fd: int, final: bool = False) -> None:
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                data = b""
            self.lines(fd, data, final=final and not data)
            if not data:
                return

    def run(self, main_fd: int) -> None:
        """Until main_fd (supervisord's stdout) ends, then the FIFOs' last lines."""
        poller = select.poll()
        for fd in [main_fd, *self.prefix]:
            poller.register(fd, select.POLLIN)
        while True:
            for fd, _ in poller.poll():
                if fd != main_fd:
                    self.drain(fd)
                    continue
                data = os.read(main_fd, 65536)
                if not data:
                    for fifo in self.prefix:
                        self.drain(fifo, final=True)
                    return
                self.write(data)

    def close(self) -> None:
        for fd in [*self.prefix, *self.keep_open]:
            with contextlib.suppress(OSError):
                os.close(fd)


class Parent:
    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd
        )
        self.status: int | None = None
        for signum in FORWARDED:
            signal.signal(signum, self.forward)
        signal.signal(signal.SIGCHLD, self.reap)

    def wake(self, sock_path: Path, timeout: float = 5.0) -> None:
        """Start the programs now rather than in a second.

        supervisord spawns programs only after its first poll, which waits up to a second
        unless one of its descriptors is ready: a connection to its control socket is.
        """
        deadline = time.monotonic() + timeout
        while self.status is None and time.monotonic() < deadline:
            with socket.socket(socket.AF_UNIX) as sock:
                try:
                    sock.connect(str(sock_path))
                    return
                except OSError:
                    time.sleep(0.01)

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
                self.status = self.proc.returncode = os.waitstatus_to_exitcode(status)

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
        found = shutil.which("supervisord")
        if found is None:
            raise WebError(f"supervisord is not installed next to {sys.executable} nor on PATH")
        supervisord = Path(found)
    run_dir = make_run_dir(os.environ.get("TMPDIR") or "/tmp")
    hub = None
    try:
        env = child_env(run_dir)
        log_dir = run_dir / "log"
        programs, note = app_programs(home / "current" / "supervisord.conf")
        names = [*CORE_LOGS, *(name for name, _ in programs if SAFE_NAME.match(name))]
        hub = LogHub(log_dir, names)
        text = overlay(programs, log_dir, root=os.geteuid() == 0, note=note)
        (run_dir / "supervisord-overlay.conf").write_text(text, encoding="utf-8")
        parent = Parent([str(supervisord), "-c", str(conf)], env, home)
        threading.Thread(target=parent.wake, args=(run_dir / "supervisor.sock",), daemon=True).start()
        assert parent.proc.stdout is not None
        hub.run(parent.proc.stdout.fileno())
        status = parent.wait()
        fatal = run_dir / "fatal"
        if fatal.exists():
            say(f"exiting with status 1: {fatal.read_text(encoding='utf-8').strip()} could not be started")
            return 1
        return 128 - status if status < 0 else status
    finally:
        if hub is not None:
            hub.close()
        shutil.rmtree(run_dir, ignore_errors=True)


def main() -> int:
    try:
        return run()
    except WebError as exc:
        say(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
