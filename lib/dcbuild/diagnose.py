"""What an installer's failure really is, when the requirement it failed on is not the cause a
line of the app's requirements shows (dcbuild.pip asks here first, then falls back to naming
the requirement the installer named).

- A dependency of a dependency failed (``distribute==0.7.3``, pulled in by an old package): the
  package that failed, and the chain down from the app's own requirement, with its ``file:line``
  (uv's ``hint: `X` (vV) was included because `A` (vA) depends on ...``; pip's ``Collecting X
  (from B->A->-r requirements.txt (line 2))``).
- A ``git://`` URL: GitHub turned that protocol off in 2022; the line, and the same URL over
  ``git+https://``.
- A package whose build is Python 2 code (a ``SyntaxError`` such as a print statement in its
  ``setup.py``): said as such, with what replaced it when that is known (dcbuild.releases).
"""

from __future__ import annotations

import re
from pathlib import Path

from . import log, reqs

_UV_CHAIN = re.compile(r"^hint: `([^`]+)` \(v([^)]+)\) was included because (.+)$", re.M)
_PIP_CHAIN = re.compile(r"^\s*Collecting (\S+) \(from (.+)\)\s*$", re.M)
_PIP_FILE = re.compile(r"^-r (.+) \(line (\d+)\)$")
_UV_FAILED = re.compile(r"Failed to (?:build|download|download and build|fetch) `([^`]+)`")
_PY2_BUILD = re.compile(r"SyntaxError: (Missing parentheses in call to '(?:print|exec)'|invalid syntax"
                        r"|multiple exception types must be parenthesized|leading zeros in decimal integer[^\n]*)"
                        r"|No module named '(ConfigParser|urllib2|urlparse|StringIO|cStringIO|__builtin__)'")
# What to say about a package that cannot be built any more, beyond the chain that pulls it in.
KNOWN = {
    "distribute": "distribute was merged back into setuptools in 2013; its last release (0.7.3) only pulls"
                  " setuptools in, and today's setuptools cannot build it",
}


def _name(requirement: str) -> str:
    m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    return m.group(0) if m else requirement


def _files(requirement: str, cwd: Path) -> list[Path]:
    try:
        return reqs.collect(cwd / requirement)
    except log.BuildError:
        return []


def _rel(path: Path, cwd: Path) -> str:
    try:
        return path.resolve().relative_to(cwd.resolve()).as_posix()
    except ValueError:
        return str(path)


def chain(output: str) -> list[str]:
    """The failing package first, then each requirement that pulled it in, the app's own last;
    [] when the installer named none (or the failing package is the app's own requirement)."""
    hints = list(_UV_CHAIN.finditer(output))
    m = hints[-1] if hints else None
    if m:
        links = [name if "==" in name or not version else f"{name}=={version}"
                 for name, version in re.findall(r"`([^`]+)`(?: \(v([^)]+)\))?", m.group(3))]
        return [f"{m.group(1)}=={m.group(2)}", *reversed(links[:-1])] if len(links) >= 2 else []
    found = _PIP_CHAIN.findall(output)
    if found:
        failing, origin = found[-1]
        parts = origin.split("->")
        if len(parts) >= 2 and _PIP_FILE.match(parts[-1].strip()):
            return [failing, *parts[:-1]]
    return []


def git_lines(requirement: str, cwd: Path) -> list[tuple[str, str, str]]:
    """(file:line, the line, the same with git+https://) for each git:// URL in the requirement files."""
    out = []
    for path in _files(requirement, cwd):
        for number, text in enumerate(path.read_text(encoding="utf-8-sig", errors="replace").splitlines(), 1):
            if "git://" in text.split(" #", 1)[0]:
                fixed = re.sub(r"(?:git\+)?git://", "git+https://", text.strip())
                out.append((f"{_rel(path, cwd)}:{number}", text.strip(), fixed))
    return out


def explain(output: str, requirement: str, cwd: Path, label: str) -> list[str] | None:
    """The lines after the error's summary (cause, then what to do), or None to let dcbuild.pip
    name the requirement as the installer did."""
    from . import pip

    if "git://" in output:
        lines = git_lines(requirement, cwd)
        if lines:
            return [f"Failed requirement: {text} ({place})" for place, text, _ in lines] + [
                "git:// URLs no longer work: GitHub turned the unauthenticated git protocol off in 2022.",
                *(f"Use {fixed} in {place}, then deploy again." for place, _, fixed in lines),
            ]
    links = chain(output)
    py2 = _PY2_BUILD.search(output)
    if len(links) >= 2:
        failing, top, between = links[0], links[-1], links[1:-1]
        name = _name(top)
        place = pip.where(top, _files(requirement, cwd), cwd) or pip.where(name, _files(requirement, cwd), cwd)
        via = "".join(f", through {link}" for link in between)
        cause = KNOWN.get(pip._normal(_name(failing)))
        if not cause and py2:
            cause = f"{failing} is Python 2 code: its build stops with {py2.group(0).strip()}"
        return [
            f"Failed requirement: {failing}, which {label} does not name: {top}"
            f"{f' ({place})' if place else ''} requires it{via}.",
            (cause + ".") if cause else "Its build failed; the installer's message is above.",
            f"Pin a release of {name} that does not need {failing} (or remove {name} if the app no longer"
            f" uses it) in {label}, then deploy again.",
        ]
    if py2:
        m = _UV_FAILED.search(output)
        collecting = re.findall(r"^\s*Collecting (\S+)", output, re.M)
        failing = m.group(1) if m else (collecting[-1] if collecting else None)
        if failing:
            from . import releases

            name = _name(failing)
            place = pip.where(failing, _files(requirement, cwd), cwd)
            at = f" ({place})" if place else ""
            todo = (f"In {label}{at}: {releases.replacement(name)}" if releases.normal(name) in releases.PY2_ONLY
                    else f"Pin a release of {name} made for Python 3 in {label}{at}"
                         " (.dotcloud/migration.txt may name one)")
            return [
                f"Failed requirement: {failing}{at}.",
                f"{failing} is Python 2 code: its build stops with {py2.group(0).strip()}.",
                f"{todo}, then deploy again.",
            ]
    return None
