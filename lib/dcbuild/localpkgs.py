"""The app's local packages: requirement lines that name a directory or an archive on disk
(``./vendor/mylib``, ``-e ./vendor/mylib``, ``name @ file:///...``, ``./dist/x-1.0.tar.gz``) or a
local ``--find-links`` directory.

What they hold is part of the userreqs layer's key (``digest``): a changed file in a local
package rebuilds the layer, as a changed requirement line does. A non-editable package counts by
its whole content (build leftovers aside: ``build/``, ``*.egg-info``, ``__pycache__``, VCS
directories); an editable one by what its install writes, which is all that the layer holds of
it (the code itself is used from the slug): its metadata files and its top-level names.

uv caches the wheel it built from a local directory and builds it again only when the project's
``pyproject.toml``/``setup.py``/``setup.cfg`` has a new mtime, so a changed module under the same
version would come back stale: ``names`` gives the projects to pass as ``--refresh-package``.

An editable install writes the project's absolute path (a ``.pth`` line, setuptools' finder
module) into site-packages; ``relocate_editables`` makes those paths relative to site-packages,
as they will be in the slug, so the environment works wherever the slug is moved (``/app``).
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

ARCHIVES = (".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")
# Never part of a local package's identity: what builds and tools leave in the tree.
_SKIP_ANYWHERE = {".git", ".hg", ".svn", "__pycache__", ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
_SKIP_TOP = {"build", ".dotcloud", ".profile.d", ".venv"}
_METADATA = ("pyproject.toml", "setup.py", "setup.cfg", "MANIFEST.in")

_EDITABLE = re.compile(r"^(?:-e|--editable)(?:\s*=\s*|\s+)(\S+)")
_FIND_LINKS = re.compile(r"^(?:-f|--find-links)(?:\s*=\s*|\s+)(\S+)")
_NOT_A_PATH = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|(?:git|hg|svn|bzr)\+)", re.I)
_DIRECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\s*(?:\[[^\]]*\])?\s*@\s*(\S+)")


@dataclass(frozen=True)
class Local:
    """A local path named by a requirement file (``kind``: package, editable or find-links)."""

    path: Path
    kind: str
    where: str  # file:line, for messages


def _as_path(token: str, bases: list[Path]) -> list[Path]:
    """The candidate paths a requirement token names, or [] when it names no local path."""
    token = token.split("#", 1)[0]
    if token.startswith("file:"):
        parsed = urllib.parse.urlparse(token)
        raw = urllib.parse.unquote(parsed.path) if parsed.netloc in ("", "localhost") else ""
        if not raw:
            return []
        token = raw
    elif _NOT_A_PATH.match(token) or not (token.startswith((".", "/", "~")) or "/" in token
                                          or token.endswith(ARCHIVES)):
        return []
    token = re.sub(r"\[[^\]]*\]$", "", token)
    path = Path(os.path.expanduser(token))
    if path.is_absolute():
        return [path]
    # pip reads a relative path against the working directory, uv against the file's own
    # directory: count both where they differ.
    return list(dict.fromkeys(base / path for base in bases))


def find(files: list[Path], cwd: Path) -> list[Local]:
    """The local paths named in ``files`` (a requirement file and those it includes)."""
    found: list[Local] = []
    for req in files:
        try:
            lines = req.read_text(encoding="utf-8-sig", errors="replace").splitlines()
        except OSError:
            continue
        bases = [cwd, req.parent]
        for number, raw in enumerate(lines, 1):
            line = re.sub(r"(^|\s)#.*$", "", raw).strip()
            if not line:
                continue
            kind, token = "package", None
            for pattern, name in ((_EDITABLE, "editable"), (_FIND_LINKS, "find-links")):
                m = pattern.match(line)
                if m:
                    kind, token = name, m.group(1)
                    break
            else:
                if line.startswith("-"):
                    continue
                m = _DIRECT.match(line)
                token = m.group(1) if m else line.split(";", 1)[0].split()[0]
            for path in _as_path(token, bases):
                found.append(Local(path, kind, f"{req.name}:{number}"))
    return found


_UV_SOURCE = re.compile(r'source\s*=\s*\{\s*(directory|editable|path)\s*=\s*"([^"]+)"')


def from_uv_lock(lock: Path) -> list[Local]:
    """The local projects a uv.lock installs (``source = { directory|editable|path = "..." }``),
    the app's own project (``.``, not installed) aside."""
    try:
        text = lock.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    found = []
    for m in _UV_SOURCE.finditer(text):
        if m.group(2) in (".", "./"):
            continue
        kind = "editable" if m.group(1) == "editable" else "package"
        found.append(Local(lock.parent / m.group(2), kind, f"{lock.name}:{text.count(chr(10), 0, m.start()) + 1}"))
    return found


