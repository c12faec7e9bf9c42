"""The slug's own steps, run in one process, and the keys that name them.

    python3 -m dcbuild.slug prepare APP [plan options] --out PLAN_MK --keys KEYS_MK [--stack S] [--precopy]
    python3 -S -m dcbuild.slug stop-precopy STATE_DIR
    python3 -S -m dcbuild.slug run APP --step NAME=STAMP ... [values the steps need]
    python3 -m dcbuild.slug bytecode LAYER --python PYTHON

Every build in a fresh directory (every build on a platform) makes these steps again, even
when all of the layers come from the cache: ``checks`` (the app's config snippets, see
dcbuild.checks), ``python`` (the environment into the slug, hard-linked from its layer),
``profile`` (the ``.profile.d`` scripts), ``configs`` (runtime scripts, templates and the
precompiled dcruntime package), ``approot`` (dotCloud's links) and ``hooks`` (postbuild,
collectstatic, bin/post_compile); ``python``, the only slow one (a few thousand hard links),
runs in the background beside profile, configs and approot. Each has a stamp in ``.dotcloud/state`` named after the hash
of what it reads, so a repeated build in the same directory redoes only the steps whose inputs
changed, and a warm ``make -q compile`` has nothing to do. The Makefile lists the stamps as one
grouped target: make decides whether any is missing, and this module then runs the missing ones,
in order, in one Python process (each step's own process start and imports cost more than the
step itself).

``prepare`` runs at make's parse time: the build plan (dcbuild.plan), then the steps' keys into
``KEYS_MK`` (and the migration report's, REPORT_KEY: a report the cache has for it is shown
here, see dcbuild.migrate.show_cached), in the same process; with ``--precopy`` (bin/compile) it then starts the
environment's copy into the slug in the background when its layer is cached and the copy is due,
so that make's remaining work (nginx, this module's own start for ``run``) overlaps it, and
``run`` adopts it (the copy of a 20-package environment is most of a warm build's time).
``bytecode`` makes the cache layer that holds the dcruntime package with its bytecode, compiled
once per dcruntime source and Python version (boot-time code: a dyno would compile it at every
start otherwise).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import log

BUILDPACK = Path(__file__).resolve().parents[2]
# Bump when the way layers are made changes, so that old cache entries are not reused.
LAYER_FORMAT = 2
# In the order they run; the environment's copy (python) starts right after the checks.
STEPS = ("checks", "profile", "configs", "approot", "python", "hooks")


def web_files() -> list[str]:
    """What the configs step installs from the buildpack (dcbuild.web.FILES; the nginx layer's
    files are in the key through the nginx stamp), plus the code that installs them."""
    from . import web

    return [src for src, _dest, _mode in web.FILES if not src.startswith("nginx:")] + [
        "lib/dcbuild/web.py", "lib/dcbuild/slug.py"]


def digest(*parts: bytes | str, size: int = 12) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:size]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b"\0missing"


def dcruntime_hash(bp: Path = BUILDPACK) -> str:
    """The dcruntime sources (names and contents): the bytecode layer's key."""
    files = sorted((bp / "lib" / "dcruntime").glob("*.py"))
    return digest(*(part for f in files for part in (f.name, _read(f))))


# --- parse time ---------------------------------------------------------------------------


def keys(app: Path, env_dir: Path | None, bp: Path = BUILDPACK) -> dict[str, str]:
    """The steps' keys, for KEYS_MK (after the plan wrote .dotcloud/service.json)."""
    import json

    from . import checks

    service_json = _read(app / ".dotcloud" / "service.json")
    try:
        service = json.loads(service_json)
    except ValueError:
        service = {}
    approot = str(service.get("approot") or ".") if isinstance(service, dict) else "."
    runtime = dcruntime_hash(bp)
    slug_py = _read(bp / "lib" / "dcbuild" / "slug.py")
    return {
        "DCRUNTIME_HASH": runtime,
        "PROFILE_KEY": digest(_read(bp / "config" / "profile.sh"), _read(bp / "lib" / "dcbuild" / "envfile.py"),
                              service_json, slug_py),
        # service.json: the default Procfile has a line per worker service (dcbuild.web).
        "CONFIGS_KEY": digest(runtime, service_json, *(_read(bp / name) for name in web_files())),
        "APPROOT_KEY": digest(approot, _read(bp / "bin" / "dcapproot.sh"), _read(bp / "lib" / "dcbuild" / "web.py"),
                              slug_py),
        "CHECKS_KEY": checks.key(app, approot, env_dir, runtime, bp),
        "HOOKS_TREE": hooks_tree(app, env_dir),
    }


