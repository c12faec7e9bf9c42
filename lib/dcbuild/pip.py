"""Install a requirements file into a Python runtime tree with that runtime's own pip.

The host's pip configuration is not honoured (``/etc/pip.conf``, ``PIP_FIND_LINKS``, a
constraints file): a platform's build machine has none, and a build must not depend on the
machine it happens to run on. Only the index settings below pass through, from the
environment or the platform's ENV_DIR (config vars), as Heroku's buildpack does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from . import log, reqs

PASSED_THROUGH = (
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
    "PIP_CERT",
    "PIP_DEFAULT_TIMEOUT",
    "PIP_RETRIES",
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# In each dependency layer's directory: the wheelhouse files installed in it (for pruning).
USED = "wheels-used.txt"


def read_env_dir(env_dir: Path | None) -> dict[str, str]:
    """The platform's config vars: one file per variable, its content the value (never eval'd)."""
    out: dict[str, str] = {}
    if env_dir and env_dir.is_dir():
        for path in sorted(env_dir.iterdir()):
            if path.is_file() and _NAME.fullmatch(path.name):
                try:
                    out[path.name] = path.read_text(encoding="utf-8", errors="replace")
                except OSError:
                    continue
    return out


def clean_env(cache: Path | None, env_dir: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    config = read_env_dir(env_dir)
    for key in PASSED_THROUGH:
        value = config.get(key, os.environ.get(key))
        if value:
            env[key] = value.strip()
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        PIP_PROGRESS_BAR="off",
        PIP_ROOT_USER_ACTION="ignore",
        PIP_NO_WARN_SCRIPT_LOCATION="1",
        PYTHONUNBUFFERED="1",
    )
    if cache is not None:
        env["PIP_CACHE_DIR"] = str(cache)
    else:
        env["PIP_NO_CACHE_DIR"] = "1"
    return env


_CULPRITS = (
    re.compile(r"No matching distribution found for (\S+)"),
    re.compile(r"Could not find a version that satisfies the requirement (\S+)"),
    re.compile(r"Invalid requirement: '?([^'\n]+)'?"),
    re.compile(r"Failed to build installable wheels for some pyproject.toml based projects \(?([^)\n]+)\)?"),
    re.compile(r"Failed building wheel for (\S+)"),
    re.compile(r"Cannot install (.+?) because these package versions have conflicting dependencies"),
    re.compile(r"Could not open requirements file: (.+)"),
)


def culprit(output: str) -> str | None:
    """The requirement pip failed on, from pip's own output."""
    for pattern in _CULPRITS:
        m = pattern.search(output)
        if m:
            return m.group(1).strip()
    collecting = re.findall(r"^\s*Collecting (\S+)", output, re.M)
    return collecting[-1] if collecting else None


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def where(requirement: str, files: list[Path], base: Path) -> str | None:
    """``file:line`` of the first line in the requirement files that names the same project."""
    m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    if not m:
        return None
    wanted = _normal(m.group(0))
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()
        except OSError:
            continue
        for number, line in enumerate(lines, 1):
            n = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
            if n and _normal(n.group(1)) == wanted:
                try:
                    name = path.resolve().relative_to(base.resolve())
                except ValueError:
                    name = path
                return f"{name}:{number}"
    return None


_NOT_NAMED = re.compile(r"^\s*(-e\b|--editable|\.|/|~|[a-z+]+://|git\+|--index-url|-i\b|--extra-index-url)", re.I)


def wheelhouse_applies(files: list[Path]) -> bool:
    """Only plain named requirements go through the wheel cache; editables, paths and URLs don't."""
    for path in files:
        for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():
            if _NOT_NAMED.match(line) or " @ " in line.split("#", 1)[0]:
                return False
    return True


def _stream(cmd: list[str], cwd: Path, env: dict[str, str], show: bool = True) -> tuple[int, str]:
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace")
    captured = []
    assert proc.stdout is not None
    for line in proc.stdout:
        captured.append(line)
        if show and not line.startswith("Requirement already satisfied"):
            sys.stdout.write(log.INDENT + line.rstrip("\n") + "\n")
            sys.stdout.flush()
    return proc.wait(), "".join(captured)


def _fail(output: str, requirement: str, cwd: Path, label: str) -> log.BuildError:
    what = culprit(output)
    if what:
        try:
            place = where(what, reqs.collect(cwd / requirement), cwd)
        except log.BuildError:
            place = None
        what += f" ({place})" if place else ""
    return log.BuildError(
        f"pip could not install the packages in {label}",
        f"Failed requirement: {what}" if what else "pip's own message is above.",
        f"Fix {label} and deploy again.",
    )


