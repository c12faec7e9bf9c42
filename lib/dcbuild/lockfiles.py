"""Lock files of package managers, turned into pinned requirements files for the installer.

An app says which packages it needs with exactly one of ``requirements.txt``,
``Pipfile.lock`` (pipenv), ``poetry.lock`` (poetry) or ``uv.lock`` (uv). A lock is written
out as a pinned requirements file with hashes and markers (``.dotcloud/requirements-<tool>.txt``)
and handed to the same installer as a requirements file, so caching, the previous-environment
start and uv's cache apply unchanged. Only the packages an app runs with are taken: pipenv's
``default`` section, poetry's ``main`` group, uv's dependencies without dev groups. The app's
own project is not installed (uv: ``--no-emit-project``, as Heroku's buildpack does): the app
runs from its directory.

A lock that no longer matches the file it was made from is an error saying which command
makes it again: pipenv and poetry record a hash of it (checked here as they compute it), uv
checks with ``uv export --locked``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

from . import log

# Each list of packages: the tool that makes it, and what it is made from (its staleness).
KINDS = {
    "requirements.txt": ("pip", []),
    "Pipfile.lock": ("pipenv", ["Pipfile"]),
    "poetry.lock": ("poetry", ["pyproject.toml"]),
    "uv.lock": ("uv", ["pyproject.toml"]),
}
PYPI = ("https://pypi.org/simple", "https://pypi.python.org/simple")


def _toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # the build image's python3 is older than 3.11
        raise log.BuildError(
            f"Reading {path.name} needs Python 3.11 or newer on the build machine (tomllib)",
            "The build machine's python3 is older.",
            "Use a newer stack, or set DC_PYTHON3 to a Python 3.11+ on the build machine.",
        ) from None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise log.BuildError(f"Cannot read {path.name}", str(exc), f"Fix {path.name} and deploy again.") from None


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise log.BuildError(f"Cannot read {path.name}", str(exc), "Run `pipenv lock` and deploy again.") from None
    if not isinstance(data, dict):
        raise log.BuildError(f"Cannot read {path.name}", "It is not a JSON object.", "Run `pipenv lock`.")
    return data


def detect(where: Path, shown: str) -> str | None:
    """The one file of ``KINDS`` in ``where`` (``shown`` is how the log names that directory).

    Several: an error naming them. A Pipfile or a poetry/uv pyproject.toml without its lock:
    an error saying which command makes the lock.
    """
    prefix = "" if shown in ("", ".") else f"{shown}/"
    found = [name for name in KINDS if (where / name).is_file()]
    if len(found) > 1:
        names = ", ".join(f"{prefix}{n}" for n in found[:-1]) + f" and {prefix}{found[-1]}"
        raise log.BuildError(
            f"The app has {names}: more than one list of packages to install",
            "Only one of requirements.txt, Pipfile.lock, poetry.lock and uv.lock may say what to install.",
            "Delete the ones the app does not use, and deploy again.",
        )
    if found:
        return found[0]
    if (where / "Pipfile").is_file():
        raise log.BuildError(
            f"{prefix}Pipfile has no Pipfile.lock next to it",
            "The buildpack installs the locked versions only.",
            "Run `pipenv lock`, add Pipfile.lock to the app, and deploy again.",
        )
    pyproject = where / "pyproject.toml"
    if pyproject.is_file():
        tool = _toml(pyproject).get("tool", {})
        for name, cmd in (("poetry", "poetry lock"), ("uv", "uv lock")):
            if isinstance(tool, dict) and name in tool:
                raise log.BuildError(
                    f"{prefix}pyproject.toml has a [tool.{name}] table but there is no {name}.lock",
                    "The buildpack installs the locked versions only.",
                    f"Run `{cmd}`, add {name}.lock to the app, and deploy again.",
                )
    return None


def inputs(where: Path, kind: str) -> list[Path]:
    """The lock and the files that decide whether it is stale (for the layer's key)."""
    return [where / kind] + [where / name for name in KINDS[kind][1] if (where / name).is_file()]


def _stale(lock: str, made_from: str, cmd: str) -> log.BuildError:
    return log.BuildError(
        f"{lock} is out of date: {made_from} changed since it was made",
        f"Its recorded hash of {made_from} does not match the file.",
        f"Run `{cmd}`, add the new {lock} to the app, and deploy again.",
    )


# --- pipenv -----------------------------------------------------------------------------------


def pipfile_hash(pipfile: dict) -> str:
    """pipenv's hash of a Pipfile (as plette's ``Pipfile.get_hash`` computes it)."""
    sources = pipfile.get("source") or [{"name": "pypi", "url": "https://pypi.org/simple", "verify_ssl": True}]
    data = {
        "_meta": {"sources": sources, "requires": pipfile.get("requires", {})},
        "default": pipfile.get("packages", {}),
        "develop": pipfile.get("dev-packages", {}),
    }
    for category, values in pipfile.items():
        if category not in {"source", "packages", "dev-packages", "requires", "scripts", "pipfile", "pipenv",
                            "default", "develop"}:
            data[category] = values
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _line(name: str, spec: str, hashes: list[str], markers: str | None) -> str:
    out = f"{name}{spec}"
    if markers:
        out += f" ; {markers}"
    return out + "".join(f" \\\n    --hash={h}" for h in hashes)


def from_pipfile_lock(where: Path) -> list[str]:
    lock = _json(where / "Pipfile.lock")
    pipfile = where / "Pipfile"
    recorded = lock.get("_meta", {}).get("hash", {}).get("sha256")
    if pipfile.is_file() and recorded and pipfile_hash(_toml(pipfile)) != recorded:
        raise _stale("Pipfile.lock", "Pipfile", "pipenv lock")
    sources = {s.get("name"): s.get("url", "") for s in lock.get("_meta", {}).get("sources", [])}
    lines = [f"--extra-index-url {url}" for url in sources.values() if url and url.rstrip("/") not in PYPI]
    default = lock.get("default", {})
    if not isinstance(default, dict):
        raise log.BuildError("Pipfile.lock has no \"default\" section", "", "Run `pipenv lock`.")
    for name, entry in sorted(default.items()):
        if not isinstance(entry, dict):
            continue
        extras = f"[{','.join(entry['extras'])}]" if entry.get("extras") else ""
        markers = entry.get("markers")
        if entry.get("git"):
            ref = f"@{entry['ref']}" if entry.get("ref") else ""
            git = entry["git"] if entry["git"].startswith("git+") else f"git+{entry['git']}"
            lines.append(_line(f"{name}{extras}", f" @ {git}{ref}", [], markers))
        elif entry.get("file"):
            lines.append(_line(f"{name}{extras}", f" @ {entry['file']}", [], markers))
        elif entry.get("path"):
            path = entry["path"] if entry["path"].startswith(("/", ".")) else f"./{entry['path']}"
            lines.append(("-e " if entry.get("editable") else "") + str((where / path).resolve()))
        else:
            lines.append(_line(f"{name}{extras}", entry.get("version", ""), entry.get("hashes", []), markers))
    return lines


# --- poetry -----------------------------------------------------------------------------------

_LEGACY_KEYS = ["dependencies", "source", "extras", "dev-dependencies"]
_RELEVANT_KEYS = [*_LEGACY_KEYS, "group"]
_PROJECT_KEYS = ["requires-python", "dependencies", "optional-dependencies"]


def poetry_hash(pyproject: dict, with_groups: bool = True) -> str:
    """poetry's ``content-hash`` of a pyproject.toml (as its Locker computes it)."""
    project = pyproject.get("project", {})
    groups = pyproject.get("dependency-groups", {}) if with_groups else {}
    tool_poetry = pyproject.get("tool", {}).get("poetry", {})
    relevant_project = {k: project[k] for k in _PROJECT_KEYS if project.get(k) is not None}
    relevant_poetry = {}
    for key in _RELEVANT_KEYS:
        data = tool_poetry.get(key)
        if data is None and (key not in _LEGACY_KEYS or relevant_project or groups):
            continue
        relevant_poetry[key] = data
    content: dict = {}
    if relevant_project:
        content["project"] = relevant_project
    if groups:
        content["dependency-groups"] = groups
    if content:
        content["tool"] = {"poetry": relevant_poetry}
    else:
        content = relevant_poetry
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _poetry_main(lock: dict, pyproject: dict) -> dict[str, str | None]:
    """Main-group packages of the lock, each with its marker (None: always)."""
    packages = [p for p in lock.get("package", []) if isinstance(p, dict)]
    if any("groups" in p for p in packages):  # lock-version 2.1
        out = {}
        for p in packages:
            if "main" in p.get("groups", []):
                markers = p.get("markers")
                out[_norm(p["name"])] = markers.get("main") if isinstance(markers, dict) else markers
        return out
    if any("category" in p for p in packages):  # lock-version 1.x
        return {_norm(p["name"]): None for p in packages if p.get("category") == "main"}
    # lock-version 2.0: walk the dependencies from the main ones; a package reached only
    # through edges with markers gets those markers.
    by_name = {_norm(p["name"]): p for p in packages}
    tool = pyproject.get("tool", {}).get("poetry", {})
    roots = [n for n in tool.get("dependencies", {}) if n != "python"]
    for spec in pyproject.get("project", {}).get("dependencies", []):
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
        if m:
            roots.append(m.group(1))
    found: dict[str, set[str | None]] = {}
    todo = [(_norm(n), None) for n in roots]
    while todo:
        name, marker = todo.pop()
        if name not in by_name or marker in found.get(name, set()):
            continue
        first = name not in found
        found.setdefault(name, set()).add(marker)
        if not first:
            continue
        for dep, spec in by_name[name].get("dependencies", {}).items():
            specs = spec if isinstance(spec, list) else [spec]
            for one in specs:
                edge = one.get("markers") if isinstance(one, dict) else None
                todo.append((_norm(dep), edge))
    return {n: None if None in ms else " or ".join(f"({m})" for m in sorted(ms)) for n, ms in found.items()}


def from_poetry_lock(where: Path) -> list[str]:
    lock = _toml(where / "poetry.lock")
    pyproject_path = where / "pyproject.toml"
    pyproject = _toml(pyproject_path) if pyproject_path.is_file() else {}
    recorded = lock.get("metadata", {}).get("content-hash")
    if recorded and pyproject and recorded not in (poetry_hash(pyproject), poetry_hash(pyproject, False)):
        raise _stale("poetry.lock", "pyproject.toml", "poetry lock")
    main = _poetry_main(lock, pyproject)
    indexes: list[str] = []
    lines: list[str] = []
    for p in sorted(lock.get("package", []), key=lambda p: _norm(p.get("name", ""))):
        name = _norm(p.get("name", ""))
        if name not in main:
            continue
        markers = main[name]
        source = p.get("source", {}) or {}
        kind, url = source.get("type"), source.get("url", "")
        if kind == "git":
            ref = source.get("resolved_reference") or source.get("reference") or ""
            sub = f"#subdirectory={source['subdirectory']}" if source.get("subdirectory") else ""
            lines.append(_line(name, f" @ git+{url}{'@' + ref if ref else ''}{sub}", [], markers))
        elif kind in ("directory", "file"):
            path = (where / url).resolve()
            lines.append(("-e " if p.get("develop") else "") + (f"{path}" if not markers else f"{path} ; {markers}"))
        elif kind == "url":
            lines.append(_line(name, f" @ {url}", [], markers))
        else:
            if kind == "legacy" and url.rstrip("/") not in PYPI and url not in indexes:
                indexes.append(url)
            hashes = [f["hash"] for f in p.get("files", []) if isinstance(f, dict) and f.get("hash")]
            lines.append(_line(name, f"=={p['version']}", hashes, markers))
    return [f"--extra-index-url {url}" for url in indexes] + lines


# --- uv ---------------------------------------------------------------------------------------


def from_uv_lock(where: Path, cache: Path | None, env_dir: Path | None, python: Path) -> list[str]:
    """``uv export`` of the lock's packages, with ``python`` (the runtime the packages go into) as
    the interpreter: uv looks for none on the build machine, and downloads none."""
    from . import pip, tools

    uv = tools.uv(cache)
    env = pip.uv_env(cache / "uv" if cache else None, env_dir)
    # The project's own [tool.uv] settings count (they shape the lock); the host's do not.
    del env["UV_NO_CONFIG"]
    env["XDG_CONFIG_HOME"] = str(where / ".dotcloud" / "no-user-config")
    res = subprocess.run([str(uv), "export", "--locked", "--no-dev", "--no-emit-project", "--no-header",
                          "--format", "requirements-txt", "--python", str(python), "--no-python-downloads",
                          "--directory", str(where)],
                         env=env, capture_output=True, text=True, errors="replace")
    if res.returncode != 0:
        said = [line for line in (res.stderr or res.stdout).splitlines()
                if line.strip() and not line.startswith("Using ")]  # the interpreter uv was given
        for line in said:
            log.detail(line)
        if any("needs to be updated" in line for line in said):
            raise log.BuildError(
                "uv.lock does not match pyproject.toml (uv export --locked failed)",
                "uv's own message is above.",
                "Run `uv lock`, add the new uv.lock to the app, and deploy again.",
            )
        last = said[-1].strip() if said else f"exit status {res.returncode}"
        raise log.BuildError(
            "uv could not export the packages of uv.lock",
            f"uv said: {last}",
            "Fix what uv names above (pyproject.toml, uv.lock) and deploy again.",
        )
    return [line for line in res.stdout.splitlines() if line.strip()]


def uv_lock_requirements(app: Path, where: Path, cache: Path | None, env_dir: Path | None, python: Path) -> Path:
    """Write uv.lock's packages to ``.dotcloud/requirements-uv.txt`` (the install's first step)."""
    return _write(app, where, "uv.lock", from_uv_lock(where, cache, env_dir, python))


def requirements_path(kind: str) -> str:
    """Where a lock's packages are written, relative to the app."""
    return f".dotcloud/requirements-{KINDS[kind][0]}.txt"


def write_requirements(app: Path, where: Path, kind: str) -> str:
    """Write a Pipfile.lock's or poetry.lock's packages as ``.dotcloud/requirements-<tool>.txt``;
    return that path (app-relative). (uv.lock's are written by the install: uv_lock_requirements.)"""
    lines = from_pipfile_lock(where) if kind == "Pipfile.lock" else from_poetry_lock(where)
    return str(_write(app, where, kind, lines).relative_to(app))


def _write(app: Path, where: Path, kind: str, lines: list[str]) -> Path:
    out = app / requirements_path(kind)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        shown = where.relative_to(app)
    except ValueError:
        shown = where
    head = f"# Written by the buildpack from {shown / kind if str(shown) != '.' else kind}: do not edit.\n"
    tmp = out.with_name(f"{out.name}.tmp.{os.getpid()}")
    tmp.write_text(head + "".join(f"{line}\n" for line in lines))
    os.replace(tmp, out)
    return out