def hooks_tree(app: Path, env_dir: Path | None) -> str:
    """dcbuild.hooks' key, except where no hooks ran yet: a fresh build directory (every platform
    build) runs them whatever the key, so the app's files are hashed once, by the hooks' record,
    not twice."""
    from . import hooks

    if not hooks.has_hooks(app):
        return "none"
    if not any((app / hooks.STATE).glob("hooks-*")):
        return "new"
    return hooks.post_key(app, env_dir)


def _option(argv: list[str], name: str) -> Path | None:
    at = argv.index(name) if name in argv else len(argv)
    return Path(argv[at + 1]) if at + 1 < len(argv) and argv[at + 1] else None


def layer_keys(plan: dict[str, str], platform: str, stack: str, bp: Path = BUILDPACK) -> dict[str, str]:
    """The dependency layers' keys: PY_KEY (the runtime), DC_KEY (+ the stack, the layer format,
    the installer and its version: a layer uv made is never reused by a pip build, and back;
    config/dcrequirements.txt, exact pins whatever the index), USER_KEY (+ USER_HASH: the app's
    requirements, local packages and package index settings; or ``none``)."""
    py_key = f"{plan['PY_VERSION']}-{platform}"
    dcreqs = hashlib.sha256(_read(bp / "config" / "dcrequirements.txt")).hexdigest()[:12]
    installer = plan["INSTALLER"]
    installer_id = installer
    if installer == "uv":
        from . import tools

        installer_id = f"uv {tools.version('uv')}"
        installer = f"uv{tools.version('uv')}"
    dc_key = f"{py_key}{'-' + stack if stack else ''}-f{LAYER_FORMAT}-{installer}-{dcreqs}"
    user_key = f"{dc_key}-{plan['USER_HASH'] if plan['USER_REQS'] else 'none'}"
    return {"PY_KEY": py_key, "DCREQS_HASH": dcreqs, "DC_KEY": dc_key, "USER_KEY": user_key,
            "INSTALLER_ID": installer_id}


def _take(argv: list[str], name: str, has_value: bool = True) -> tuple[list[str], str | None]:
    """argv without option ``name`` (and its value), and the value ("" for a flag; None: absent)."""
    if name not in argv:
        return argv, None
    at = argv.index(name)
    if not has_value:
        return argv[:at] + argv[at + 1 :], ""
    if at + 1 >= len(argv):
        raise log.BuildError(f"dcbuild.slug prepare: {name} needs a value")
    return argv[:at] + argv[at + 2 :], argv[at + 1]


