"""Which Python the app asks for: parsing ``runtime.txt`` and ``.python-version``.

Only the parsing and the policy live here (what is supported, what a bare ``X.Y`` means);
which archive provides the version is ``runtime.py``'s job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from . import log

# CPython lines still maintained upstream. 3.10 reached end of life in October 2026.
SUPPORTED_LINES: tuple[tuple[int, int], ...] = ((3, 11), (3, 12), (3, 13), (3, 14), (3, 15))
# The line used when the app names none: the newest line whose dotCloud requirements
# (config/dcrequirements.txt) all install from wheels. pyuwsgi has no 3.15 wheel yet.
DEFAULT_LINE: tuple[int, int] = (3, 14)


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int
    micro: int

    @classmethod
    def parse(cls, text: str) -> Version:
        m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", text.strip())
        if not m:
            raise ValueError(f"not a full version: {text!r}")
        return cls(*(int(g) for g in m.groups()))

    @property
    def line(self) -> tuple[int, int]:
        return (self.major, self.minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.micro}"


@dataclass(frozen=True)
class Request:
    """What the app asked for: a line and maybe a patch, and where it said so."""

    line: tuple[int, int]
    micro: int | None
    origin: str  # "runtime.txt:1", or "default"

    def __str__(self) -> str:
        base = f"{self.line[0]}.{self.line[1]}"
        return base if self.micro is None else f"{base}.{self.micro}"

    def matches(self, version: Version) -> bool:
        return version.line == self.line and self.micro in (None, version.micro)


def supported_text() -> str:
    return ", ".join(f"{a}.{b}" for a, b in SUPPORTED_LINES)


_VERSION_RE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def _check(line: tuple[int, int], micro: int | None, origin: str, raw: str, fix: str) -> Request:
    if line not in SUPPORTED_LINES:
        newest = f"{DEFAULT_LINE[0]}.{DEFAULT_LINE[1]}"
        if line < SUPPORTED_LINES[0]:
            why = f"Python {line[0]}.{line[1]} has reached its end of life and gets no security fixes."
        else:
            why = f"Python {line[0]}.{line[1]} is not a released CPython line this buildpack knows."
        raise log.BuildError(
            f"{origin}: Python {raw!r} is not supported",
            why,
            f"Supported lines: {supported_text()}.",
            f"Change {origin.split(':')[0]} to, for example, {fix.format(v=newest)}.",
        )
    return Request(line, micro, origin)


def _decode(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise log.BuildError(f"Cannot read {path.name}", str(exc)) from None
    # Windows editors and PowerShell's `echo ... > file` write UTF-16 with a byte order mark:
    # unambiguous, so read it rather than fail.
    encoding = "utf-16" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        example = "'python-3.14'" if path.name == "runtime.txt" else "'3.14'"
        raise log.BuildError(
            f"{path.name} is not UTF-8 text",
            f"Write it as plain text holding one version, such as {example}.",
        ) from None


def _lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty lines with their numbers: BOM, CRLF, surrounding spaces and tabs, blank lines
    (and in ``.python-version``, ``#`` comments) do not count."""
    out = []
    for number, line in enumerate(_decode(path).splitlines(), 1):
        line = line.split("#", 1)[0].strip() if path.name == ".python-version" else line.strip()
        if line:
            out.append((number, line))
    return out


def _empty(path: Path) -> None:
    """A file with no version in it is treated as absent, but never silently."""
    what = "only comments and blank lines" if path.stat().st_size else "nothing"
    example = "'python-3.14'" if path.name == "runtime.txt" else "'3.14'"
    log.warn(
        f"{path.name} holds {what}; ignoring it",
        f"Write a version in it (such as {example}) or delete it.",
    )


def parse_runtime_txt(path: Path) -> Request | None:
    """``python-X.Y.Z`` or ``python-X.Y`` on the first non-empty line; an empty file (or one of
    blank lines) is no request, with a warning naming it."""
    lines = _lines(path)
    if not lines:
        _empty(path)
        return None
    number, text = lines[0]
    origin = f"runtime.txt:{number}"
    m = re.fullmatch(r"python-" + _VERSION_RE.pattern, text)
    if not m:
        found = _VERSION_RE.search(text)
        bare = _VERSION_RE.fullmatch(text)
        if bare:
            # An end-of-life line gets that error first, not a fix that would fail next time.
            _check((int(bare.group(1)), int(bare.group(2))), None, origin, text, "'python-{v}'")
            fix = f"runtime.txt needs the 'python-' prefix (.python-version is the file without it): 'python-{text}'."
        elif found:
            fix = f"Did you mean 'python-{found.group(0)}'? Change runtime.txt to that."
        else:
            fix = "runtime.txt holds one line such as 'python-3.14' or 'python-3.14.1'."
        raise log.BuildError(
            f"{origin}: {text!r} is not a Python version",
            fix,
            f"Supported lines: {supported_text()}.",
        )
    if len(lines) > 1:
        extra_n, extra = lines[1]
        raise log.BuildError(
            f"runtime.txt:{extra_n}: unexpected second line {extra!r}",
            "runtime.txt holds exactly one version, such as 'python-3.14'. Remove the other lines.",
            f"Supported lines: {supported_text()}.",
        )
    major, minor, micro = m.groups()
    return _check((int(major), int(minor)), None if micro is None else int(micro), origin, text, "'python-{v}'")


def parse_python_version(path: Path) -> Request | None:
    """pyenv's ``.python-version``: ``X.Y`` or ``X.Y.Z``; comments and blank lines allowed.

    pyenv allows several lines (fallbacks); the first one is the version that is used, with a
    warning that the others are not installed.
    """
    lines = _lines(path)
    if not lines:
        _empty(path)
        return None
    number, text = lines[0]
    origin = f".python-version:{number}"
    m = _VERSION_RE.fullmatch(text)
    if not m:
        hint = " (without the 'python-' prefix, which runtime.txt uses)" if text.startswith("python-") else ""
        raise log.BuildError(
            f"{origin}: {text!r} is not a Python version{hint}",
            ".python-version holds a version such as '3.14' or '3.14.1'.",
            f"Supported lines: {supported_text()}.",
        )
    major, minor, micro = m.groups()
    req = _check((int(major), int(minor)), None if micro is None else int(micro), origin, text, "'{v}'")
    if len(lines) > 1:
        others = ", ".join(f"{t!r} (line {n})" for n, t in lines[1:])
        log.warn(
            f"{origin}: using {text!r}, the first version in .python-version",
            f"pyenv's fallback versions on later lines are not installed: {others}.",
            "Keep one version in .python-version to silence this warning.",
        )
    return req


def requested(app: Path, fallback: Request | None = None) -> Request:
    """The request from the app's files in precedence order, else ``fallback``
    (dotcloud.yml's python_version), else the default line."""
    for name, parser in (("runtime.txt", parse_runtime_txt), (".python-version", parse_python_version)):
        path = app / name
        if path.is_file():
            req = parser(path)
            if req is not None:
                return req
    return fallback or Request(DEFAULT_LINE, None, "default")
