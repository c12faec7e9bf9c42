"""The migration report: what an app written for dotCloud (Python 2, /home/dotcloud, data
services) needs before it runs here.

    python3 -m dcbuild.migrate build APP --python PY3 --version X.Y.Z --key KEY --stamp STAMP
            --cache CACHE [--requirements FILE] [--env-dir DIR]       (make, before the installs)
    python3 -m dcbuild.migrate python APP --cache CACHE                (make report: the version)
    python3 -m dcbuild.migrate report APP --python PY3 --version X.Y.Z --cache CACHE [--out FILE]

What it finds:

- Python 2 syntax: every ``.py`` of the app compiled by the *target* interpreter (the runtime
  layer's python3, see dcbuild.py2scan), each refused line as ``file:line: what it is -> fix``;
  and Python 2 statements that still compile but mean something else (``print >>f, x``).
- Modules gone in the target Python (Python 2 names such as ``urllib2``; PEP 594's ``cgi``,
  ``imp``, ``asyncore`` ...) with their replacements; implicit relative imports.
- Pinned requirements with no release for the target Python, and the nearest that has one
  (dcbuild.releases: built-in tables first, PyPI's JSON API when reachable); ``git://`` URLs.
- ``/home/dotcloud`` in any text file; data services and the config vars that fill their
  ``DOTCLOUD_*`` variables; the ``DOTCLOUD_*`` variables the code reads.

In a build it runs after the runtime layer and before any install (so a failing install still
shows it), is written to ``.dotcloud/migration.txt`` and printed. Its key (``key``: the app's
files by content, the requirement files, the Python version, this code) names a cached copy:
dcbuild.slug's prepare step shows a cached report itself (``show_cached``), so a warm redeploy
starts no process for it. ``DC_STRICT_PY3=1`` (config var or environment) makes Python 2
syntax fail the build; otherwise it is a warning.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import log

OLD_HOME = b"/home/dotcloud"
SKIP_DIRS = {".git", ".hg", ".svn", ".dotcloud", ".profile.d", "node_modules", "__pycache__", ".venv", "venv", "env",
             "site-packages", ".tox", ".mypy_cache", ".pytest_cache"}
MAX_FILE = 1 << 20  # larger files are data, not code
MAX_SHOWN = 20  # lines per section in the build log (the file has them all)
REPORT = Path(".dotcloud") / "migration.txt"
VARIABLE = re.compile(rb"\bDOTCLOUD_[A-Z0-9_]*[A-Z0-9]")
SCANNER = Path(__file__).with_name("py2scan.py")
KEEP_REPORTS = 20
# The report's own code: a change to any of it makes new reports.
CODE = ("migrate.py", "py2scan.py", "releases.py")

# Python 2 syntax: (pattern on compile()'s message, pattern on the line, what it is, the fix).
SYNTAX = (
    (r"Missing parentheses in call to 'print'", "", "print statement", "print(...)"),
    (r"Missing parentheses in call to 'exec'", "", "exec statement", "exec(code, namespace)"),
    (r"multiple exception types must be parenthesized", "", "`except X, e:`", "except X as e:"),
    (r"leading zeros in decimal integer literals", "", "octal literal (0755)", "0o755"),
    (r"", r"`", "backticks", "repr(...)"),
    (r"", r"<>", "`<>` operator", "!="),
    (r"", r"(?<![\w'\"])[uU][rR]['\"]", "ur'' string", "r'' (every str is unicode)"),
    (r"", r"\b\d+[lL]\b", "long literal (10L)", "10"),
    (r"", r"^\s*raise\s+[\w.]+\s*,", "`raise E, message`", "raise E(message)"),
    (r"inconsistent use of tabs and spaces", "", "tabs and spaces mixed in indentation", "indent with spaces"),
    (r"parameters cannot be parenthesized", "", "tuple parameter", "unpack it in the body"),
    (r"", r"\b(async|await)\b", "`async`/`await` used as a name", "rename it (keywords since Python 3.7)"),
    (r"Non-UTF-8 code|'utf-8' codec can't decode", "", "not UTF-8 and no coding declaration",
     "add `# -*- coding: latin-1 -*-` or re-save as UTF-8"),
    # By the line alone, where a Python's message is only "invalid syntax".
    (r"", r"^\s*print\s*($|[^\s(=.,)\]])", "print statement", "print(...)"),
    (r"", r"^\s*exec\s+[^\s(=]", "exec statement", "exec(code, namespace)"),
    (r"", r"^\s*except\s+[^:]+,\s*\w+\s*:", "`except X, e:`", "except X as e:"),
    (r"", r"(?<![\w.])0\d+(?![\w.])", "octal literal (0755)", "0o755"),
)
ODD = {
    "print >>": ("`print >>f, x` (compiles, but is not a print)", "print(x, file=f)"),
    "bare print": ("bare `print` (compiles, prints nothing)", "print()"),
    "except X, e": ("`except X, e:` (Python 3.14 reads it as catching X or e)", "except X as e:"),
}

# Modules gone from the standard library: name -> (Python line that no longer has it, instead).
PY2 = (3, 0)
GONE: dict[str, tuple[tuple[int, int], str]] = {
    "urllib2": (PY2, "urllib.request, urllib.error"), "urlparse": (PY2, "urllib.parse"),
    "ConfigParser": (PY2, "configparser"), "cPickle": (PY2, "pickle"),
    "StringIO": (PY2, "io.StringIO (text) or io.BytesIO (bytes)"),
    "cStringIO": (PY2, "io.StringIO (text) or io.BytesIO (bytes)"),
    "Queue": (PY2, "queue"), "SocketServer": (PY2, "socketserver"), "HTMLParser": (PY2, "html.parser"),
    "httplib": (PY2, "http.client"), "Cookie": (PY2, "http.cookies"), "cookielib": (PY2, "http.cookiejar"),
    "BaseHTTPServer": (PY2, "http.server"), "SimpleHTTPServer": (PY2, "http.server"),
    "CGIHTTPServer": (PY2, "http.server"), "xmlrpclib": (PY2, "xmlrpc.client"),
    "SimpleXMLRPCServer": (PY2, "xmlrpc.server"), "htmlentitydefs": (PY2, "html.entities"),
    "thread": (PY2, "threading (or _thread)"), "dummy_thread": (PY2, "threading"),
    "commands": (PY2, "subprocess"), "__builtin__": (PY2, "builtins"), "copy_reg": (PY2, "copyreg"),
    "anydbm": (PY2, "dbm"), "dbhash": (PY2, "dbm"), "whichdb": (PY2, "dbm.whichdb"), "Tkinter": (PY2, "tkinter"),
    "md5": (PY2, "hashlib.md5"), "sha": (PY2, "hashlib.sha1"), "sets": (PY2, "the built-in set"),
    "new": (PY2, "types"), "popen2": (PY2, "subprocess"), "mimetools": (PY2, "email"), "rfc822": (PY2, "email"),
    "UserDict": (PY2, "collections.UserDict"), "UserList": (PY2, "collections.UserList"),
    "UserString": (PY2, "collections.UserString"), "robotparser": (PY2, "urllib.robotparser"),
    "exceptions": (PY2, "builtins"), "urllib.urlencode": (PY2, "urllib.parse.urlencode"),
    "urllib.quote": (PY2, "urllib.parse.quote"), "urllib.quote_plus": (PY2, "urllib.parse.quote_plus"),
    "urllib.unquote": (PY2, "urllib.parse.unquote"), "urllib.urlopen": (PY2, "urllib.request.urlopen"),
    "urllib.urlretrieve": (PY2, "urllib.request.urlretrieve"), "string.letters": (PY2, "string.ascii_letters"),
    "string.maketrans": (PY2, "str.maketrans"), "itertools.izip": (PY2, "zip"), "itertools.imap": (PY2, "map"),
    "itertools.ifilter": (PY2, "filter"), "itertools.izip_longest": (PY2, "itertools.zip_longest"),
    "formatter": ((3, 10), "nothing in the standard library"), "parser": ((3, 10), "ast"),
    "symbol": ((3, 10), "token / ast"), "binhex": ((3, 11), "base64 / binascii"),
    "asynchat": ((3, 12), "asyncio (or pyasynchat from PyPI)"),
    "asyncore": ((3, 12), "asyncio (or pyasyncore from PyPI)"),
    "smtpd": ((3, 12), "aiosmtpd from PyPI"), "imp": ((3, 12), "importlib"),
    "distutils": ((3, 12), "setuptools (which provides distutils), sysconfig, shutil"),
    "cgi": ((3, 13), "urllib.parse.parse_qs, email.message (for parse_header), or legacy-cgi from PyPI"),
    "cgitb": ((3, 13), "traceback / faulthandler, or legacy-cgi from PyPI"),
    "crypt": ((3, 13), "hashlib, or passlib / bcrypt from PyPI"), "imghdr": ((3, 13), "filetype or Pillow from PyPI"),
    "pipes": ((3, 13), "shlex.quote, subprocess"), "telnetlib": ((3, 13), "telnetlib3 from PyPI"),
    "uu": ((3, 13), "base64"), "xdrlib": ((3, 13), "struct"), "nntplib": ((3, 13), "pynntp from PyPI"),
    "mailcap": ((3, 13), "mimetypes"), "sndhdr": ((3, 13), "filetype from PyPI"),
    "aifc": ((3, 13), "soundfile from PyPI"), "audioop": ((3, 13), "audioop-lts from PyPI"),
    "chunk": ((3, 13), "struct"), "sunau": ((3, 13), "soundfile from PyPI"), "nis": ((3, 13), "nothing"),
    "spwd": ((3, 13), "python-pam from PyPI"), "ossaudiodev": ((3, 13), "nothing"), "msilib": ((3, 13), "nothing"),
    "lib2to3": ((3, 13), "nothing: port once, with pyupgrade or 2to3 run under an older Python"),
    "collections.Mapping": ((3, 10), "collections.abc.Mapping"),
    "collections.MutableMapping": ((3, 10), "collections.abc.MutableMapping"),
    "collections.Sequence": ((3, 10), "collections.abc.Sequence"),
    "collections.Iterable": ((3, 10), "collections.abc.Iterable"),
    "collections.Callable": ((3, 10), "collections.abc.Callable"),
}
# A package on the app's requirements that puts a removed module back.
DROP_INS = {"cgi": "legacy-cgi", "cgitb": "legacy-cgi", "asyncore": "pyasyncore", "asynchat": "pyasynchat",
            "distutils": "setuptools", "audioop": "audioop-lts", "telnetlib": "telnetlib-313-and-up"}


# --- the app's files, read once ---------------------------------------------------------------


def _ours() -> dict[str, Path | None]:
    """What the build installs into the app (dcbuild.web.FILES; None: whatever its content): not
    the app's, so neither reported nor part of the key (a build in the same directory again would
    see them otherwise)."""
    from . import web

    bp = Path(__file__).resolve().parents[2]
    return {dest: None if src.startswith("nginx:") else bp / src for src, dest, _mode in web.FILES}


@dataclass
class Tree:
    """What one walk over the app finds: its Python files, /home/dotcloud lines, DOTCLOUD_ names,
    and a digest of what the report reads (the key): the Python files' contents and the other
    files' findings, so that what the build and its hooks add (configs, collected static files)
    leaves the key as it was."""

    python: list[str] = field(default_factory=list)
    home: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    digest: str = ""


def walk(app: Path) -> Tree:
    tree = Tree()
    h = hashlib.sha256()
    ours = _ours()
    for root, dirs, files in os.walk(app):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not os.path.islink(os.path.join(root, d)))
        for name in sorted(files):
            path = Path(root) / name
            try:
                if path.is_symlink() or path.stat().st_size > MAX_FILE:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            rel = path.relative_to(app).as_posix()
            if rel in ours and (ours[rel] is None or _read(ours[rel]) == data):
                continue
            if name.endswith(".py"):
                tree.python.append(rel)
                h.update(rel.encode() + b"\0" + data + b"\0")
            elif b"\0" in data[:8192]:
                continue
            if OLD_HOME in data:
                for number, line in enumerate(data.splitlines(), 1):
                    if OLD_HOME in line:
                        tree.home.append(f"{rel}:{number}: {line.decode('utf-8', 'replace').strip()[:100]}")
            if b"DOTCLOUD_" in data:
                for number, line in enumerate(data.splitlines(), 1):
                    for m in VARIABLE.finditer(line):
                        tree.variables.setdefault(m.group(0).decode(), f"{rel}:{number}")
    h.update(json.dumps([tree.home, tree.variables], sort_keys=True).encode())
    tree.digest = h.hexdigest()
    return tree


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def mentions(app: Path) -> list[str]:
    """Every line of the app's text files that names /home/dotcloud, as ``file:line: text``."""
    return walk(app).home


