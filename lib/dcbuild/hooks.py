"""The app's own build steps: Heroku's hooks, dotcloud.yml's prebuild/postbuild, Django's collectstatic.

    python3 -m dcbuild.hooks pre APP [--env-dir DIR] [--cache-dir DIR]

(``post_key`` and ``post`` run inside dcbuild.slug's process.)

Order: dotCloud's build (prebuild, packages, postbuild) nested inside Heroku's (pre_compile, ...,
collectstatic, post_compile)::

    pre:   bin/pre_compile      cwd = the app, before the build plan reads runtime.txt and the
           prebuild             requirement files (so both may still change them); prebuild from
                                the approot, as on dotCloud, with the build image's PATH (the
                                slug has no Python yet)
    [the build: Python, packages, nginx, configs, approot links]
    post:  environment.json     written first (as dotCloud did before its build), so settings
                                that read ~/environment.json import: the config vars, dotCloud's
                                DOTCLOUD_* names (dcruntime.dotcloud); removed after the steps
                                (the web process writes it again at every start). postbuild
                                and collectstatic run with HOME = the app directory, as the
                                app's processes do, so ~/environment.json is that file
           postbuild            from the approot, the slug's Python first on PATH
           collectstatic        `python manage.py collectstatic --noinput` when a manage.py is
                                there and Django is importable; DISABLE_COLLECTSTATIC=1 skips it,
                                and so does a postinstall hook that runs it (as dotCloud's Django
                                tutorial did: it runs at every boot instead). A failure names
                                its cause (dcbuild.collectfail)
           bin/post_compile     cwd = the app, the slug's Python first on PATH

Every step gets the platform's config vars (ENV_DIR, one file per variable) exported, except
those that would break the build's own tools or make its shells run a value (``DENIED``), plus
BUILD_DIR, CACHE_DIR and ENV_DIR (as Heroku's hooks do). Output (stdout and stderr) is indented
by seven spaces, with secret values masked (dcbuild.configvars); a failure stops the build with
an error naming the step.

Hooks run on every build of a fresh directory (which is every build on a platform). For builds
repeated in the same directory, ``key`` names the state the steps would run on: the app's files
by content (``.dotcloud/``, ``.git/`` and ``__pycache__/`` left out; sizes and mtimes only decide
which files are hashed again), the config vars, the Python environment's key and this module.
``post`` records that state as it leaves it, so a repeated build of an unchanged app runs no
hook and ``make -q`` says there is nothing to do; any change to the app runs them all again.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import collectfail, configvars, log

# The buildpack's own make must not reach a hook that runs make (--no-builtin-rules, -q, ...).
_NOT_PASSED = frozenset({"PYTHONHOME", "PYTHONPATH", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES",
                         "MAKE_TERMOUT", "MAKE_TERMERR"})
STATE = ".dotcloud/state"
INDEX = f"{STATE}/tree-index.json"
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__"})
MANAGE_DEPTH = 3  # as Heroku: manage.py at most three levels down
_SELF = Path(__file__).resolve()


@dataclass
class Step:
    label: str  # how the log names it
    argv: list[str]
    cwd: Path


# --- what the app asks for ---------------------------------------------------------------


def _approot(service: dict | None) -> str:
    env = os.environ.get("APPROOT", "").strip().strip("/")
    if env:
        return env
    return str((service or {}).get("approot") or ".")


def _service_from_json(app: Path) -> dict | None:
    try:
        data = json.loads((app / ".dotcloud" / "service.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _service_from_yml(app: Path, cache: Path | None) -> dict | None:
    """Before the plan: dotcloud.yml itself (the plan writes service.json later)."""
    from . import dotcloud  # PyYAML and friends: only when the pre phase has to read the file

    service = dotcloud.load(app, cache, quiet=True)
    if service is None:
        return None
    env = os.environ.get("APPROOT", "").strip().strip("/")
    origin = "APPROOT" if env else f"dotcloud.yml:{service.line_of.get('approot', 1)}"
    approot = dotcloud.check_approot(app, env or service.approot, origin)
    return service.to_json(approot)


def _script(cwd: Path, path: Path, label: str) -> Step:
    """A script file: run directly if it has a shebang (made executable first, as Heroku does),
    else by bash, as a bash caller would run a file without one."""
    try:
        head = path.read_bytes()[:2]
    except OSError as exc:
        raise log.BuildError(f"Cannot read {label}", str(exc)) from None
    if head != b"#!":
        return Step(label, ["bash", str(path)], cwd)
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return Step(label, [str(path)], cwd)


def _dotcloud_hook(app: Path, service: dict | None, key: str) -> Step | None:
    command = (service or {}).get(key)
    if command is None or not str(command).strip():
        return None
    command = str(command).strip()
    approot = _approot(service)
    cwd = (app / approot).resolve()
    label = f"dotcloud.yml {key} ({command})"
    candidate = cwd / command
    if candidate.is_file() and app.resolve() in candidate.resolve().parents:
        return _script(cwd, candidate, label)
    return Step(label, ["/bin/sh", "-c", command], cwd)


def _heroku_hook(app: Path, name: str) -> Step | None:
    path = app / "bin" / name
    if not path.is_file():
        return None
    return _script(app, path, f"bin/{name}")


def find_manage(app: Path, approot: str) -> Path | None:
    """manage.py in the approot, else the shallowest one at most MANAGE_DEPTH levels down."""
    first = app / approot / "manage.py"
    if first.is_file():
        return first
    level = [app]
    for _ in range(MANAGE_DEPTH):
        found = sorted(d / "manage.py" for d in level if (d / "manage.py").is_file())
        if found:
            return found[0]
        level = sorted(
            sub for d in level for sub in _subdirs(d)
            if not (d == app and sub.name == ".dotcloud")
        )
    return None


def _subdirs(path: Path) -> Iterator[Path]:
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".") and entry.name not in SKIPPED_DIRS:
            yield Path(entry.path)


def pre_steps(app: Path, cache: Path | None) -> list[Step]:
    steps = [_heroku_hook(app, "pre_compile"), _dotcloud_hook(app, _service_from_yml(app, cache), "prebuild")]
    return [s for s in steps if s]


def has_hooks(app: Path) -> bool:
    """Is there anything for pre or post to run (cheap: no hashing)?"""
    service = _service_from_json(app)
    return bool(
        (app / "bin" / "pre_compile").is_file()
        or (app / "bin" / "post_compile").is_file()
        or (service and (service.get("prebuild") or service.get("postbuild")))
        or find_manage(app, _approot(service))
    )


# --- the environment ---------------------------------------------------------------------


def hook_env(app: Path, env_dir: Path | None, cache_dir: Path | None, slug_python: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _NOT_PASSED}
    for key, value in configvars.for_build(env_dir).items():
        env[key] = value.rstrip("\n")  # as the shell's $(cat FILE) gives it
    env["BUILD_DIR"] = str(app)
    env["CACHE_DIR"] = str(cache_dir or "")
    env["ENV_DIR"] = str(env_dir or "")
    env["PYTHONUNBUFFERED"] = "1"
    if slug_python:
        env["PATH"] = f"{app / '.dotcloud' / 'python' / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def config_flag(name: str, env_dir: Path | None) -> bool:
    """A config var (or build environment variable) set to anything but empty or 0."""
    value = configvars.read(env_dir).get(name, os.environ.get(name, "")).strip()
    return value not in ("", "0")


# --- running -----------------------------------------------------------------------------


def run(step: Step, env: dict[str, str], quiet_prefixes: tuple[str, ...] = ()) -> tuple[int, list[str]]:
    """Run a step with its output indented; the exit status and the output's lines. With
    ``quiet_prefixes``, lines starting with one of them, and blank lines, are not shown.
    Secret values of ``env`` (config vars named like secrets) are masked in what is shown
    and returned."""
    masked = configvars.secrets(env)
    try:
        proc = subprocess.Popen(step.argv, cwd=step.cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    except OSError as exc:
        raise log.BuildError(f"{step.label} could not be started", str(exc),
                             "Check that the file exists and its interpreter is installed.") from None
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = configvars.redact(line.rstrip("\n"), masked)
        lines.append(line)
        if not (quiet_prefixes and (not line.strip() or line.startswith(quiet_prefixes))):
            log.detail(line)
    return proc.wait(), lines


def _status(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"


def run_hook(step: Step, env: dict[str, str]) -> None:
    log.step(f"Running {step.label}")
    code, _ = run(step, env)
    if code != 0:
        raise log.BuildError(
            f"{step.label} failed ({_status(code)})",
            "Its output is above, indented.",
            f"Fix {step.label.split(' (')[0]} and deploy again.",
        )


def django_importable(app: Path, cwd: Path, env: dict[str, str]) -> bool:
    python = app / ".dotcloud" / "python" / "bin" / "python3"
    if not python.exists():
        return False
    probe = "import importlib.util, sys; sys.exit(not importlib.util.find_spec('django'))"
    res = subprocess.run([str(python), "-c", probe], cwd=cwd, env=env, capture_output=True)
    return res.returncode == 0


def postinstall_collects(app: Path, service: dict | None) -> str | None:
    """The postinstall hook's name when it runs collectstatic (dotCloud's Django tutorial's
    habit), else None. The hook is dotcloud.yml's ``postinstall`` (a file of the approot or a
    command), else the approot's ``postinstall`` file, as dcruntime.postinstall finds it."""
    cwd = app / _approot(service)
    value = (service or {}).get("postinstall")
    text = "" if value is None else str(value).strip()
    candidate = cwd / (text or "postinstall")
    if candidate.is_file():
        try:
            body = candidate.read_bytes()[:1 << 20].decode("utf-8", "replace")
        except OSError:
            return None
        label = f"postinstall ({candidate.relative_to(app)})"
    elif text:
        body, label = text, f"postinstall ({text})"
    else:
        return None
    return label if re.search(r"\bcollectstatic\b", body) else None