def _wheel_key(filename: str) -> tuple[str, str]:
    """(project, version) of a wheel's file name or a ``.dist-info`` directory's stem."""
    name, version = filename.split("-")[:2]
    return _normal(name), version.lower()


def _requirement_names(files: list[Path]) -> set[str]:
    names = set()
    for path in files:
        for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():
            m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
            if m:
                names.add(_normal(m.group(1)))
    return names


def _missing(pip: list[str], requirement: str, cwd: Path, env: dict[str, str], wheelhouse: Path,
             label: str) -> list[str]:
    """Resolve against the index (metadata only) and list the ``name==version`` not in the wheelhouse."""
    report = wheelhouse.with_name(f"report.json.tmp.{os.getpid()}")  # *.tmp.*: a killed build's is removed
    try:
        status, output = _stream([*pip, "install", "--dry-run", "--ignore-installed", "--quiet", "--report",
                                  str(report), "--find-links", str(wheelhouse), "-r", requirement], cwd, env,
                                 show=False)
        if status != 0:
            sys.stdout.write("".join(log.INDENT + line + "\n" for line in output.splitlines()))
            raise _fail(output, requirement, cwd, label)
        items = json.loads(report.read_text()).get("install", [])
    finally:
        report.unlink(missing_ok=True)
    have = {w.name for w in wheelhouse.glob("*.whl")}
    built = {_wheel_key(name) for name in have}
    out = []
    for item in items:
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        filename = item["download_info"]["url"].rsplit("/", 1)[-1]
        if filename in have or (not filename.endswith(".whl") and (_normal(name), version.lower()) in built):
            continue
        out.append(f"{name}=={version}")
    return out