def strict(env_dir: Path | None) -> bool:
    from . import configvars

    value = configvars.for_build(env_dir).get("DC_STRICT_PY3", os.environ.get("DC_STRICT_PY3", ""))
    return value.strip().lower() in ("1", "true", "yes", "on")


def key(app: Path, version: str, requirements: str, env_dir: Path | None, tree: Tree | None = None) -> str:
    """The report's cache key: the app's files, its requirement files, the Python version, the
    lookup settings, and this code (not DC_STRICT_PY3: the same report fails or warns)."""
    from . import configvars, releases, reqs

    tree = tree or walk(app)
    h = hashlib.sha256(f"{version}\0{tree.digest}\0".encode())
    h.update(json.dumps(releases.env_for_lookup(configvars.for_build(env_dir)), sort_keys=True).encode())
    if requirements:
        try:
            h.update(reqs.digest(app / requirements, app).encode())
        except log.BuildError:
            h.update(b"unreadable")
    for name in CODE:
        h.update((Path(__file__).with_name(name)).read_bytes())
    return h.hexdigest()[:16]


# --- what the report says -----------------------------------------------------------------------


def _what(kind: str, message: str, text: str) -> tuple[str, str]:
    """What a refused line is, and its fix: by compile()'s message, else by every Python 2
    construct the line holds (``x = `y` if a <> b`` is two), else compile()'s own words."""
    found: dict[str, str] = {}
    for on_message, on_line, what, fix in SYNTAX:
        if on_message:
            if re.search(on_message, message) and (not on_line or re.search(on_line, text)):
                return what, fix
        elif re.search(on_line, text) and len(found) < 3:
            found.setdefault(what, fix)
    if found:
        return "; ".join(f"{what} -> {fix}" for what, fix in found.items()), ""
    return f"not Python 3 ({message})", ""


