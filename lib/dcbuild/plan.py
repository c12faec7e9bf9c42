"""What this build will make, decided once at the start: a make include of variables.

One process reads the app (runtime.txt, .python-version, dotcloud.yml, requirement files),
resolves the exact Python, hashes the requirement files, and writes ``PLAN`` (make syntax).
The Makefile includes it; every cache key comes from these values.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

from . import configvars, dotcloud, localpkgs, lockfiles, log, manifest, pip, reqs, runtime


def _lock(app: Path, approot: str) -> tuple[str | None, list[Path], str, str]:
    """The app's list of packages: (requirements file for the installer, lock inputs, label,
    the directory of a uv.lock).

    The approot's files win (dotCloud's place), then the app's top directory. A lock
    (Pipfile.lock, poetry.lock, uv.lock) becomes a pinned requirements file (dcbuild.lockfiles):
    Pipfile.lock and poetry.lock here; uv.lock by the install, which has the runtime uv needs.
    """
    for where in dict.fromkeys([approot, "."]):
        kind = lockfiles.detect(app / where, where)
        if kind is None:
            continue
        shown = kind if where == "." else f"{where}/{kind}"
        if kind == "requirements.txt":
            return shown, [], shown, ""
        if kind == "uv.lock":
            return lockfiles.requirements_path(kind), lockfiles.inputs(app / where, kind), shown, where
        path = lockfiles.write_requirements(app, app / where, kind)
        return path, lockfiles.inputs(app / where, kind), shown, ""
    return None, [], "", ""


def _requirements(app: Path, approot: str, service: dotcloud.Service | None, notes: list[str],
                  found: str | None) -> str | None:
    """Which requirements file the installer gets, relative to the app; dotcloud.yml's added."""
    if approot != "." and found == f"{approot}/requirements.txt" and (app / "requirements.txt").is_file():
        notes.append(f"Using {found} (the approot's, as on dotCloud), not requirements.txt")
    extras = service.requirements if service else []
    if not extras:
        return found
    generated = app / ".dotcloud" / "requirements-dotcloud.txt"
    generated.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# Written by the buildpack: the app's requirements plus dotcloud.yml's 'requirements:'."]
    if found:
        lines.append(f"-r ../{found}")
    lines += extras
    generated.write_text("\n".join(lines) + "\n")
    return ".dotcloud/requirements-dotcloud.txt"


def _user_hash(app: Path, user_reqs: str | None, lock_inputs: list[Path], uv_lock: str) -> tuple[str, str]:
    """What decides the userreqs layer: (every requirement file involved, ``-r``/``-c`` followed,
    and a lock with what decides its staleness; the content of the local packages they name,
    dcbuild.localpkgs). uv.lock's requirements file is not written yet: the lock counts."""
    if not user_reqs:
        return "", ""
    h = hashlib.sha256()
    if not uv_lock:
        h.update(reqs.digest(app / user_reqs, app).encode())
        local = localpkgs.find(reqs.collect(app / user_reqs), app)
    else:
        if user_reqs != lockfiles.requirements_path("uv.lock"):  # dotcloud.yml's requirements added
            h.update((app / user_reqs).read_bytes())
        local = localpkgs.from_uv_lock(app / uv_lock / "uv.lock")
    for path in lock_inputs:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16], localpkgs.digest(local)[:12]


def index_hash(env_dir: Path | None) -> str:
    """The package index settings (config vars first, then the environment) that decide what the
    installers find: part of the userreqs layer's key, hashed (they may hold passwords)."""
    config = configvars.for_build(env_dir)
    values = [f"{name}={config.get(name, os.environ.get(name, '')).strip()}" for name in pip.INDEX_SETTINGS]
    if not any(v.partition("=")[2] for v in values):
        return "pypi"
    return hashlib.sha256("\n".join(values).encode()).hexdigest()[:8]


def make_plan(app: Path, cache: Path, platform: str, notes: list[str],
              env_dir: Path | None = None) -> tuple[dict[str, str], dict]:
    service = dotcloud.load(app, cache)
    fallback = dotcloud.python_request(service) if service else None
    store = runtime.Store(cache / "runtimes")
    version, origin = runtime.resolve(app, store, platform, fallback)
    env_approot = os.environ.get("APPROOT")
    if env_approot:
        approot = dotcloud.check_approot(app, env_approot.strip().strip("/") or ".", "APPROOT")
    elif service:
        approot = dotcloud.check_approot(app, service.approot, f"dotcloud.yml:{service.line_of.get('approot', 1)}")
    else:
        approot = "."
    found, lock_inputs, found_label, uv_lock = _lock(app, approot)
    user_reqs = _requirements(app, approot, service, notes, found)
    reqs_hash, local_hash = _user_hash(app, user_reqs, lock_inputs, uv_lock)
    index = index_hash(env_dir)
    label = found_label  # dotcloud.yml's requirements (the only other list) say so below
    if service and service.requirements:
        label = (f"{found_label} + " if found else "") + "dotcloud.yml requirements"
    settings = service.to_json(approot) if service else {"approot": approot}
    return {
        "PY_VERSION": str(version),
        "PY_ORIGIN": origin,
        "APPROOT": approot,
        "USER_REQS": user_reqs or "",
        "USER_HASH": hashlib.sha256(f"{reqs_hash}-{local_hash}-{index}".encode()).hexdigest()[:16] if user_reqs else "",
        "REQS_HASH": reqs_hash,
        "LOCAL_HASH": local_hash,
        "USER_REQS_LABEL": label,
        "USER_LOCK": uv_lock,
        "INDEX_HASH": index,
        "INSTALLER": pip.installer(env_dir),
        "DOTCLOUD_SERVICE_NAME": service.name if service else "",
        "DOTCLOUD_SERVICE_TYPE": service.type if service else "",
    }, settings


def _main(argv: list[str]) -> int:
    run(argv)
    return 0


def run(argv: list[str]) -> dict[str, str]:
    """The command line's work: the plan, written to ``--out``, and returned."""
    parser = argparse.ArgumentParser(prog="dcbuild.plan")
    parser.add_argument("app", type=Path)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--platform", default=manifest.current_platform())
    parser.add_argument("--env-dir", default="", help="the platform's config vars (DC_INSTALLER)")
    args = parser.parse_args(argv)
    if args.cache.is_dir():
        runtime._MEMO.append(args.cache / "local-pythons.json")
    notes: list[str] = []
    plan, settings = make_plan(args.app, args.cache, args.platform, notes, Path(args.env_dir) if args.env_dir else None)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(f"{args.out.name}.tmp.{os.getpid()}")
        text = "".join(f"{key} := {value}\n" for key, value in plan.items())
        # Notes are printed by make when it reads the plan, in order with the rest of the log.
        text += "".join(f"$(info $(PLAN_EMPTY){log.INDENT}{note})\n" for note in notes)
        tmp.write_text(text)
        # dotcloud.yml's run-time settings for the slug (boot scripts read it; {} without one).
        service_json = args.app / ".dotcloud" / "service.json"
        service_tmp = service_json.with_name(f"service.json.tmp.{os.getpid()}")
        service_tmp.write_text(json.dumps(settings, indent=1, sort_keys=True) + "\n")
        os.replace(service_tmp, service_json)
    except OSError as exc:
        raise log.BuildError(f"Cannot write to the build directory {args.app}", str(exc)) from None
    os.replace(tmp, args.out)
    return plan


if __name__ == "__main__":
    log.main(_main)