def _via_wheelhouse(pip: list[str], requirement: str, cwd: Path, env: dict[str, str], wheelhouse: Path,
                    label: str) -> None:
    """Install from the wheelhouse, adding to it first only what it lacks."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    offline = [*pip, "install", "--no-warn-script-location", "--no-index", "--find-links", str(wheelhouse),
               "-r", requirement]
    known = {_wheel_key(w.name)[0] for w in wheelhouse.glob("*.whl")}
    wanted: list[str] = ["-r", requirement]
    if known & _requirement_names(reqs.collect(cwd / requirement)):
        status, output = _stream(offline, cwd, env, show=False)
        if status == 0:
            log.detail("All packages came from the wheel cache")
            for line in output.splitlines():
                if line.startswith("Successfully installed"):
                    log.detail(line)
            return
        missing = _missing(pip, requirement, cwd, env, wheelhouse, label)
        log.detail(f"Not in the wheel cache: {', '.join(missing) or 'nothing (rebuilding it)'}")
        if missing:
            wanted = ["--no-deps", *missing]
    # Wheels land in a private directory first and are renamed in one by one, so a killed
    # build never leaves a half-written wheel in the cache.
    fresh = wheelhouse.with_name(f"{wheelhouse.name}.tmp.{os.getpid()}")
    shutil.rmtree(fresh, ignore_errors=True)
    try:
        status, output = _stream([*pip, "wheel", "--wheel-dir", str(fresh), "--find-links", str(wheelhouse),
                                  *wanted], cwd, env)
        if status != 0:
            raise _fail(output, requirement, cwd, label)
        for wheel in fresh.glob("*.whl"):
            os.replace(wheel, wheelhouse / wheel.name)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    status, output = _stream(offline, cwd, env)
    if status != 0:
        raise _fail(output, requirement, cwd, label)


def record_wheels(root: Path, wheelhouse: Path) -> None:
    """Name, in ``root``'s layer directory, the wheelhouse files installed in ``root``.

    The cache's pruning keeps only the wheels some kept layer names (dcbuild.cache).
    """
    installed = {_wheel_key(info.name[: -len(".dist-info")])
                 for info in root.glob("lib/python3*/site-packages/*.dist-info")}
    used = sorted(w.name for w in wheelhouse.glob("*.whl") if _wheel_key(w.name) in installed)
    out = root.parent / USED
    tmp = out.with_name(f"{USED}.tmp.{os.getpid()}")
    tmp.write_text("".join(f"{name}\n" for name in used))
    os.replace(tmp, out)


def _installed(root: Path) -> set[str]:
    infos = root.glob("lib/python3*/site-packages/*.dist-info")
    return {_wheel_key(info.name[: -len(".dist-info")])[0] for info in infos}


def _remove_extras(pip: list[str], requirement: str, cwd: Path, env: dict[str, str], wheelhouse: Path | None,
                   root: Path, keep_from: Path, label: str) -> None:
    """Uninstall what the previous environment had and this one no longer needs.

    What is needed: the resolution of the requirements (pip's report, ignoring what is
    installed; offline when the wheel cache serves them) plus everything of the dcreqs layer.
    """
    report = root.parent / f"report.json.tmp.{os.getpid()}"
    cmd = [*pip, "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report), "-r", requirement]
    if wheelhouse is not None:
        cmd += ["--no-index", "--find-links", str(wheelhouse)]
    try:
        status, output = _stream(cmd, cwd, env, show=False)
        if status != 0:
            raise _fail(output, requirement, cwd, label)
        items = json.loads(report.read_text()).get("install", [])
    finally:
        report.unlink(missing_ok=True)
    keep = {_normal(i["metadata"]["name"]) for i in items} | _installed(keep_from) | {"pip", "setuptools", "wheel"}
    extras = sorted(_installed(root) - keep)
    if not extras:
        return
    log.detail(f"Removing packages no longer required: {', '.join(extras)}")
    status, output = _stream([*pip, "uninstall", "--yes", "--quiet", *extras], cwd, env, show=False)
    if status != 0:
        sys.stdout.write("".join(log.INDENT + line + "\n" for line in output.splitlines()))
        raise log.BuildError("pip could not remove packages that are no longer required", ", ".join(extras))


def install(root: Path, requirement: str, cwd: Path, cache: Path | None, env_dir: Path | None, label: str,
            wheelhouse: Path | None = None, keep_from: Path | None = None) -> None:
    """``pip install -r requirement`` into the runtime at ``root``; output indented.

    ``keep_from``: ``root`` started as a copy of the previous environment (so only what changed
    is installed); afterwards, packages that neither the requirements nor the dcreqs layer at
    ``keep_from`` need are removed, as if the environment had been built from scratch.

    With a wheelhouse (a directory of wheels kept in the cache), packages that are already
    there are neither downloaded nor built again: first an offline install from it is tried;
    if something is missing, ``pip wheel`` adds just that, and the install runs from it.
    The registry here sends no cache headers, so pip's own HTTP cache would store nothing.
    """
    from . import relocate

    env = clean_env(cache, env_dir)
    pip = [str(root / "bin" / "python3"), "-I", "-m", "pip"]
    install_cmd = [*pip, "install", "--no-warn-script-location", "-r", requirement]
    relocate.bind(root)
    via = wheelhouse
    if via is not None and not wheelhouse_applies(reqs.collect(cwd / requirement)):
        log.detail("Editable, path or URL requirements: installing without the wheel cache")
        via = None
    if via is None:
        status, output = _stream(install_cmd, cwd, env)
        if status != 0:
            raise _fail(output, requirement, cwd, label)
    else:
        _via_wheelhouse(pip, requirement, cwd, env, via, label)
    if keep_from is not None:
        _remove_extras(pip, requirement, cwd, env, via, root, keep_from, label)
    if wheelhouse is not None and wheelhouse.is_dir():
        record_wheels(root, wheelhouse)
    relocate.make_scripts_relocatable(root)
    relocate.unbind(root)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dcbuild.pip")
    parser.add_argument("root", type=Path, help="the runtime tree (has bin/python3)")
    parser.add_argument("requirement", help="requirements file, as pip should name it")
    parser.add_argument("--cwd", type=Path, default=Path.cwd())
    parser.add_argument("--cache", type=Path, default=None, help="pip's cache directory")
    parser.add_argument("--env-dir", type=Path, default=None)
    parser.add_argument("--label", default=None, help="how the log names the file")
    parser.add_argument("--wheelhouse", type=Path, default=None, help="a directory of wheels kept between builds")
    parser.add_argument("--keep-from", type=Path, default=None,
                        help="ROOT is a copy of the previous environment: remove what neither the requirements"
                             " nor this (dcreqs) runtime tree need")
    args = parser.parse_args(argv)
    install(args.root, args.requirement, args.cwd, args.cache, args.env_dir, args.label or args.requirement,
            args.wheelhouse, args.keep_from)
    return 0


if __name__ == "__main__":
    log.main(_main)