@contextlib.contextmanager
def environment_files(app: Path, service: dict | None, env_dir: Path | None) -> Iterator[None]:
    """environment.json, .yml and .yaml in the app directory while the post steps run: what the
    web process writes at start (dcruntime.dotcloud), from the build's config vars. An app's own
    file of the same name is put back afterwards."""
    from dcruntime import dotcloud as runtime

    config = {k: v.rstrip("\n") for k, v in configvars.for_build(env_dir).items()}
    env = runtime.environment(service or {}, config, app)
    paths = [app / name for name in runtime.ENV_FILES]
    odd = [p.name for p in paths if p.is_symlink() or (p.exists() and not p.is_file())]
    if odd:
        log.warn(f"{odd[0]} was not written for the build steps: the app's own is not a plain file")
        yield
        return
    saved = {p: (p.read_bytes(), p.stat().st_mode) for p in paths if p.is_file()}
    problem = runtime.write_env_files(app, env)
    if problem:
        log.warn(f"environment.json was not written for the build steps: {problem}")
    try:
        yield
    finally:
        for path in paths:
            if path in saved:
                path.write_bytes(saved[path][0])
                path.chmod(saved[path][1])
            else:
                path.unlink(missing_ok=True)


def collectstatic(app: Path, approot: str, env_dir: Path | None, env: dict[str, str],
                  service: dict | None = None) -> None:
    manage = find_manage(app, approot)
    if manage is None:
        return
    shown = manage.relative_to(app)
    if config_flag("DISABLE_COLLECTSTATIC", env_dir):
        log.step(f"Skipping collectstatic ({shown}): DISABLE_COLLECTSTATIC is set")
        return
    hook = postinstall_collects(app, service)
    if hook:
        log.step(f"Skipping collectstatic ({shown}): the {hook} hook runs it at every start, as on dotCloud")
        return
    if not django_importable(app, manage.parent, env):
        log.step(f"Skipping collectstatic: {shown} is there but Django is not installed")
        return
    command = "python manage.py collectstatic --noinput"
    where = manage.parent.relative_to(app)
    log.step(f"$ {command}" + (f"  (in {where}/)" if manage.parent != app else ""))
    python = str(app / ".dotcloud" / "python" / "bin" / "python3")
    step = Step("collectstatic", [python, "manage.py", "collectstatic", "--noinput"], manage.parent)
    code, lines = run(step, env, quiet_prefixes=("Copying '", "Post-processed '"))
    if code != 0:
        where_run = f"Command: {command}, in {'the app' if manage.parent == app else f'{where}/'}."
        diagnosis = collectfail.cause(lines, app)
        if diagnosis:
            raise log.BuildError(f"collectstatic failed ({_status(code)})", where_run, *diagnosis,
                                 "Django's output is above, indented.")
        cause = collectfail.exception(lines)
        raise log.BuildError(
            f"collectstatic failed ({_status(code)})",
            where_run,
            *([f"Cause: {cause}"] if cause else []),
            "Django's output is above, indented. Fix the static files settings (STATIC_ROOT, STATICFILES_DIRS)"
            " or the file the cause names,",
            "or skip this step: set the config var DISABLE_COLLECTSTATIC=1.",
        )


