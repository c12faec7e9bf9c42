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


def _lines(path: Path) -> list[tuple[int, str]]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise log.BuildError(f"Cannot read {path.name}", str(exc)) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise log.BuildError(
            f"{path.name} is not UTF-8 text", "Write it as plain text, e.g. 'python-3.14'."
        ) from None
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip() if path.name == ".python-version" else line.strip()
        if line:
            out.append((number, line))
    return out


def parse_runtime_txt(path: Path) -> Request | None:
    """``python-X.Y.Z`` or ``python-X.Y`` on the first non-empty line; empty file: no request."""
    lines = _lines(path)
    if not lines:
        return None
    number, text = lines[0]
    origin = f"runtime.txt:{number}"
    m = re.fullmatch(r"python-" + _VERSION_RE.pattern, text)
    if not m:
        raise log.BuildError(
            f"{origin}: {text!r} is not a Python version",
            "runtime.txt holds one line such as 'python-3.14' or 'python-3.14.1'.",
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

    pyenv allows several lines (fallbacks); the first one is the version that is used.
    """
    lines = _lines(path)
    if not lines:
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
    return _check((int(major), int(minor)), None if micro is None else int(micro), origin, text, "'{v}'")


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
