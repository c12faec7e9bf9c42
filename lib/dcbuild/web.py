"""The web stack's build steps: runtime scripts and configs into the slug, dotCloud's links.

    python3 -m dcbuild.web configs BUILD_DIR
    python3 -m dcbuild.web approot BUILD_DIR

``configs`` copies the runtime scripts (``bin/``), the templates (``config/``), nginx's
``uwsgi_params`` and ``mime.types`` (from the nginx layer already in the slug) and the
``dcruntime`` package into the slug. A file the app ships under the same name is the app's and
stays; the log says so. What this step wrote is recorded with its sha256 in
``.dotcloud/web-configs.json``, so running it again replaces its own files and only those.
A ``Procfile`` (``web: bin/dcweb``) is written only when the app has none.

``approot`` checks the approot (``APPROOT``, which the Makefile exports from the build plan:
the environment's, else dotcloud.yml's, else ``.``) and runs ``bin/dcapproot.sh`` in the build
directory, so ``current`` and ``code`` exist in the slug as relative links.
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
    for src, dest, mode in wanted:
        target = app / dest
        if (target.exists() or target.is_symlink()) and (target.is_symlink() or record.get(dest) != sha256(target)):
            kept.append(dest)
            continue
        data = PROCFILE.encode() if src is None else src.read_bytes()
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
    for dest in kept:
        if dest == "Procfile":
            log.detail("Using the app's own Procfile (the default would be: web: bin/dcweb)")
        else:
            log.detail(f"Keeping the app's own {dest} (not replaced by the buildpack's)")


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
    current = app / "current"
    if current.exists() and not current.is_symlink():
        raise log.BuildError(
            "The app has its own 'current'",
            "dotCloud used current for the link to the approot, and so does this buildpack.",
            "Rename the app's current.",
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
    log.detail(f"current -> {approot}, code -> .")
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