# --- the state key -----------------------------------------------------------------------


def _walk(app: Path) -> Iterator[tuple[str, os.stat_result]]:
    stack = [app]
    while stack:
        current = stack.pop()
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            rel = os.path.relpath(entry.path, app)
            if rel == ".dotcloud" or entry.name in SKIPPED_DIRS or entry.name.endswith(".pyc"):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(Path(entry.path))
            yield rel, st


def tree_digest(app: Path, write_index: bool = True) -> str:
    """The app's files by content. A file whose size, mtime and inode are those the index
    recorded is not read again."""
    index_path = app / INDEX
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    fresh: dict[str, list] = {}
    entries = []
    for rel, st in _walk(app):
        if stat.S_ISLNK(st.st_mode):
            entries.append(f"L {rel} {os.readlink(app / rel)}")
        elif stat.S_ISDIR(st.st_mode):
            entries.append(f"D {rel}")
        elif stat.S_ISREG(st.st_mode):
            sig = [st.st_size, st.st_mtime_ns, st.st_ino]
            known = index.get(rel)
            if known and known[:3] == sig:
                digest = known[3]
            else:
                try:
                    digest = hashlib.sha256((app / rel).read_bytes()).hexdigest()
                except OSError:
                    continue
            fresh[rel] = [*sig, digest]
            entries.append(f"F {rel} {digest} {'x' if st.st_mode & stat.S_IXUSR else '-'}")
    if write_index and fresh != index and (app / STATE).is_dir():
        tmp = index_path.with_name(f"{index_path.name}.tmp.{os.getpid()}")
        try:
            tmp.write_text(json.dumps(fresh, separators=(",", ":"), sort_keys=True))
            os.replace(tmp, index_path)
        except OSError:
            tmp.unlink(missing_ok=True)
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()