def _line(place: str, what: str, fix: str) -> str:
    return f"{place}: {what}" + (f" -> {fix}" if fix else "")


def syntax_lines(scan: dict) -> list[str]:
    out = []
    for rel, found in sorted(scan.get("files", {}).items()):
        for number, kind, message, text in sorted(found.get("errors", [])):
            out.append(_line(f"{rel}:{number}", *_what(kind, message, text)))
        for number, what, _text in sorted(found.get("compiles_oddly", [])):
            out.append(_line(f"{rel}:{number}", *ODD[what]))
    return out


def module_lines(scan: dict, app: Path, target: tuple[int, ...], provided: set[str], root: str) -> list[str]:
    out = []
    line = target[:2]
    for rel, found in sorted(scan.get("files", {}).items()):
        here = (app / rel).parent
        seen: set[tuple[str, int]] = set()
        for module, number in found.get("imports", []):
            top = module.split(".")[0]
            for name in dict.fromkeys([module, top]):
                gone = GONE.get(name)
                if not gone or (name, number) in seen or line < gone[0]:
                    continue
                if (app / root / f"{name}.py").exists() or (app / root / name).is_dir():
                    continue  # the app's own module of that name
                if DROP_INS.get(name) in provided:
                    continue
                seen.add((name, number))
                since = "Python 2" if gone[0] == PY2 else f"removed in {gone[0][0]}.{gone[0][1]}"
                out.append(f"{rel}:{number}: {name} ({since}) -> {gone[1]}")
            # An implicit relative import (Python 2): a sibling module of a package, imported by its bare name.
            if (here != app / root and (here / "__init__.py").exists() and "." not in module
                    and ((here / f"{module}.py").exists() or (here / module / "__init__.py").exists())
                    and not (app / root / f"{module}.py").exists() and not (app / root / module).is_dir()
                    and (module, number) not in seen):
                seen.add((module, number))
                out.append(f"{rel}:{number}: implicit relative import of {module} (Python 2)"
                           f" -> from . import {module} (or from .{module} import ...)")
    return out


