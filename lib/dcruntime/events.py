"""supervisord event listener: a core program that cannot start stops the web process.

When a core program (``--core nginx,uwsgi``) enters FATAL (supervisord gave up starting it),
the web process cannot serve: the listener records which one in ``$DC_RUN_DIR/fatal`` and
stops supervisord with SIGTERM; ``dcruntime.web`` then exits 1, so the platform sees it and
restarts or reports the process. A ``python-worker`` service has no core program but a list
of programs (``--all a,b``): once every one of them is FATAL, nothing runs, and the listener
stops supervisord the same way. Another program's FATAL state is only reported. What the
listener says goes to its stderr, which supervisord writes to the web log as ``dcweb | ...``.

Protocol (https://supervisord.org/events.html): ``READY``, then a header line whose ``len``
counts the payload's characters (supervisor encodes a str payload as UTF-8), then
``RESULT 2\\nOK``.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
from pathlib import Path
from typing import TextIO


def parse_tokens(line: str) -> dict[str, str]:
    """``a:1 b:2`` -> ``{'a': '1', 'b': '2'}``."""
    return dict(token.split(":", 1) for token in line.split() if ":" in token)


class Listener:
    def __init__(
        self, out: TextIO, core: set[str], run_dir: Path | None, supervisord_pid: int, all_of: set[str] | None = None
    ) -> None:
        self.out = out
        self.core = core
        self.all_of = all_of or set()
        self.fatal: set[str] = set()
        self.run_dir = run_dir
        self.supervisord_pid = supervisord_pid
        self.stopping = False

    def say(self, message: str) -> None:
        self.out.write(message + "\n")
        self.out.flush()

    def handle(self, header: dict[str, str], payload: str) -> None:
        if header.get("eventname") != "PROCESS_STATE_FATAL":
            return
        name = parse_tokens(payload.partition("\n")[0]).get("processname", "?")
        self.fatal.add(name)
        if name in self.core:
            self.stop(name, f"{name} could not be started (FATAL): stopping the web process")
        elif self.all_of and self.all_of <= self.fatal:
            names = ", ".join(sorted(self.all_of))
            self.stop(names, f"{name} could not be started (FATAL) and neither could the others ({names}): stopping")
        elif name in self.all_of:
            self.say(f"{name} could not be started (FATAL); the other programs keep running")
        else:
            self.say(f"{name} could not be started (FATAL); the web process keeps running")

    def stop(self, names: str, message: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.say(message)
        if self.run_dir is not None:
            try:
                (self.run_dir / "fatal").write_text(names + "\n", encoding="utf-8")
            except OSError as exc:
                self.say(f"cannot record the failure in {self.run_dir}: {exc.strerror}")
        os.kill(self.supervisord_pid, signal.SIGTERM)


def serve(listener: Listener, stdin: TextIO, stdout) -> None:
    while True:
        stdout.write(b"READY\n")
        stdout.flush()
        line = stdin.readline()
        if not line:
            return
        header = parse_tokens(line)
        payload = stdin.read(int(header.get("len", "0")))
        listener.handle(header, payload)
        stdout.write(b"RESULT 2\nOK")
        stdout.flush()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m dcruntime.events")
    parser.add_argument("--core", default="nginx,uwsgi", help="programs whose FATAL state stops the web process")
    parser.add_argument("--all", default="", help="programs whose FATAL state, once all have it, stops it")
    args = parser.parse_args(argv)
    run_dir = os.environ.get("DC_RUN_DIR")
    # newline="": keep "\r" as is, so that character counts match supervisor's ``len``.
    stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace", newline="")
    core = {name for name in args.core.split(",") if name}
    all_of = {name for name in args.all.split(",") if name}
    listener = Listener(sys.stderr, core, Path(run_dir) if run_dir else None, os.getppid(), all_of)
    # supervisord stops it with SIGTERM, last: that is the listener's normal end, exit status 0
    # (the web log's shutdown then reads `stopped: dcweb (exit status 0)`, not a warning).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(listener, stdin, sys.stdout.buffer)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
