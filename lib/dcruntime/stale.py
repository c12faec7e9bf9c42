"""Stop what a killed nginx or uWSGI master left behind, before supervisord starts it again.

A master killed outright (SIGKILL, the OOM killer) leaves its workers running: nginx's keep
listening on $PORT (the new nginx cannot bind it, and the web process would go down), a uWSGI
worker stuck in a request is no longer watched by harakiri. supervisord starts every program as
a process group leader, so the dead master's pid, still in its pid file, names the group of
those workers.

    python3 -m dcruntime.stale PIDFILE NAME [SIGNAL]

If no process has the pid in PIDFILE any more, the live members of that process group in this
session get SIGNAL (default TERM; QUIT for nginx: they finish their requests), then SIGKILL
after a few seconds. A live process with that pid is left alone: it is not a dead master's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

GRACE = 3.0


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, session) of a process, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[2]), int(fields[3])


def members(pgid: int, sid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None and st[0] not in ("Z", "X") and st[1] == pgid and st[2] == sid:
                found.append(int(entry.name))
    return found


def stop_group(pidfile: Path, name: str, signum: int = signal.SIGTERM, grace: float = GRACE) -> list[int]:
    """The pids of the leftovers signalled (empty when there were none)."""
    try:
        pgid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return []
    if pgid <= 1 or _stat(pgid) is not None:
        return []
    left = members(pgid, os.getsid(0))
    if not left:
        return []
    print(f"{name} master {pgid} is gone but left {len(left)} process(es) running: stopping them", flush=True)
    signalled = left
    for sig in (signum, signal.SIGKILL):
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while (left := members(pgid, os.getsid(0))) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not left:
            break
    return signalled


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: python3 -m dcruntime.stale PIDFILE NAME [SIGNAL]", file=sys.stderr)
        return 2
    signum = signal.Signals["SIG" + argv[2]] if len(argv) == 3 else signal.SIGTERM
    stop_group(Path(argv[0]), argv[1], signum)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