_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*===?\s*([0-9][^\s;#,]*)")
GIT_PROTOCOL = re.compile(r"(?:git\+)?git://(\S+)")


def git_hint(url_tail: str) -> str:
    """``git://`` is gone (GitHub turned it off in 2022): the same repository over https."""
    return f"git:// no longer works (GitHub turned it off in 2022): use git+https://{url_tail}"


def requirement_lines(app: Path, requirements: str, target: tuple[int, int, int], env: dict[str, str]) -> \
        tuple[list[str], set[str]]:
    """The report's lines on the requirements, and the (normalised) names they install."""
    from . import releases, reqs

    if not requirements:
        return [], set()
    try:
        files = reqs.collect(app / requirements)
    except log.BuildError:
        return [], set()
    pins: list[tuple[str, str, str]] = []
    names: set[str] = set()
    out = []
    for path in files:
        try:
            rel = path.resolve().relative_to(app.resolve()).as_posix()
        except ValueError:
            rel = str(path)
        for number, text in enumerate(path.read_text(encoding="utf-8-sig", errors="replace").splitlines(), 1):
            git = GIT_PROTOCOL.search(text.split(" #", 1)[0])
            if git:
                out.append(f"{rel}:{number}: {git_hint(git.group(1))}")
            m = _PIN.match(text)
            if m:
                pins.append((m.group(1), m.group(2), f"{rel}:{number}"))
            n = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", text)
            if n:
                names.add(releases.normal(n.group(1)))
    found = releases.check([(name, version) for name, version, _ in pins], target, env)
    for name, version, place in pins:
        if name in found:
            out.append(f"{place}: {name}=={version}: {found[name]}")
    return out, names


def data_lines(services: dict[str, str], variables: dict[str, str]) -> list[str]:
    from dcruntime.dotcloud import DATA_TYPES

    from .dotcloud import DATA_SERVICES

    out = []
    for name, kind in sorted(services.items()):
        what = DATA_SERVICES.get(kind, (f"a {kind} add-on", kind.upper()))[0]
        word, sources, _ = DATA_TYPES.get(kind, (kind.upper(), (), ()))
        upper = re.sub(r"[^A-Za-z0-9]", "_", name).upper()
        via = " or ".join([*sources, f"{upper}_URL"])
        out.append(f"{name} ({kind}): provision {what}; its URL in {via} fills"
                   f" DOTCLOUD_{upper}_{word}_HOST/_PORT/_LOGIN/_PASSWORD/_URL in environment.json")
    known = {f"DOTCLOUD_{re.sub(r'[^A-Za-z0-9]', '_', n).upper()}_" for n in services}
    for variable, place in sorted(variables.items()):
        if variable in ("DOTCLOUD_ENVIRONMENT", "DOTCLOUD_PROJECT", "DOTCLOUD_SERVICE_NAME", "DOTCLOUD_SERVICE_ID",
                        "DOTCLOUD_SERVICE"):
            continue
        if not any(variable.startswith(prefix) for prefix in known):
            out.append(f"{place}: names {variable}, which no data service here provides: set it as a"
                       " config var (or declare its data service in dotcloud.yml)")
    return out


@dataclass
class Report:
    version: str
    sections: dict[str, list[str]]

    @property
    def python2(self) -> int:
        return len(self.sections.get("syntax", []))

    def text(self) -> str:
        lines = [f"Migration report for Python {self.version} (buildpack-python-dotcloud)", ""]
        for name, title in TITLES.items():
            found = self.sections.get(name, [])
            lines.append(f"{title.format(version=self.version)}: {len(found) or 'none'}")
            lines += [f"  {line}" for line in found]
        if self.python2 or self.sections.get("modules"):
            lines += ["", "Porting: convert the code once with 2to3, which Python 3.12 and older still have",
                      "(`python3.12 -m lib2to3 -w -n .`), fix what it leaves (the sections above), then build",
                      "with DC_STRICT_PY3=1 so that no Python 2 syntax comes back."]
        return "\n".join(lines) + "\n"


TITLES = {
    "syntax": "Python 2 syntax (compiled by Python {version})",
    "modules": "Modules gone in Python {version}",
    "requirements": "Requirements that will not run on Python {version}",
    "home": "Paths under /home/dotcloud (the home directory is $HOME here)",
    "data": "Data services and variables to set",
}


def make_report(app: Path, python: str, version: str, requirements: str, services: dict[str, str],
                env_dir: Path | None, tree: Tree | None = None) -> Report:
    from . import configvars, releases

    tree = tree or walk(app)
    target = (*(int(part) for part in version.split(".")[:3]), 0, 0, 0)[:3]
    scan = run_scanner(app, python, tree.python)
    env = releases.env_for_lookup(configvars.for_build(env_dir))
    req_lines, provided = requirement_lines(app, requirements, target, env)  # type: ignore[arg-type]
    root = _approot(app)
    return Report(version, {
        "syntax": syntax_lines(scan),
        "modules": module_lines(scan, app, target, provided, root),
        "requirements": req_lines,
        "home": tree.home,
        "data": data_lines(services, tree.variables),
    })


def _approot(app: Path) -> str:
    try:
        return str(json.loads((app / ".dotcloud" / "service.json").read_text()).get("approot") or ".")
    except (OSError, ValueError, AttributeError):
        return "."


def run_scanner(app: Path, python: str, files: list[str]) -> dict:
    """dcbuild.py2scan under the target interpreter."""
    if not files:
        return {"files": {}}
    res = subprocess.run([python, "-I", "-S", "-B", str(SCANNER), str(app)], input="\n".join(files) + "\n",
                         capture_output=True, text=True, errors="replace", timeout=600)
    if res.returncode != 0:
        raise log.BuildError(f"Cannot compile the app's Python files with {python}",
                             (res.stderr or res.stdout).strip()[-2000:])
    return json.loads(res.stdout)


# --- in the build -------------------------------------------------------------------------------


def _cached(cache: Path, report_key: str) -> Path:
    return cache / "reports" / f"migration-{report_key}.json"


def show(app: Path, data: dict, env_dir: Path | None, cached: bool = False) -> None:
    """Write .dotcloud/migration.txt, print the report, and fail if strict and Python 2 was found."""
    out = app / REPORT
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp.{os.getpid()}")
    tmp.write_text(data["text"])
    os.replace(tmp, out)
    sections: dict[str, list[str]] = data["sections"]
    total = sum(len(lines) for lines in sections.values())
    unchanged = " (app unchanged: from the cache)" if cached else ""
    if not total:
        log.step(f"Migration report: nothing to port for Python {data['version']} ({REPORT}){unchanged}")
        return
    counts = ", ".join(f"{len(lines)} {name}" for name, lines in sections.items() if lines)
    log.step(f"Migration report for Python {data['version']}: {counts} (all in {REPORT}){unchanged}")
    for name, title in TITLES.items():
        lines = sections.get(name, [])
        if not lines:
            continue
        log.detail(title.format(version=data["version"]) + ":")
        for line in lines[:MAX_SHOWN]:
            log.detail(f"  {line}")
        if len(lines) > MAX_SHOWN:
            log.detail(f"  ... and {len(lines) - MAX_SHOWN} more in {REPORT}")
    python2 = len(sections.get("syntax", []))
    if python2 and strict(env_dir):
        raise log.BuildError(
            f"the app has {python2} line(s) of Python 2 syntax, and DC_STRICT_PY3 is set",
            f"Python {data['version']} refuses them (or reads them otherwise); they are listed above and in {REPORT}"
            f" (first: {sections['syntax'][0]}).",
            "Port them to Python 3 (see the README's \"Migrating from dotCloud\"), or unset DC_STRICT_PY3.",
        )
    if python2:
        log.warn(f"the app has {python2} line(s) of Python 2 syntax that Python {data['version']} cannot run"
                 f" (listed above and in {REPORT}).",
                 "The build goes on; the app will fail where it imports them. DC_STRICT_PY3=1 fails the build instead.")


def show_cached(app: Path, cache: Path, report_key: str, env_dir: Path | None, stamp: Path,
                printed: Path | None = None) -> bool:
    """The cached report for this key, shown and stamped; False when there is none.

    ``printed``: where its stdout lines go instead (dcbuild.slug's prepare runs where stdout is
    make's; the Makefile prints that file), warnings and errors still to stderr."""
    try:
        data = json.loads(_cached(cache, report_key).read_text())
    except (OSError, ValueError):
        return False
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out if printed else sys.stdout):
            show(app, data, env_dir, cached=True)
    except log.BuildError:
        sys.stderr.write(out.getvalue())  # the lines the error points at, before it
        raise
    if printed:
        printed.parent.mkdir(parents=True, exist_ok=True)
        printed.write_text(out.getvalue())
    stamp.parent.mkdir(parents=True, exist_ok=True)
    for old in stamp.parent.glob("report-*"):
        if old != printed:
            old.unlink(missing_ok=True)
    stamp.touch()
    return True


def build(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dcbuild.migrate build")
    parser.add_argument("app", type=Path)
    parser.add_argument("--python", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--stamp", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--requirements", default="")
    parser.add_argument("--env-dir", default="")
    args = parser.parse_args(argv)
    env_dir = Path(args.env_dir) if args.env_dir else None
    services = _services(args.app)
    report = make_report(args.app, args.python, args.version, args.requirements, services, env_dir)
    data = {"version": args.version, "sections": report.sections, "text": report.text()}
    target = _cached(args.cache, args.key)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.tmp.{os.getpid()}")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, target)
        kept = sorted(target.parent.glob("migration-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in kept[KEEP_REPORTS:]:
            old.unlink(missing_ok=True)
    except OSError:
        pass  # a cache we cannot write: the report is made again next time
    show(args.app, data, env_dir)
    for old in args.stamp.parent.glob("report-*"):
        old.unlink(missing_ok=True)
    args.stamp.touch()
    return 0


def _services(app: Path) -> dict[str, str]:
    try:
        data = json.loads((app / ".dotcloud" / "service.json").read_text())
        return {str(k): str(v) for k, v in (data.get("data_services") or {}).items()}
    except (OSError, ValueError, AttributeError):
        return {}


# --- on its own (make report APP=...) --------------------------------------------------------------


def _standalone(app: Path, cache: Path, resolve: bool = True) -> tuple[str, str, dict[str, str]]:
    """(Python version, requirements file, data services) as a build would choose them, writing nothing."""
    from . import dotcloud, lockfiles, manifest, runtime

    service = dotcloud.load(app, cache, quiet=True)
    version = ""
    if resolve:
        fallback = dotcloud.python_request(service) if service else None
        version = str(runtime.resolve(app, runtime.Store(cache / "runtimes"), manifest.current_platform(),
                                      fallback)[0])
    approot = service.approot if service else "."
    requirements = ""
    for where in dict.fromkeys([approot, "."]):
        if lockfiles.detect(app / where, where) == "requirements.txt":
            requirements = f"{where}/requirements.txt" if where != "." else "requirements.txt"
            break
    return version, requirements, dict(service.data_services) if service else {}


def python(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dcbuild.migrate python")
    parser.add_argument("app", type=Path)
    parser.add_argument("--cache", type=Path, required=True)
    args = parser.parse_args(argv)
    _check_app(args.app)
    with _quiet():
        version = _standalone(args.app, args.cache)[0]
    print(version)
    return 0


class _quiet:
    """Warnings of the version choice go to stderr as they would in a build; stdout is the answer."""

    def __enter__(self):
        self.stdout = sys.stdout
        sys.stdout = sys.stderr

    def __exit__(self, *exc):
        sys.stdout = self.stdout


def _check_app(app: Path) -> None:
    if not app.is_dir():
        raise log.BuildError(f"{app} is not a directory", "make report APP=path/to/app (the app's checkout).")


def report(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dcbuild.migrate report")
    parser.add_argument("app", type=Path)
    parser.add_argument("--python", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    _check_app(args.app)
    start = time.monotonic()
    with _quiet():
        _version, requirements, services = _standalone(args.app, args.cache, resolve=False)
    tree = walk(args.app)
    result = make_report(args.app, args.python, args.version, requirements, services, None, tree)
    text = result.text()
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    sys.stderr.write(f"({len(tree.python)} Python files compiled by Python {args.version}"
                     f" in {time.monotonic() - start:.1f} s)\n")
    if result.python2 and strict(None):
        log.error(f"the app has {result.python2} line(s) of Python 2 syntax, and DC_STRICT_PY3 is set",
                  "A build would fail on them: port them first (the report lists them).")
        return 1
    return 0


def _main(argv: list[str]) -> int:
    commands = {"build": build, "python": python, "report": report}
    if not argv or argv[0] not in commands:
        raise log.BuildError("usage: python3 -m dcbuild.migrate build|python|report APP ...")
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    log.main(_main)