def prepare(argv: list[str]) -> int:
    """dcbuild.plan's command line (with ``--platform``) plus ``--keys FILE``, ``--stack STACK``
    and ``--precopy`` (start the environment's copy when it is due: see ``precopy``)."""
    from . import manifest, migrate, plan

    argv, out = _take(argv, "--keys")
    argv, stack = _take(argv, "--stack")
    plan_argv, early = _take(argv, "--precopy", has_value=False)
    if out is None or not plan_argv:
        raise log.BuildError("usage: python3 -m dcbuild.slug prepare APP [plan options] --keys KEYS_MK")
    values = plan.run(plan_argv)
    app = Path(plan_argv[0])
    platform = str(_option(plan_argv, "--platform") or manifest.current_platform())
    layers = layer_keys(values, platform, stack or "")
    env_dir = _option(plan_argv, "--env-dir")
    report_key = migrate.key(app, values["PY_VERSION"], values["USER_REQS"], env_dir)
    found = {**layers, **keys(app, env_dir), "REPORT_KEY": report_key}
    keys_out = Path(out)
    tmp = keys_out.with_name(f"{keys_out.name}.tmp.{os.getpid()}")
    tmp.write_text("".join(f"{name} := {value}\n" for name, value in found.items()))
    os.replace(tmp, keys_out)
    cache = _option(plan_argv, "--cache")
    # The migration report, when the cache has it for this key: shown here, in this process (a
    # warm redeploy starts none for it); else make's report step makes it with the target Python.
    report_stamp = app / ".dotcloud" / "state" / f"report-{report_key}"
    printed = app / ".dotcloud" / "state" / REPORT_PRINTED
    printed.unlink(missing_ok=True)
    if cache is not None and not report_stamp.exists():
        migrate.show_cached(app, cache, report_key, env_dir, report_stamp, printed)
    if early is not None and cache is not None:
        kind = f"userreqs-{layers['USER_KEY']}" if values["USER_REQS"] else f"dcreqs-{layers['DC_KEY']}"
        layer = cache / "layers" / kind
        state = app / ".dotcloud" / "state"
        if (layer / "python").is_dir() and not (state / f"python-{layers['USER_KEY']}").exists():
            precopy(layer / "python", app / ".dotcloud" / "python", state)
    return 0


# --- the steps ----------------------------------------------------------------------------

# In the state directory: the cached migration report's lines for make to print (Makefile).
REPORT_PRINTED = "report.printed"


# In the state directory: the copy ``precopy`` started ("PID\nSRC\nDEST\n", written as it
# starts), and its exit status, written by the copy's shell as it ends (bin/compile reads both).
PRECOPY = "precopy"
PRECOPY_STATUS = "precopy.status"
# rm, then the links (see TreeCopy), then the status: published by rename, so never half-written.
_PRECOPY_SH = 'rm -rf "$2" && (umask 022 && cp -RPl "$1" "$2"); echo $? > "$3.tmp" && mv -f "$3.tmp" "$3"'


