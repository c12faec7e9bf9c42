"""dotcloud.yml's ``postinstall`` hook: once per start, before supervisord starts anything.

dotCloud ran it at each deploy, after writing environment.json and before switching traffic:
from the approot, any shebang, exit 0 within 10 minutes or the deploy fails. Here each start of
the web process is such a deploy (the platform starts every dyno from the slug):

- the hook is dotcloud.yml's ``postinstall`` (a file in the approot, run as a program, or else a
  shell command), by default ``current/postinstall`` when it exists. A file that is not
  executable is an error that says to ``chmod +x`` it: dotCloud ran it as a program too;
- it runs in ``current/`` with the programs' environment; its output (stdout and stderr) goes to
  the log as ``postinstall | <line>``;
- it must finish within ``DC_POSTINSTALL_TIMEOUT`` seconds (default 600, dotCloud's limit),
  else it is stopped (TERM, then KILL 5 seconds later, its whole process group);
- failure or timeout stops the start: the web process exits 1. Signals the web process gets
  meanwhile (the platform stopping it) go to the hook's process group.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from .dotcloud import BootError, current

DEFAULT_NAME = "postinstall"
TIMEOUT_VAR = "DC_POSTINSTALL_TIMEOUT"
DEFAULT_TIMEOUT = 600.0
KILL_GRACE = 5.0
PREFIX = b"postinstall | "


def _chmod_hint(relative: str) -> str:
    return (
        f"current/{relative} is not executable: run `chmod +x {relative}` "
        f"(or `git update-index --chmod=+x {relative}`), commit, and deploy again"
    )


def _program(path: Path, relative: str) -> list[str]:
    if not os.access(path, os.X_OK):
        raise BootError(_chmod_hint(relative))
    with open(path, "rb") as f:
        shebang = f.read(2) == b"#!"
    # Without a shebang, a shell runs it, as a shell would run such a file.
    return [str(path)] if shebang else ["/bin/sh", str(path)]


def command(service: Mapping[str, object], home: Path) -> tuple[list[str], str] | None:
    """(argv, label) of the hook to run, or None."""
    cwd = current(home)
    value = service.get("postinstall")
    text = "" if value is None else str(value).strip()
    if not text:
        default = cwd / DEFAULT_NAME
        return (_program(default, DEFAULT_NAME), f"current/{DEFAULT_NAME}") if default.is_file() else None
    candidate = cwd / text
    if candidate.is_file():
        return _program(candidate, text), f"current/{text}"
    return ["/bin/sh", "-c", text], text


def timeout(environ: Mapping[str, str]) -> float:
    raw = environ.get(TIMEOUT_VAR, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise BootError(f"{TIMEOUT_VAR}={raw!r} is not a number of seconds above 0")
    return value


class Hook:
    """The running hook: its output prefixed line by line, signals forwarded, a deadline."""

    def __init__(self, argv: list[str], cwd: Path, env: Mapping[str, str], out: Callable[[bytes], None]) -> None:
        self.out = out
        self.signalled: int | None = None
        try:
            self.proc = subprocess.Popen(
                argv, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as exc:
            raise BootError(f"postinstall cannot be started: {exc}") from None

    def forward(self, signum: int, _frame=None) -> None:
        self.signalled = signum
        self.kill(signum)

    def kill(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)

    def pump(self, deadline: float) -> bool:
        """Copy output until the hook ends (True) or the deadline passes (False)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        partial = b""
        while True:
            now = time.monotonic()
            if now >= deadline:
                self.flush(partial)
                return False
            ready, _, _ = select.select([fd], [], [], min(deadline - now, 0.2))
            data = os.read(fd, 65536) if ready else b""
            if data:
                *lines, partial = (partial + data).split(b"\n")
                self.out(b"".join(PREFIX + line + b"\n" for line in lines))
            elif ready or self.proc.poll() is not None:
                # End of output, or the hook is gone and something it left running holds the pipe.
                self.flush(partial)
                self.proc.wait()
                return True

    def flush(self, partial: bytes) -> None:
        if partial:
            self.out(PREFIX + partial + b"\n")

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
        try:
            self.proc.wait(KILL_GRACE)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            self.proc.wait()


def run(
    argv: list[str], label: str, cwd: Path, env: Mapping[str, str], limit: float,
    out: Callable[[bytes], None], say: Callable[[str], None], signals: tuple[int, ...],
) -> int | None:
    """Run the hook; None when it succeeded, the signal number if one stopped us meanwhile."""
    say(f"running postinstall ({label}), time limit {limit:g} s")
    start = time.monotonic()
    hook = Hook(argv, cwd, env, out)
    previous = {signum: signal.signal(signum, hook.forward) for signum in signals}
    try:
        finished = hook.pump(start + limit)
        if not finished:
            hook.stop()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if hook.proc.stdout is not None:
            hook.proc.stdout.close()
    if hook.signalled is not None:
        return hook.signalled
    if not finished:
        raise BootError(
            f"postinstall did not finish within {limit:g} s ({TIMEOUT_VAR}) and was stopped: the app is not started"
        )
    status = hook.proc.returncode
    if status != 0:
        why = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
        hint = ""
        if status == 126:
            hint = f" (126: a file it runs is not executable, e.g. {label}: chmod +x it)"
        raise BootError(f"postinstall {why}{hint}: the app is not started (its output is above)")
    say(f"postinstall done in {time.monotonic() - start:.1f} s")
    return None
