"""Build output in the Heroku vocabulary.

Steps go to stdout as ``-----> Step``; details are indented by seven spaces; warnings and
errors go to stderr as `` !     `` paragraphs. A ``BuildError`` raised anywhere below ``main``
becomes such a paragraph and exit status 1, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable

INDENT = " " * 7
BANG = " !     "


class BuildError(Exception):
    """A failure the user can act on: a summary, then lines of cause and remedy."""

    def __init__(self, summary: str, *details: str) -> None:
        super().__init__(summary)
        self.summary = summary
        self.details = details


def _emit(stream, lines: Iterable[str]) -> None:
    for line in lines:
        stream.write(line.rstrip("\n") + "\n")
    stream.flush()


def step(message: str) -> None:
    _emit(sys.stdout, [f"-----> {message}"])


def detail(message: str) -> None:
    _emit(sys.stdout, [INDENT + line for line in message.splitlines() or [""]])


def warn(summary: str, *details: str) -> None:
    lines = [f"{BANG}Warning: {summary}"]
    lines += [BANG + d for d in details]
    _emit(sys.stderr, lines)


def error(summary: str, *details: str) -> None:
    summary = summary if summary.endswith(".") else summary + "."
    lines = [f"{BANG}Error: {summary}"]
    for d in details:
        lines += [BANG + part for part in d.splitlines()]
    _emit(sys.stderr, lines)


def main(func: Callable[[list[str]], int | None]) -> None:
    """Run ``func(argv)`` and turn a BuildError into an error paragraph and exit 1."""
    try:
        status = func(sys.argv[1:])
    except BuildError as exc:
        error(exc.summary, *exc.details)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(status or 0)