def precopy(src: Path, dest: Path, state: Path) -> None:
    """Start copying SRC to DEST in its own session, recorded in STATE, and return."""
    state.mkdir(parents=True, exist_ok=True)
    (state / PRECOPY_STATUS).unlink(missing_ok=True)
    proc = subprocess.Popen(["sh", "-c", _PRECOPY_SH, "precopy", str(src), str(dest), str(state / PRECOPY_STATUS)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    (state / PRECOPY).write_text(f"{proc.pid}\n{src}\n{dest}\n")


def _read_precopy(state: Path) -> tuple[int, str, str] | None:
    try:
        pid, src, dest = (state / PRECOPY).read_text().split("\n")[:3]
        return int(pid), src, dest
    except (OSError, ValueError):
        return None


def _stop_precopy(pid: int, state: Path) -> None:
    """Stop the copy if it still runs (no status yet: the pid is still the copy's), and forget it."""
    status = state / PRECOPY_STATUS
    if not status.exists():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    status.unlink(missing_ok=True)
    (state / PRECOPY).unlink(missing_ok=True)


def stop_precopy(argv: list[str]) -> int:
    """``stop-precopy STATE``: bin/compile, as it exits, stops a copy that ``run`` did not adopt
    (the build ended before) and removes what it made."""
    if len(argv) != 1:
        raise log.BuildError("usage: python3 -m dcbuild.slug stop-precopy STATE_DIR")
    state = Path(argv[0])
    found = _read_precopy(state)
    if found is not None:
        _stop_precopy(found[0], state)
        shutil.rmtree(found[2], ignore_errors=True)
    return 0


def _alive(pid: int) -> bool:
    """Running, and not a zombie (its parent, ``precopy``, is gone: a container's init may never
    reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


class TreeCopy:
    """The environment's copy into the slug, made by ``precopy`` in the background (hard links
    where the filesystem allows, see the Makefile's copy_tree for why ``-RPl``; the other steps
    overlap it): the copy make started at parse time when it is of this tree, else a new one."""

    def __init__(self, src: Path, dest: Path, state: Path) -> None:
        self.src, self.dest, self.state = src, dest, state
        found = _read_precopy(state)
        if found is not None and [os.path.realpath(p) for p in found[1:]] != [os.path.realpath(p) for p in (src, dest)]:
            _stop_precopy(found[0], state)  # a copy of something else (cannot happen from the Makefile)
            found = None
        if found is None:
            precopy(src, dest, state)
            found = _read_precopy(state)
        self.pid: int | None = found[0] if found else None

    def _status(self) -> int:
        """The copy's exit status (its record removed); 1 if it is gone without one."""
        status = self.state / PRECOPY_STATUS
        while self.pid is not None and not status.exists() and _alive(self.pid):
            time.sleep(0.005)
        try:
            code = int(status.read_text().strip() or 1)
        except (OSError, ValueError):
            code = 1
        status.unlink(missing_ok=True)
        (self.state / PRECOPY).unlink(missing_ok=True)
        return code

    def wait(self) -> None:
        if self.pid is None:
            return
        status, self.pid = self._status(), None
        if status == 0:
            return
        shutil.rmtree(self.dest, ignore_errors=True)
        res = subprocess.run(["cp", "-a", "--reflink=auto", str(self.src), str(self.dest)], capture_output=True,
                             text=True)
        if res.returncode != 0:
            raise log.BuildError(f"Cannot copy {self.src} into the slug", res.stderr.strip())

    def cancel(self) -> None:
        """A step before the copy's own failed: the copy is stopped, and what it made removed."""
        if self.pid is None:
            return
        _stop_precopy(self.pid, self.state)
        self.pid = None
        shutil.rmtree(self.dest, ignore_errors=True)


def _stamp(stamp: Path) -> None:
    """This step's stamp, and none of its kind for other keys."""
    kind = stamp.name.split("-", 1)[0] + "-"
    for old in stamp.parent.glob(kind + "*"):
        if old != stamp:
            old.unlink(missing_ok=True)
    stamp.touch()


def step_checks(app: Path, opts: dict[str, str], stamp: Path) -> None:
    from . import checks

    checks.run_cached(app, Path(opts["cache"]), stamp.name.removeprefix("checks-"), _env_dir(opts), BUILDPACK)


def step_python(app: Path, opts: dict[str, str], stamp: Path, copy: TreeCopy) -> None:
    """The environment's copy (started first, see ``run``) finished, then the cache's record."""
    from . import cache

    copy.wait()
    now = {field: opts.get(field, "") for field in cache.FIELDS}
    cache.record(Path(opts["cache"]), now, [Path(p) for p in opts["used"].split("\n") if p])


def step_profile(app: Path, opts: dict[str, str], stamp: Path) -> None:
    from . import envfile

    profile_d = app / ".profile.d"
    profile_d.mkdir(parents=True, exist_ok=True)
    shutil.copy(BUILDPACK / "config" / "profile.sh", profile_d / "python-dotcloud.sh")
    envfile.write(app)


def step_configs(app: Path, opts: dict[str, str], stamp: Path) -> None:
    from . import web

    web.install_configs(app, BUILDPACK, runtime_lib=Path(opts["runtime_lib"]))


def step_approot(app: Path, opts: dict[str, str], stamp: Path) -> None:
    from . import web

    web.link_approot(app, BUILDPACK)


def step_hooks(app: Path, opts: dict[str, str], stamp: Path) -> None:
    from . import hooks

    cache_dir = Path(opts["cache_dir"]).resolve() if opts.get("cache_dir") else None
    hooks.post(app, _env_dir(opts), cache_dir, opts["python_key"])


def _env_dir(opts: dict[str, str]) -> Path | None:
    return Path(opts["env_dir"]).resolve() if opts.get("env_dir") else None


RUNNERS = {
    "checks": step_checks,
    "profile": step_profile,
    "configs": step_configs,
    "approot": step_approot,
    "hooks": step_hooks,
}


def run(argv: list[str]) -> int:
    """``run APP --step NAME=STAMP ... --OPTION VALUE ...``: the missing steps, in STEPS order.
    The environment's copy (``python``) starts after the checks and runs beside the steps that
    do not need it; it is finished (and its stamp written) in its turn, before the hooks."""
    if not argv:
        raise log.BuildError("usage: python3 -m dcbuild.slug run APP --step NAME=STAMP ...")
    app = Path(argv[0]).resolve()
    stamps: dict[str, Path] = {}
    opts: dict[str, str] = {}
    rest = argv[1:]
    for flag, value in zip(rest[::2], rest[1::2]):
        if flag == "--step":
            name, _, stamp = value.partition("=")
            stamps[name] = Path(stamp)
        elif flag == "--used":
            opts["used"] = opts.get("used", "") + value + "\n"
        else:
            opts[flag.removeprefix("--").replace("-", "_")] = value
    unknown = set(stamps) - set(STEPS)
    if unknown or len(rest) % 2:
        raise log.BuildError(f"dcbuild.slug run: unknown steps {sorted(unknown)} or an option without a value")
    todo = [name for name in STEPS if name in stamps and not stamps[name].exists()]
    if todo:
        stamps[todo[0]].parent.mkdir(parents=True, exist_ok=True)
    copy = None
    try:
        for name in todo:
            if name != "checks" and "python" in todo and copy is None:
                log.step(opts["python_message"])
                copy = TreeCopy(Path(opts["layer"]) / "python", app / ".dotcloud" / "python",
                                state=stamps["python"].parent)
            if name == "python":
                assert copy is not None
                step_python(app, opts, stamps[name], copy)
            else:
                RUNNERS[name](app, opts, stamps[name])
            if name != "hooks":  # the hooks record the state they leave themselves
                _stamp(stamps[name])
    finally:
        if copy is not None:
            copy.cancel()  # a step before it failed: the copy is not needed any more
    sys.stdout.flush()
    return 0


# --- the bytecode layer ---------------------------------------------------------------------


def bytecode(argv: list[str]) -> int:
    """``bytecode LAYER --python PYTHON``: dcruntime and its bytecode (checked-hash: valid
    whatever the files' mtimes), published by rename."""
    if len(argv) != 3 or argv[1] != "--python":
        raise log.BuildError("usage: python3 -m dcbuild.slug bytecode LAYER --python PYTHON")
    layer, python = Path(argv[0]), argv[2]
    tmp = layer.with_name(f"{layer.name}.tmp.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(BUILDPACK / "lib" / "dcruntime", tmp / "dcruntime",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    res = subprocess.run([python, "-I", "-m", "compileall", "-q", "--invalidation-mode", "checked-hash", str(tmp)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise log.BuildError("Cannot compile the buildpack's dcruntime package", (res.stdout + res.stderr).strip())
    try:
        os.rename(tmp, layer)
    except OSError:  # made meanwhile by another build (or a leftover): keep that one
        shutil.rmtree(tmp, ignore_errors=True)
        if not layer.is_dir():
            raise
    return 0


def _main(argv: list[str]) -> int:
    # The Makefile runs this with bytecode written to the cache (-X pycache_prefix); what it
    # starts (hooks, the slug's Python) gets the buildpack's usual setting back.
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    commands = {"prepare": prepare, "stop-precopy": stop_precopy, "run": run, "bytecode": bytecode}
    if not argv or argv[0] not in commands:
        raise log.BuildError("usage: python3 -m dcbuild.slug prepare|stop-precopy|run|bytecode ...")
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    log.main(_main)