def _key(app: Path, env_dir: Path | None, *extra: str) -> str:
    h = hashlib.sha256()
    h.update(tree_digest(app).encode())
    for name, value in sorted(configvars.read(env_dir).items()):
        h.update(f"\0{name}={value}".encode())
    # Not APPROOT: make exports the plan's value to recipes but not to $(shell) (make < 4.4).
    h.update(f"\0DISABLE_COLLECTSTATIC={os.environ.get('DISABLE_COLLECTSTATIC', '')}".encode())
    h.update(_SELF.read_bytes())
    for value in extra:
        h.update(f"\0{value}".encode())
    return h.hexdigest()[:16]


def post_key(app: Path, env_dir: Path | None) -> str:
    """The app's state for the post steps (``none``: nothing to run). The stamp's name adds the
    Python environment's key (``stamp_name``): the Makefile has it, this process need not."""
    return _key(app, env_dir, "post") if has_hooks(app) else "none"


def stamp_name(key: str, python_key: str) -> str:
    return "hooks-none" if key == "none" else f"hooks-{key}-{python_key}"


def pre_key(app: Path, env_dir: Path | None) -> str:
    return _key(app, env_dir, "pre")


def _record(app: Path, env_dir: Path | None, python_key: str) -> None:
    """Stamps for the state the build leaves, so an unchanged app runs no hook next time."""
    state = app / STATE
    state.mkdir(parents=True, exist_ok=True)
    names = {stamp_name(post_key(app, env_dir), python_key)}
    if names != {"hooks-none"}:
        names.add(f"prehooks-{pre_key(app, env_dir)}")
    for old in state.glob("*hooks-*"):
        if old.name not in names:
            old.unlink(missing_ok=True)
    for name in names:
        (state / name).touch()


# --- entry points ------------------------------------------------------------------------


def pre(app: Path, env_dir: Path | None, cache_dir: Path | None) -> None:
    steps = pre_steps(app, cache_dir / "python-dotcloud" if cache_dir else None)
    if not steps:
        return
    if (app / STATE).is_dir() and (app / STATE / f"prehooks-{pre_key(app, env_dir)}").exists():
        return  # the make invocation that follows says so
    env = hook_env(app, env_dir, cache_dir, slug_python=False)
    for step in steps:
        run_hook(step, env)


def post(app: Path, env_dir: Path | None, cache_dir: Path | None, python_key: str) -> None:
    service = _service_from_json(app)
    env = hook_env(app, env_dir, cache_dir, slug_python=True)
    # dotCloud's steps see HOME as the app's processes will (the app directory), so that
    # ~/environment.json is the file just written.
    dc_env = {**env, "HOME": str(app)}
    with environment_files(app, service, env_dir):
        postbuild = _dotcloud_hook(app, service, "postbuild")
        if postbuild:
            run_hook(postbuild, dc_env)
        collectstatic(app, _approot(service), env_dir, dc_env, service)
        post_compile = _heroku_hook(app, "post_compile")
        if post_compile:
            run_hook(post_compile, env)
    _record(app, env_dir, python_key)


def _path(value: str | None) -> Path | None:
    return Path(value).resolve() if value else None


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dcbuild.hooks")
    parser.add_argument("phase", choices=("pre",))
    parser.add_argument("app", type=Path)
    parser.add_argument("--env-dir", default="")
    parser.add_argument("--cache-dir", default="")
    args = parser.parse_args(argv)
    pre(args.app.resolve(), _path(args.env_dir), _path(args.cache_dir))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    log.main(_main)
