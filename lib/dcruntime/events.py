"""supervisord event listener: program output on the web process's log, and FATAL handling.

supervisord can only write a program's output to a file it opens itself, and opening
``/dev/stdout`` fails (ENXIO) when stdout is a socket. So programs send their output as
``PROCESS_LOG`` events instead, and this listener writes each complete line, prefixed with the
program's name (``nginx | ...``), to its stderr, which supervisord copies to its own stdout:
a pipe to ``dcruntime.web``, which relays it to whatever the real stdout is.

When a core program (``--core nginx,uwsgi``) enters FATAL (it could not be started), the web
process cannot serve: the listener records which one in ``$DC_RUN_DIR/fatal`` and stops
supervisord with SIGTERM; ``dcruntime.web`` then exits non-zero.

Protocol: https://supervisord.org/events.html — ``READY``, a header line whose ``len`` counts
the payload's characters (supervisor encodes a str payload as UTF-8), ``RESULT 2\\nOK``.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
from pathlib import Path
from typing import TextIO

FLUSH_STATES = {"PROCESS_STATE_STOPPED", "PROCESS_STATE_EXITED", "PROCESS_STATE_BACKOFF", "PROCESS_STATE_FATAL"}
MAX_PARTIAL = 64 * 1024
SELF = "dcweb"


def parse_tokens(line: str) -> dict[str, str]:
    """``a:1 b:2`` -> ``{'a': '1', 'b': '2'}``."""
    return dict(token.split(":", 1) for token in line.split() if ":" in token)


class Listener:
    def __init__(self, out: TextIO, core: set[str], run_dir: Path | None, supervisord_pid: int) -> None:
        self.out = out
        self.core = core
        self.run_dir = run_dir
        self.supervisord_pid = supervisord_pid
        self.partial: dict[tuple[str, str], str] = {}
        self.stopping = False

    def emit(self, name: str, text: str) -> None:
        self.out.write("".join(f"{name} | {line}\n" for line in text.split("\n")))
        self.out.flush()

    def log(self, headers: dict[str, str], data: str) -> None:
        key = (headers.get("processname", "?"), headers.get("channel", "stdout"))
        data = self.partial.pop(key, "") + data
        complete, _, rest = data.rpartition("\n")
        if complete or data.endswith("\n"):
            self.emit(key[0], complete)
        if len(rest) > MAX_PARTIAL:
            self.emit(key[0], rest)
        elif rest:
            self.partial[key] = rest

    def flush(self, name: str) -> None:
        for key in [k for k in self.partial if k[0] == name]:
            self.emit(name, self.partial.pop(key))

    def state(self, eventname: str, headers: dict[str, str]) -> None:
        name = headers.get("processname", "?")
        if eventname in FLUSH_STATES:
            self.flush(name)
        if eventname != "PROCESS_STATE_FATAL":
            return
        if name not in self.core:
            self.emit(SELF, f"{name} could not be started (FATAL); the web process keeps running")
            return
        if self.stopping:
            return
        self.stopping = True
        self.emit(SELF, f"{name} could not be started (FATAL): stopping the web process")
        if self.run_dir is not None:
            try:
                (self.run_dir / "fatal").write_text(name + "\n", encoding="utf-8")
            except OSError as exc:
                self.emit(SELF, f"cannot record the failure in {self.run_dir}: {exc.strerror}")
        os.kill(self.supervisord_pid, signal.SIGTERM)

    def handle(self, header: dict[str, str], payload: str) -> None:
        eventname = header.get("eventname", "")
        first, _, data = payload.partition("\n")
        headers = parse_tokens(first)
        if eventname.startswith("PROCESS_LOG"):
            self.log(headers, data)
        elif eventname.startswith("PROCESS_STATE"):
            self.state(eventname, headers)


def serve(listener: Listener, stdin: TextIO, stdout) -> None:
    while True:
        stdout.write(b"READY\n")
        stdout.flush()
        line = stdin.readline()
        if not line:
            return
        header = parse_tokens(line)
        payload = stdin.read(int(header.get("len", "0")))
        try:
            listener.handle(header, payload)
        except Exception as exc:  # a listener that dies loses log lines: report and go on
            listener.emit(SELF, f"event listener error: {exc!r}")
        stdout.write(b"RESULT 2\nOK")
        stdout.flush()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m dcruntime.events")
    parser.add_argument("--core", default="nginx,uwsgi", help="programs whose FATAL state stops the web process")
    args = parser.parse_args(argv)
    run_dir = os.environ.get("DC_RUN_DIR")
    # newline="": keep "\r" as is, so that character counts match supervisor's ``len``.
    stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace", newline="")
    out = io.TextIOWrapper(sys.stderr.buffer, encoding="utf-8", errors="replace", newline="")
    listener = Listener(out, {n for n in args.core.split(",") if n}, Path(run_dir) if run_dir else None, os.getppid())
    serve(listener, stdin, sys.stdout.buffer)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
