"""Why Django's collectstatic failed, in the words the user needs (dcbuild.hooks calls ``cause``).

Read from what the command printed (its traceback) and the slug (Django's version, the Python
line), first match wins:

1. Django too old for the slug's Python: a SyntaxError (or an import of a module Python 3 no
   longer has) raised inside Django itself, or Django's version older than the first release
   that supports this Python: ``Django 1.5 cannot run on Python 3.13: pin Django>=5.1.3``.
2. A Django 1.3 ``manage.py`` (``execute_manager``, ``setup_environ``: removed in Django 1.6)
   run by a current Django: replace manage.py with the current template.
3. The traceback's last frame in the app's own code (not the slug's packages):
   ``proj/settings.py:12`` and its source line, with the exception.

``None`` when none applies (the caller then gives its general advice).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from . import releases

# The first Django release that supports each Python line we run (dcbuild.releases.DJANGO, from
# Django's FAQ). A line not listed is newer than that table.
FIRST_DJANGO = {line: first for line in ((3, minor) for minor in range(11, 16))
                if (first := releases.first_django(line)) is not None}
FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>.+))?$')
OLD_MANAGE = re.compile(r"cannot import name '(execute_manager|setup_environ)'")
PY2_ONLY = re.compile(r"No module named '(urlparse|urllib2|cPickle|StringIO|HTMLParser|Cookie|httplib|__builtin__)'")


@dataclass
class Frame:
    path: str
    line: int
    func: str
    source: str


def frames(lines: list[str]) -> list[Frame]:
    out = []
    for i, text in enumerate(lines):
        m = FRAME.match(text)
        if m:
            nxt = lines[i + 1].strip() if i + 1 < len(lines) and not FRAME.match(lines[i + 1]) else ""
            out.append(Frame(m.group("path"), int(m.group("line")), m.group("func") or "", nxt))
    return out


def exception(lines: list[str]) -> str:
    """The exception line: the last line that starts a word at column 0 (``X: message``)."""
    for text in reversed(lines):
        if text and not text[0].isspace() and re.match(r"[\w.]+(:|$)", text):
            return text.strip()
    return next((text.strip() for text in reversed(lines) if text.strip()), "")


def django_version(app: Path) -> tuple[tuple[int, ...], str] | None:
    """(version, python line as "3.Z") of the slug's Django, from django/__init__.py's VERSION."""
    for init in sorted((app / ".dotcloud" / "python" / "lib").glob("python3.*/site-packages/django/__init__.py")):
        try:
            text = init.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        m = re.search(r"^VERSION\s*=\s*\(([^)]*)\)", text, re.M)
        if m:
            numbers = tuple(int(x) for x in re.findall(r"\b\d+\b", m.group(1))[:3])
            return numbers, init.parents[2].name.removeprefix("python")
    return None


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def too_old(version: tuple[int, ...], python: str) -> str | None:
    """The message for a Django that cannot run on this Python, else None."""
    line = tuple(int(x) for x in python.split("."))
    first = FIRST_DJANGO.get(line)  # type: ignore[arg-type]
    if first is None and line > max(FIRST_DJANGO):
        newest = FIRST_DJANGO[max(FIRST_DJANGO)]
        if version >= newest:
            return None
        pin = f"a Django release that supports Python {python} (Django's FAQ lists them)"
    elif first is None or version >= first:
        return None
    else:
        pin = f"Django>={_dotted(first)}"
    return f"Django {_dotted(version[:2])} cannot run on Python {python}: pin {pin} in requirements.txt"


def _inside(path: str, app: Path) -> str | None:
    """``path`` relative to the app, when it is the app's own file (not the slug's packages)."""
    try:
        rel = Path(path).resolve().relative_to(app.resolve())
    except (ValueError, OSError):
        return None
    return None if rel.parts[:1] == (".dotcloud",) else str(rel)


def cause(lines: list[str], app: Path) -> list[str] | None:
    """What to tell the user, one item per line, or None."""
    error = exception(lines)
    stack = frames(lines)
    found = django_version(app)
    in_django = [f for f in stack if "/site-packages/django/" in f.path]
    if found:
        version, python = found
        message = too_old(version, python)
        py2 = bool(in_django) and (error.startswith(("SyntaxError", "TabError")) or bool(PY2_ONLY.search(error)))
        if py2 and not message:  # a Django of the right number that still fails like a Python 2 one
            first = FIRST_DJANGO.get(tuple(int(x) for x in python.split(".")), max(FIRST_DJANGO.values()))
            message = f"Django {_dotted(version[:2])} cannot run on Python {python}: pin Django>={_dotted(first)}" \
                " in requirements.txt"
        if message:
            where = f" (in {Path(in_django[-1].path).name}:{in_django[-1].line})" if in_django else ""
            return [f"Cause: {message}.", f"Python said: {error}{where}",
                    "Then port the project to that Django (its release notes list what changed since)."]
    manage = OLD_MANAGE.search(error)
    if manage:
        return [f"Cause: manage.py is Django 1.3's: it imports {manage.group(1)}, removed in Django 1.6.",
                "Replace manage.py with the current template (django-admin startproject writes one):",
                "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'proj.settings'), then"
                " django.core.management.execute_from_command_line(sys.argv)."]
    own = [(rel, f) for f in stack if (rel := _inside(f.path, app))]
    if own:
        rel, frame = own[-1]
        func = f" (in {frame.func})" if frame.func else ""
        out = [f"Cause: {error}", f"In the app's code: {rel}:{frame.line}{func}"]
        if frame.source:
            out.append(f"    {frame.source}")
        out.append(f"Fix {rel}, or skip this step: set the config var DISABLE_COLLECTSTATIC=1.")
        return out
    return None
