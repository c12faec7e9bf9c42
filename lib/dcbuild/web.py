"""The web stack's build steps: runtime scripts and configs into the slug, dotCloud's links.

    python3 -m dcbuild.web configs BUILD_DIR
    python3 -m dcbuild.web approot BUILD_DIR

``configs`` copies the runtime scripts (``bin/``), the templates (``config/``), nginx's
``uwsgi_params`` and ``mime.types`` (from the nginx layer already in the slug) and the
``dcruntime`` package into the slug. A file the app ships under the same name is the app's and
stays; the log says so. What this step wrote is recorded with its sha256 in
``.dotcloud/web-configs.json``, so running it again replaces its own files and only those.
A ``Procfile`` (``web: bin/dcweb``, plus ``NAME: bin/dcweb NAME`` for each worker service of
dotcloud.yml, service.json's ``workers``) is written only when the app has none; an app's own
Procfile is kept, and the log names the worker lines it lacks.

``approot`` checks the approot (``APPROOT``, which the Makefile exports from the build plan:
the environment's, else dotcloud.yml's, else ``.``) and runs ``bin/dcapproot.sh`` in the build
directory, so that dotCloud's home, ``.dotcloud/home/`` with ``code``, ``current`` and ``env``
(relative links), exists in the slug. Nothing is linked into the app's own directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path, PurePosixPath

from . import log

BUILDPACK = Path(__file__).resolve().parents[2]
RECORD = ".dotcloud/web-configs.json"
NGINX_CONF = ".dotcloud/nginx/conf"
PROCFILE = "web: bin/dcweb\n"

# (source, destination in the slug, mode); "nginx:" sources come from the slug's nginx layer.
FILES = (
    ("bin/dcweb", "bin/dcweb", 0o755),
    ("bin/nginx_start", "bin/nginx_start", 0o755),
    ("bin/uwsgi_start", "bin/uwsgi_start", 0o755),
    ("bin/dcapproot.sh", "bin/dcapproot.sh", 0o755),
    ("config/nginx.conf.template", "config/nginx.conf.template", 0o644),
    ("config/supervisord.conf", "config/supervisord.conf", 0o644),
    ("nginx:uwsgi_params", "config/uwsgi_params", 0o644),
    ("nginx:mime.types", "config/mime.types", 0o644),
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write(target: Path, data: bytes, mode: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    tmp.replace(target)


def _link_or_copy(src: str, dest: str) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def _source(bp: Path, app: Path, name: str) -> Path:
    if name.startswith("nginx:"):
        path = app / NGINX_CONF / name.removeprefix("nginx:")
        if not path.is_file():
            raise log.BuildError(
                f"The nginx layer is missing {NGINX_CONF}/{path.name}",
                "The configs step copies it from the nginx layer, which must be installed first.",
            )
        return path
    return bp / name


def workers(app: Path) -> list[str]:
    """The worker services of service.json (dcbuild.dotcloud), by name."""
    try:
        service = json.loads((app / ".dotcloud" / "service.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    found = service.get("workers") if isinstance(service, dict) else None
    return sorted(found) if isinstance(found, dict) else []


def procfile(names: list[str]) -> str:
    """The default Procfile: the web process, and one process type per worker service."""
    return PROCFILE + "".join(f"{name}: bin/dcweb {name}\n" for name in names)


def install_configs(app: Path, bp: Path = BUILDPACK, runtime_lib: Path | None = None) -> None:
    """The files of FILES, and the dcruntime package: from ``runtime_lib`` (the cache layer
    with its bytecode, dcbuild.slug) when given, else the buildpack's sources."""
    log.step("Installing runtime configs")
    record_path = app / RECORD
    try:
        record: dict[str, str] = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {}
    installed, kept = [], []
    wanted = [(_source(bp, app, src), dest, mode) for src, dest, mode in FILES]
    wanted.append((None, "Procfile", 0o644))
    names = workers(app)
    for src, dest, mode in wanted:
        target = app / dest
        if (target.exists() or target.is_symlink()) and (target.is_symlink() or record.get(dest) != sha256(target)):
            kept.append(dest)
            continue
        data = procfile(names).encode() if src is None else src.read_bytes()
        _write(target, data, mode)
        record[dest] = hashlib.sha256(data).hexdigest()
        installed.append(dest)

    lib = app / ".dotcloud" / "lib" / "dcruntime"
    shutil.rmtree(lib, ignore_errors=True)
    if runtime_lib is not None:  # hard links where it can (as the environment's), else copies
        shutil.copytree(runtime_lib / "dcruntime", lib, copy_function=_link_or_copy)
    else:
        shutil.copytree(bp / "lib" / "dcruntime", lib, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _write(record_path, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode(), 0o644)

    log.detail("Installed " + " ".join(installed) if installed else "Nothing to install")
    if "Procfile" in installed and names:
        log.detail("Procfile: web: bin/dcweb, " + ", ".join(f"{name}: bin/dcweb {name}" for name in names))
    for dest in kept:
        if dest == "Procfile":
            log.detail("Using the app's own Procfile (the default would be: web: bin/dcweb)")
            _check_procfile(app / "Procfile", names)
        else:
            log.detail(f"Keeping the app's own {dest} (not replaced by the buildpack's)")


def _check_procfile(path: Path, names: list[str]) -> None:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    types = {line.partition(":")[0].strip() for line in text.splitlines() if ":" in line}
    for name in names:
        if name not in types:
            log.warn(f"Procfile: dotcloud.yml's service '{name}' has no process type there, so it does not run",
                     f"Add the line `{name}: bin/dcweb {name}` to the Procfile.")


def check_approot(app: Path, approot: str) -> str:
    """The approot, normalized; BuildError unless the links can be made.

    What a valid approot is, is dcbuild.dotcloud's rule (the build plan has already applied
    it to APPROOT or dotcloud.yml's approot); this adds what linking it needs.
    """
    # Normalized as the build plan does (dcbuild.plan), then dotCloud's rule (dcbuild.dotcloud).
    from . import dotcloud  # not at the top: the slug's steps import this module, most never need it

    approot = str(PurePosixPath(approot.strip().strip("/") or "."))
    approot = dotcloud.check_approot(app, approot, "APPROOT")
    if not (app / approot).resolve().is_relative_to(app.resolve()):
        raise log.BuildError(
            f"APPROOT: approot '{approot}' leads outside the app",
            f"{approot} is a link to a directory outside the app; dotCloud's approot is inside it.",
        )
    return approot


def link_approot(app: Path, bp: Path = BUILDPACK) -> None:
    log.step("Linking the approot")
    approot = check_approot(app, os.environ.get("APPROOT") or ".")
    result = subprocess.run(
        [str(bp / "bin" / "dcapproot.sh"), str(app)],
        env={**os.environ, "APPROOT": approot},
        capture_output=True,
        text=True,
    )
    for line in result.stderr.splitlines():
        if result.returncode == 0:
            log.warn(line.removeprefix("dcapproot.sh: warning: "))
    if result.returncode != 0:
        raise log.BuildError("Cannot link the approot", result.stderr.strip())
    current = "code" if approot == "." else f"code/{approot}"
    log.detail(f"dotCloud's home is .dotcloud/home: code -> the app, current -> {current}")
    if not (app / approot / "wsgi.py").is_file():
        log.warn(
            f"No wsgi.py in the approot ({approot})",
            "The default web process (bin/dcweb) serves `application` from current/wsgi.py.",
        )


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("configs", "approot"):
        raise log.BuildError("usage: python3 -m dcbuild.web configs|approot BUILD_DIR")
    app = Path(argv[1])
    if not app.is_dir():
        raise log.BuildError(f"The build directory {app} does not exist")
    if argv[0] == "configs":
        install_configs(app)
    else:
        link_approot(app)
    return 0


if __name__ == "__main__":
    log.main(main)
