"""The web process's parent: dotCloud's start sequence, supervisord, the log, the exit status.

``bin/dcweb`` execs ``python3 -m dcruntime.web``, which titles itself ``dcweb``
(``dcruntime.proctitle``), says what runs (Python, uWSGI and nginx versions, the port:
``dcruntime.startlog``), and

1. reads ``.dotcloud/service.json``; as root, chooses the user of nginx's workers and checks
   that they can enter the app's directory (``dcruntime.reach``), or stops at once saying which
   directory and how to fix it; makes the programs' environment (``dcruntime.dotcloud``:
   dotcloud.yml's ``environment:``, ``DOTCLOUD_*`` keys; the platform's config vars win), and
   checks uWSGI's settings (``dcruntime.uwsgiconf``) and the postinstall hook before anything runs;
2. writes ``environment.json``, ``.yml`` and ``.yaml`` into ``$HOME`` (mode 0600), links
   ``$HOME/env`` to the slug's Python, then runs the postinstall hook (``dcruntime.postinstall``);
   its failure stops here, with status 1;
3. makes a private run directory under ``$TMPDIR`` (default ``/tmp``; as root, under ``/tmp``
   or another fallback when nginx's workers cannot enter ``$TMPDIR``): ``dcweb.XXXXXXXX``,
   mode 0700 (0710 with the workers' group when run as root, see ``privileges``). It holds nginx's
   pid and temp files, the uWSGI socket and ini file, supervisord's pid and control socket, the
   log FIFOs, and the app's snippets as run here (``dcruntime.appconf``: ``/home/dotcloud``
   rewritten); its path is exported as ``DC_RUN_DIR``; it is removed at exit;
4. makes one FIFO per program in ``$DC_RUN_DIR/log/``: ``nginx``, ``uwsgi``, ``dcweb`` (the
   event listener), each ``[program:x]`` of the app's ``current/supervisord.conf`` and each of
   dotcloud.yml's ``processes:``. supervisord writes each program's output to its FIFO
   (``stdout_logfile``); this process reads them all and writes every complete line to its own
   stdout, prefixed with the program's name (``nginx | ...``). supervisord itself cannot do
   that: it would open ``/dev/stdout``, which fails (ENXIO) when stdout is a socket, and has no
   per-line prefix; its event mechanism (PROCESS_LOG) has both but drops lines under load.
   nginx's access log skips supervisord: nginx writes it, buffered (4 KiB, at least every
   second), straight into one more FIFO, ``$DC_RUN_DIR/nginx-access.log``, also shown as
   ``nginx | ...``. Each read is prefixed line by line with a few bytes operations, not a
   Python loop per line, so the log costs little CPU at thousands of requests per second.
   uWSGI's and supervisord's routine lines are left out (``dcruntime.startlog``; all of them
   with ``DC_VERBOSE=1``);
5. writes ``supervisord-overlay.conf`` there, which config/supervisord.conf includes last
   (``dcruntime.programs``): the ``processes:`` programs, log settings for the app's programs,
   ``user=root`` when run as root, and for a ``python-worker`` service nginx and uWSGI left out;
6. runs ``supervisord -c config/supervisord.conf`` (its own output, on a pipe, is shown as
   ``supervisord | ...``), logs ``ready in N ms`` once ``GET /`` through nginx answers
   (``dcruntime.probe``), forwards TERM, INT, QUIT, HUP, USR1 and USR2 to it, reaps orphans (it may
   be pid 1 in a container), and exits with its status, or 1 if a core program could not be
   started, or every program of a python-worker service (``dcruntime.events`` leaves ``fatal``
   in the run directory), saying so.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from . import appconf, dotcloud, limits, postinstall, probe, proctitle, programs, reach, render, startlog, uwsgiconf
from .dotcloud import BootError, app_environ

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
CORE_LOGS = ("nginx", "uwsgi", "dcweb")
SOCKET_NAME = "uwsgi.sock"
ACCESS_LOG = "nginx-access.log"  # a FIFO: config/nginx.conf.template's access_log, buffered
MAX_SOCKET_PATH = 107  # sizeof(sun_path) - 1 on Linux
MAX_LINE = 64 * 1024
PIPE_SIZE = 1024 * 1024  # the FIFOs' buffer; /proc/sys/fs/pipe-max-size's default
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Python 3.10+ names it
READ_SIZE = 256 * 1024
LIB_DIR = dotcloud.LIB_DIR
STARTED = 0.0  # when the web process started (dcruntime.probe.started)


Filter = Callable[[bytes], bytes]


class WebError(Exception):
    pass


def say(message: str) -> None:
    sys.stderr.write(f"dcweb | {message}\n")
    sys.stderr.flush()


def privileges(run_dir: Path, workers: reach.Workers | None) -> dict[str, str]:
    """Let nginx's workers reach the uWSGI socket, without opening it to anyone else.

    Unprivileged (the platform case; ``workers`` is None) everything runs as one user: the
    directory stays 0700 and the socket 0660 (uWSGI's ``chmod-socket``). As root, nginx's
    workers run as the user ``dcruntime.reach`` chose (``nobody``): the run directory becomes
    0710 with that user's group, and the socket is chowned to ``root:<that group>``, mode 0660.
    Only root and that group can reach the socket; nothing is world-writable.
    """
    if workers is None:
        return {}
    if workers.uid == 0:
        return {"DC_NGINX_USER": workers.directive}
    os.chown(run_dir, 0, workers.gid)
    run_dir.chmod(0o710)
    return {"DC_NGINX_USER": workers.directive, "DC_SOCKET_OWNER": f"0:{workers.gid}"}


def make_run_dir(tmpdir: str) -> Path:
    try:
        run_dir = Path(os.path.abspath(tempfile.mkdtemp(prefix="dcweb.", dir=tmpdir)))
    except OSError as exc:
        raise WebError(f"cannot create a run directory in TMPDIR={tmpdir}: {exc.strerror}") from None
    if len(str(run_dir / SOCKET_NAME)) > MAX_SOCKET_PATH:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise WebError(f"TMPDIR={tmpdir} is too long for a unix socket path: use a shorter TMPDIR")
    return run_dir


def child_env(
    run_dir: Path, base: dict[str, str] | None = None, workers: reach.Workers | None = None
) -> dict[str, str]:
    env = dict(app_environ() if base is None else base)
    env["DC_RUN_DIR"] = str(run_dir)
    env["DC_SUPERVISOR_PASSWORD"] = os.urandom(16).hex()  # not `secrets`: 17 ms to import
    for name, value in render.WEB_DEFAULTS.items():
        env.setdefault(name, value)
    env.update(privileges(run_dir, workers))
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

    def __init__(
        self,
        log_dir: Path,
        names: list[str],
        out_fd: int = 1,
        extra: dict[Path, str] | None = None,
        filters: dict[str, Filter] | None = None,
    ) -> None:
        """A FIFO log_dir/NAME for each name, and one at each path of ``extra`` (path -> name);
        ``filters``: name -> what to make of a read's complete lines (``dcruntime.startlog``)."""
        log_dir.mkdir(mode=0o700)
        self.out_fd = out_fd
        self.out_ok = True
        self.prefix: dict[int, bytes] = {}
        self.newline: dict[int, bytes] = {}
        self.partial: dict[int, bytes] = {}
        self.filters: dict[int, Filter] = {}
        self.fifos: list[int] = []
        self.keep_open: list[int] = []
        self.named = filters or {}
        fifos = {log_dir / name: name for name in dict.fromkeys(names)} | (extra or {})
        for path, name in fifos.items():
            os.mkfifo(path, 0o600)
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            # A bigger pipe than the default 64 KiB: a burst of log lines does not stall a writer
            # (an nginx worker) while this process is busy. The system's limit may refuse it.
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
            # Our own writer: no EOF between the program's restarts.
            self.keep_open.append(os.open(path, os.O_WRONLY))
            self.fifos.append(fd)
            self.add(fd, name)

    def add(self, fd: int, name: str) -> None:
        self.prefix[fd] = f"{name} | ".encode()
        self.newline[fd] = b"\n" + self.prefix[fd]
        self.partial[fd] = b""
        if name in self.named:
            self.filters[fd] = self.named[name]

    def write(self, data: bytes) -> None:
        if self.out_ok and data:
            self.out_ok = write_all(self.out_fd, data)

    def lines(self, fd: int, data: bytes, final: bool = False) -> None:
        """Write data's complete lines with the prefix, keep the rest for the next read.

        A few C-level byte operations per read, whatever the number of lines in it (a read of
        a buffered access log holds dozens): no Python work per line.
        """
        if self.partial[fd]:
            data = self.partial[fd] + data
        end = data.rfind(b"\n") + 1
        rest = data[end:]
        if rest and (final or len(rest) > MAX_LINE):
            data, end, rest = data + b"\n", len(data) + 1, b""
        self.partial[fd] = rest
        if not end:
            return
        chunk = data[:end]
        if fd in self.filters:
            chunk = self.filters[fd](chunk)
        if chunk:
            self.write(self.prefix[fd] + chunk[:-1].replace(b"\n", self.newline[fd]) + b"\n")

    def drain(self, fd: int, final: bool = False) -> None:
        while True:
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                data = b""
            self.lines(fd, data, final=final and not data)
            if not data:
                return

    def run(self, main_fd: int) -> None:
        """Until main_fd (supervisord's stdout, shown as ``supervisord | ...``) ends, then the FIFOs' last lines."""
        self.add(main_fd, "supervisord")
        poller = select.poll()
        for fd in [main_fd, *self.fifos]:
            poller.register(fd, select.POLLIN)
        while True:
            for fd, _ in poller.poll():
                if fd != main_fd:
                    self.drain(fd)
                    continue
                data = os.read(main_fd, READ_SIZE)
                if not data:
                    self.lines(main_fd, b"", final=True)
                    for fifo in self.fifos:
                        self.drain(fifo, final=True)
                    return
                self.lines(main_fd, data)

    def close(self) -> None:
        for fd in [*self.fifos, *self.keep_open]:
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


def prepare(home: Path, service: dict) -> tuple[dict[str, str], str | None, bool]:
    """Steps 1 and 2: the environment, the uWSGI ini text (None for a worker), postinstall;
    whether uWSGI's output is shown whole (``dcruntime.startlog.uwsgi_verbose``)."""
    env = dotcloud.environment(service, app_environ(), home)
    config = service.get("config") if isinstance(service.get("config"), dict) else {}
    ini = None
    uwsgi_verbose = False
    edge: dict[str, str] = {}
    if not dotcloud.is_worker(service):
        values = uwsgiconf.options(config, env)
        ini = uwsgiconf.ini_text(values)
        uwsgi_verbose = startlog.uwsgi_verbose(env, values)
        edge = limits.template_vars(values, env)  # nginx's body size and timeout (after environment.json)
        for warning in uwsgiconf.conflicts(env):
            say(f"warning: {warning}")
        say(uwsgiconf.processes_note(config, env, values))
        # The app's own programs see the count too, as on Heroku (not written to environment.json:
        # it is not a config var).
        count = uwsgiconf.running(values, env, "processes")
        if count and not env.get("WEB_CONCURRENCY", "").strip():
            edge["WEB_CONCURRENCY"] = count
    hook = postinstall.command(service, home)
    limit = postinstall.timeout(env) if hook else 0.0
    for problem in (dotcloud.write_env_files(home, env), dotcloud.link_env(home)):
        if problem:
            say(f"warning: {problem}")
    if hook:
        stopped = postinstall.run(
            hook[0], hook[1], home / "current", env, limit, out=lambda data: write_all(1, data), say=say,
            signals=FORWARDED,
        )
        if stopped is not None:
            raise Stopped(stopped)
    env.update(edge)
    return env, ini, uwsgi_verbose


class Stopped(Exception):
    """A signal arrived before supervisord was started: exit as if killed by it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def worker_programs(home: Path, service: dict, watched: list[str], commands: dict[str, str]) -> dict[str, str]:
    """A python-worker's programs: dotCloud's default ``process`` is ``./run``; nothing is an error."""
    if watched:
        return commands
    run_file = home / "current" / "run"
    if run_file.is_file() and os.access(run_file, os.X_OK):
        return {"process": "./run"}
    raise WebError(
        f"the python-worker service {service.get('name') or ''} has nothing to run: add processes: to dotcloud.yml,"
        " a [program:x] to supervisord.conf, or an executable ./run"
    )


def announce_ready(parent: Parent, port: int) -> None:
    """``ready in N ms`` once the start's health probe (``dcruntime.probe``) gets an answer."""
    status = probe.wait(port, lambda: parent.status is None)
    if status is not None and parent.status is None:
        say(f"ready in {probe.since(STARTED)} ms (GET / answered {status})")


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
    service = dotcloud.load_service(home)
    worker = dotcloud.is_worker(service)
    port = os.environ.get("PORT") or "5000"
    say(startlog.versions(home, None if worker else port))
    # Before the postinstall hook, which may take minutes: a web process nginx's workers could
    # not serve stops now, with one line saying why.
    workers = None if worker else reach.choose(home, dict(os.environ))
    if workers is not None and workers.why:
        say(workers.why)
    base, ini, uwsgi_verbose = prepare(home, service)
    parent_dir, note = reach.run_parent(base.get("TMPDIR") or "/tmp", workers)
    run_dir = make_run_dir(parent_dir)
    if note:
        say(f"{note}: {run_dir}")
    hub = None
    try:
        env = child_env(run_dir, base, workers)
        for note in appconf.prepare(home, run_dir, web=not worker):
            say(note)
        found, note = programs.app_programs(run_dir / appconf.SUPERVISORD_APP)
        commands = programs.processes(service, [name for name, _ in found])
        watched = programs.watched(found, commands)
        if worker:
            commands = worker_programs(home, service, watched, commands)
            watched = programs.watched(found, commands)
        env["DC_CORE_PROGRAMS"] = "" if worker else ",".join(programs.CORE)
        env["DC_WORKER_PROGRAMS"] = ",".join(watched) if worker else ""
        if ini is not None:
            (run_dir / "uwsgi.ini").write_text(ini, encoding="utf-8")
        log_dir = run_dir / "log"
        names = [*CORE_LOGS, *(name for name, _ in found if programs.SAFE_NAME.match(name)), *commands]
        filters: dict[str, Filter] = {"supervisord": startlog.SupervisordFilter(startlog.flag(base, "DC_VERBOSE"))}
        if not uwsgi_verbose:
            filters["uwsgi"] = startlog.uwsgi_filter
        hub = LogHub(log_dir, names, extra={} if worker else {run_dir / ACCESS_LOG: "nginx"}, filters=filters)
        line = startlog.programs_line([name for name, _ in found if programs.SAFE_NAME.match(name)], list(commands))
        if line:
            say(line)
        text = programs.overlay(found, log_dir, root=os.geteuid() == 0, note=note, worker=worker)
        text += programs.process_sections(commands, home, run_dir, log_dir)
        (run_dir / "supervisord-overlay.conf").write_text(text, encoding="utf-8")
        parent = Parent([str(supervisord), "-c", str(conf)], env, home)
        threading.Thread(target=parent.wake, args=(run_dir / "supervisor.sock",), daemon=True).start()
        if not worker and port.isdigit():
            threading.Thread(target=announce_ready, args=(parent, int(port)), daemon=True).start()
        assert parent.proc.stdout is not None
        hub.run(parent.proc.stdout.fileno())
        status = parent.wait()
        fatal = run_dir / "fatal"
        if fatal.exists():
            say(f"exiting with status 1: {fatal.read_text(encoding='utf-8').strip()} could not be started")
            return 1
        code = 128 - status if status < 0 else status
        say(f"exiting with status {code}")
        return code
    finally:
        if hub is not None:
            hub.close()
        shutil.rmtree(run_dir, ignore_errors=True)


def main() -> int:
    global STARTED
    STARTED = probe.started()
    proctitle.set_title("dcweb")
    try:
        return run()
    except (WebError, BootError, reach.ReachError) as exc:
        say(f"error: {exc}")
        return 1
    except Stopped as exc:
        say(f"stopped by signal {exc.signum} before the programs were started")
        return 128 + exc.signum


if __name__ == "__main__":
    sys.exit(main())