def _tree(h: hashlib._Hash, root: Path) -> None:
    """Names and contents of the files under ``root`` (links by their target), sorted."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        top = here == root
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_ANYWHERE and not d.endswith(".egg-info")
                             and not (top and d in _SKIP_TOP))
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")):
                continue
            path = here / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                h.update(b"L" + rel.encode() + b"\0" + os.readlink(path).encode() + b"\0")
                continue
            h.update(b"F" + rel.encode() + b"\0")
            try:
                with open(path, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
            except OSError:
                h.update(b"\0unreadable")
            h.update(b"\0")
        for d in dirnames:
            link = here / d
            if link.is_symlink():  # os.walk does not enter links to directories: count the link
                h.update(b"L" + str(link.relative_to(root)).encode() + b"\0" + os.readlink(link).encode() + b"\0")


def _editable(h: hashlib._Hash, root: Path) -> None:
    """What an editable install of ``root`` depends on: its metadata files, and the names at its
    top (and under ``src/``), which decide what its finder or ``.pth`` maps."""
    for name in _METADATA:
        path = root / name
        h.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"\0missing") + b"\0")
    for top in (root, root / "src"):
        try:
            names = sorted(p.name for p in top.iterdir()
                           if p.name not in _SKIP_ANYWHERE and p.name not in _SKIP_TOP
                           and not p.name.endswith(".egg-info"))
        except OSError:
            continue
        h.update(("\n".join(names)).encode() + b"\0")


def digest(locals_: list[Local]) -> str:
    """sha256 over what the local paths hold ("" when there are none)."""
    if not locals_:
        return ""
    h = hashlib.sha256()
    for local in sorted(set(locals_), key=lambda x: (str(x.path), x.kind)):
        h.update(f"{local.kind}\0{local.path}\0".encode())
        if local.kind == "editable" and local.path.is_dir():
            _editable(h, local.path)
        elif local.path.is_dir():
            _tree(h, local.path)
        elif local.path.is_file():
            h.update(local.path.read_bytes())
        else:
            h.update(b"\0missing")
        h.update(b"\0")
    return h.hexdigest()


# --- names, for uv's --refresh-package ----------------------------------------------------------


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_name(path: Path) -> str | None:
    """The distribution name of a local project directory or archive, where it can be read
    without building it."""
    if path.is_file():
        stem = path.name
        if stem.endswith(".whl"):
            return _normal(stem.split("-")[0])
        for ext in ARCHIVES:
            if stem.endswith(ext):
                m = re.match(r"(.+?)-\d", stem[: -len(ext)])
                return _normal(m.group(1)) if m else None
        return None
    pyproject = path / "pyproject.toml"
    if pyproject.is_file():
        text = pyproject.read_text(encoding="utf-8", errors="replace")
        table = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
        if table:
            m = re.search(r"^name\s*=\s*[\"']([^\"']+)[\"']", table.group(1), re.M)
            if m:
                return _normal(m.group(1))
    cfg = path / "setup.cfg"
    if cfg.is_file():
        import configparser

        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(cfg, encoding="utf-8")
            if parser.has_option("metadata", "name"):
                return _normal(parser.get("metadata", "name"))
        except (configparser.Error, UnicodeDecodeError):
            pass
    setup = path / "setup.py"
    if setup.is_file():
        m = re.search(r"\bname\s*=\s*[\"']([^\"']+)[\"']", setup.read_text(encoding="utf-8", errors="replace"))
        if m:
            return _normal(m.group(1))
    return None


def names(locals_: list[Local]) -> list[str]:
    return sorted({n for local in locals_ if local.kind != "find-links" for n in [project_name(local.path)] if n})


# --- editables in the slug ------------------------------------------------------------------


def _site_packages(root: Path) -> list[Path]:
    return sorted(root.glob("lib/python3*/site-packages"))


def relocate_editables(root: Path, app: Path) -> list[Path]:
    """Rewrite the absolute paths under ``app`` that editable installs wrote into ``root``'s
    site-packages as paths relative to the place site-packages has in the slug
    (``app/.dotcloud/python/lib/python3.X/site-packages``, whatever ``root`` is now).
    Returns the files changed."""
    from .relocate import write_replacing

    app = app.resolve()
    changed = []
    for site in _site_packages(root):
        slug_site = app / ".dotcloud" / "python" / site.relative_to(root)

        def rel(value: str, slug_site: Path = slug_site) -> str | None:
            path = Path(value)
            if not path.is_absolute():
                return None
            try:
                path.resolve().relative_to(app)
            except ValueError:
                return None
            return os.path.relpath(path.resolve(), slug_site)

        for pth in site.glob("*.pth"):
            text = pth.read_text(encoding="utf-8", errors="surrogateescape")
            lines = text.splitlines(keepends=True)
            out = []
            for line in lines:
                bare = line.rstrip("\r\n")
                new = None if bare.startswith(("import ", "import\t", "#")) else rel(bare)
                out.append(new + line[len(bare):] if new is not None else line)
            if out != lines:
                write_replacing(pth, "".join(out).encode("utf-8", "surrogateescape"))
                changed.append(pth)
        for finder in site.glob("__editable__*finder.py"):
            new_text = _relocate_finder(finder.read_text(encoding="utf-8"), rel)
            if new_text is not None:
                write_replacing(finder, new_text.encode("utf-8"))
                changed.append(finder)
    return changed


_FINDER_HELPER = (
    "import os as _dcbp_os\n"
    "def _dcbp_here(rel):  # written by buildpack-python-dotcloud: paths relative to site-packages\n"
    "    return _dcbp_os.path.normpath(_dcbp_os.path.join(_dcbp_os.path.dirname(_dcbp_os.path.abspath(__file__)),"
    " rel))\n"
)


def _relocate_finder(text: str, rel) -> str | None:
    """setuptools' editable finder with its MAPPING and NAMESPACES paths computed from the
    module's own place; None when there is nothing to change."""
    import ast

    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, int, str]] = []
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
        if not isinstance(target, ast.Name) or target.id not in ("MAPPING", "NAMESPACES") or node.value is None:
            continue
        try:
            value = ast.literal_eval(node.value)
        except ValueError:
            continue
        if not isinstance(value, dict):
            continue

        def code(v, _rel=rel) -> str | None:
            if isinstance(v, str):
                r = _rel(v)
                return f"_dcbp_here({r!r})" if r is not None else repr(v)
            if isinstance(v, list):
                return "[" + ", ".join(code(x) or repr(x) for x in v) + "]"
            return repr(v)

        body = ", ".join(f"{k!r}: {code(v)}" for k, v in value.items())
        if "_dcbp_here(" not in body:
            continue
        edits.append((node.lineno - 1, node.end_lineno or node.lineno, f"{target.id} = {{{body}}}\n"))
    if not edits:
        return None
    for start, end, new in reversed(edits):
        lines[start:end] = [new]
    first = edits[0][0]
    lines.insert(first, _FINDER_HELPER)
    return "".join(lines)
