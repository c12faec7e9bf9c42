"""Install a requirements file into a Python runtime tree: with the pinned uv (the default), or
with that runtime's own pip (``DC_INSTALLER=pip``, from the environment or a config var).

uv installs into the runtime's own site-packages (``uv pip install --python <runtime>``, no
venv), keeps its cache in CACHE_DIR, and picks, like pip, the highest version that fits among
all the indexes given (``unsafe-best-match``). Both engines print indented output and name
the requirement that failed as ``file:line``.

The host's pip (and uv) configuration is not honoured (``/etc/pip.conf``, ``PIP_FIND_LINKS``, a
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

from . import configvars, diagnose, diskfull, log, reqs
from .cache import USED, tree_size

INSTALLERS = ("uv", "pip")
# pip's settings that pass through, and what uv calls them.
UV_NAMES = {
    "PIP_INDEX_URL": "UV_INDEX_URL",
    "PIP_EXTRA_INDEX_URL": "UV_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST": "UV_INSECURE_HOST",
    "PIP_CERT": "SSL_CERT_FILE",
    "PIP_DEFAULT_TIMEOUT": "UV_HTTP_TIMEOUT",
    "PIP_RETRIES": "UV_HTTP_RETRIES",
}
PASSED_THROUGH = tuple(UV_NAMES)
# The settings that decide what the installers find: part of the layers' keys (dcbuild.plan).
INDEX_SETTINGS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST")


def installer(env_dir: Path | None) -> str:
    """``DC_INSTALLER``: a config var (ENV_DIR) wins over the environment; uv unless told."""
    config = configvars.for_build(env_dir)
    where = "config var" if "DC_INSTALLER" in config else "environment variable"
    value = config.get("DC_INSTALLER", os.environ.get("DC_INSTALLER", "")).strip().lower() or "uv"
    if value not in INSTALLERS:
        raise log.BuildError(
            f"The {where} DC_INSTALLER is {value!r}, which is not an installer this buildpack has",
            "It may be uv (the default) or pip.",
            "Set DC_INSTALLER to uv or pip, or unset it.",
        )
    return value


def clean_env(cache: Path | None, env_dir: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    config = configvars.for_build(env_dir)
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


def _same(requirement: str) -> str:
    """A requirement as written, compared without spaces, comments and name spelling."""
    text = re.sub(r"\s+", "", requirement.split(" #", 1)[0]).lower()
    m = re.match(r"[a-z0-9][a-z0-9._-]*", text)
    return _normal(m.group(0)) + text[m.end():] if m else text


def where(requirement: str, files: list[Path], base: Path) -> str | None:
    """``file:line`` of the line in the requirement files that says ``requirement`` (spaces and
    comments aside), else of the first line that names the same project."""
    m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    if not m:
        return None
    wanted, exact = _normal(m.group(0)), _same(requirement)
    found: list[tuple[bool, str]] = []
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()
        except OSError:
            continue
        try:
            name = path.resolve().relative_to(base.resolve())
        except ValueError:
            name = path
        for number, line in enumerate(lines, 1):
            n = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
            if n and _normal(n.group(1)) == wanted:
                found.append((_same(line) == exact, f"{name}:{number}"))
    return next((place for same, place in found if same), found[0][1] if found else None)


def located(what: str, requirement: str, cwd: Path) -> str:
    """``what`` (one requirement, or several joined by "and"/","), each followed by its ``(file:line)``."""
    try:
        files = reqs.collect(cwd / requirement)
    except log.BuildError:
        return what
    parts = re.split(r"(, and |, | and )", what)
    for i in range(0, len(parts), 2):
        place = where(parts[i], files, cwd)
        parts[i] += f" ({place})" if place else ""
    return "".join(parts)


def disk_full(output: str, engine: str, label: str) -> log.BuildError | None:
    """The error for an install that ran out of disk space: no fault of the requirements."""
    m = diskfull.FULL.search(output)
    if not m:
        return None
    said = output[output.rfind("\n", 0, m.start()) + 1:].split("\n", 1)[0].strip()
    return log.BuildError(
        f"{engine} ran out of disk space while installing the packages in {label}",
        f"{engine} said: {said if len(said) <= 300 else m.group(0)}",
        f"{label} is not at fault: the disk is full (see below).",
    )


_UNTRUSTED = re.compile(r"(?:invalid peer certificate|CERTIFICATE_VERIFY_FAILED|certificate verify failed)[^\n]*")


def untrusted(output: str, engine: str, label: str) -> log.BuildError | None:
    """The error for an index whose TLS certificate the build machine does not trust."""
    m = _UNTRUSTED.search(output)
    if not m:
        return None
    return log.BuildError(
        f"{engine} could not verify the TLS certificate of a package index",
        f"{engine} said: {m.group(0).strip()[:300]}",
        f"{label} is not at fault: the index's certificate is signed by a CA that the build machine does not "
        "trust. Add that CA to the build image's certificate store, or set the config var PIP_CERT to a CA "
        "bundle file that holds it.",
    )


_NOT_NAMED = re.compile(r"^\s*(-e\b|--editable|\.|/|~|[a-z+]+://|git\+|--index-url|-i\b|--extra-index-url)", re.I)


def wheelhouse_applies(files: list[Path]) -> bool:
    """Only plain named requirements go through the wheel cache; editables, paths, URLs and
    hash-checked files (a wheel built here has no listed hash) don't."""
    for path in files:
        for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():
            if _NOT_NAMED.match(line) or " @ " in line.split("#", 1)[0] or "--hash" in line:
                return False
    return True


def _stream(cmd: list[str], cwd: Path, env: dict[str, str], show: bool = True,
            quiet: tuple[str, ...] = ("Requirement already satisfied",)) -> tuple[int, str]:
    """Run an installer, its lines indented (but those starting with one of ``quiet``)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace")
    captured = []
    assert proc.stdout is not None
    for line in proc.stdout:
        captured.append(line)
        if show and not line.startswith(quiet):
            sys.stdout.write(log.INDENT + line.rstrip("\n") + "\n")
            sys.stdout.flush()
    return proc.wait(), "".join(captured)


def _fail(output: str, requirement: str, cwd: Path, label: str) -> log.BuildError:
    full = disk_full(output, "pip", label) or untrusted(output, "pip", label)
    if full:
        return full
    known = diagnose.explain(output, requirement, cwd, label)
    if known:
        return log.BuildError(f"pip could not install the packages in {label}", *known)
    what = culprit(output)
    if what:
        what = located(what, requirement, cwd)
    return log.BuildError(
        f"pip could not install the packages in {label}",
        f"Failed requirement: {what}" if what else "pip's own message is above.",
        f"Fix {label} and deploy again.",
    )


def _wheel_key(filename: str) -> tuple[str, str]:
    """(project, version) of a wheel's file name or a ``.dist-info`` directory's stem."""
    name, version = filename.split("-")[:2]
    return _normal(name), version.lower()


def _resolve(pip: list[str], requirement: str, cwd: Path, env: dict[str, str], wheelhouse: Path,
             label: str) -> list[tuple[str, str, str]]:
    """What pip installs into this environment from the index alone, as a build with no cache
    would (metadata only): (name, version, file name) of each."""
    report = wheelhouse.with_name(f"report.json.tmp.{os.getpid()}")  # *.tmp.*: a killed build's is removed
    try:
        # Not --quiet: on a failure, pip's "Collecting X (from A->-r file (line N))" lines name the
        # chain that pulled the failing package in (dcbuild.diagnose).
        status, output = _stream([*pip, "install", "--dry-run", "--report", str(report), "-r",
                                  requirement], cwd, env, show=False)
        if status != 0:
            sys.stdout.write("".join(log.INDENT + line + "\n" for line in output.splitlines()))
            raise _fail(output, requirement, cwd, label)
        items = json.loads(report.read_text()).get("install", [])
    finally:
        report.unlink(missing_ok=True)
    return [(item["metadata"]["name"], item["metadata"]["version"],
             item["download_info"]["url"].rsplit("/", 1)[-1]) for item in items]


def _via_wheelhouse(pip: list[str], requirement: str, cwd: Path, env: dict[str, str], wheelhouse: Path,
                    label: str) -> None:
    """Resolve against the index (never against the wheelhouse: it may hold older releases),
    add to the wheelhouse what it lacks of that, and install exactly that from it."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    chosen = _resolve(pip, requirement, cwd, env, wheelhouse, label)
    have = {w.name for w in wheelhouse.glob("*.whl")}
    built = {_wheel_key(name) for name in have}
    missing = [f"{name}=={version}" for name, version, filename in chosen
               if filename not in have and (filename.endswith(".whl") or (_normal(name), version.lower()) not in built)]
    if missing:
        log.detail(f"Not in the wheel cache: {', '.join(missing)}")
        # Wheels land in a private directory first and are renamed in one by one, so a killed
        # build never leaves a half-written wheel in the cache.
        fresh = wheelhouse.with_name(f"{wheelhouse.name}.tmp.{os.getpid()}")
        shutil.rmtree(fresh, ignore_errors=True)
        try:
            status, output = _stream([*pip, "wheel", "--wheel-dir", str(fresh), "--no-deps", *missing], cwd, env)
            if status != 0:
                raise _fail(output, requirement, cwd, label)
            for wheel in fresh.glob("*.whl"):
                os.replace(wheel, wheelhouse / wheel.name)
        finally:
            shutil.rmtree(fresh, ignore_errors=True)
    elif chosen:
        log.detail("All packages came from the wheel cache")
    pins = wheelhouse.with_name(f"pins.txt.tmp.{os.getpid()}")
    pins.write_text("".join(f"{name}=={version}\n" for name, version, _file in chosen))
    try:
        status, output = _stream([*pip, "install", "--no-warn-script-location", "--no-compile", "--no-index",
                                  "--find-links", str(wheelhouse), "-r", requirement, "-c", str(pins)], cwd, env)
    finally:
        pins.unlink(missing_ok=True)
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


def uv_env(cache: Path | None, env_dir: Path | None, root: Path | None = None) -> dict[str, str]:
    """uv's environment: no host configuration, the index settings mapped from pip's names."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "UV_", "PYTHON", "VIRTUAL_ENV", "CONDA_", "SSL_CERT_"))
           and k not in ("COLUMNS", "LINES")}  # uv would wrap its messages to COLUMNS
    config = configvars.for_build(env_dir)
    for pip_name, uv_name in UV_NAMES.items():
        value = config.get(pip_name, os.environ.get(pip_name, "")).strip()
        if value:
            env[uv_name] = value
    env.update(
        UV_NO_CONFIG="1",  # no uv.toml / pyproject.toml [tool.uv] from the host or the app
        UV_NO_PROGRESS="1",
        UV_PYTHON_DOWNLOADS="never",
        # The system's certificate store, as pip (>= 24.2) uses it: a private index signed by a
        # company CA, or a TLS-intercepting proxy, works as it does with pip (uv's default is
        # its own bundled roots only). PIP_CERT (SSL_CERT_FILE) still names a bundle of its own.
        UV_SYSTEM_CERTS="1",
        UV_INDEX_STRATEGY="unsafe-best-match",  # pip's choice: the best version over every index
        NO_COLOR="1",
        PYTHONUNBUFFERED="1",
    )
    if cache is None:
        env["UV_NO_CACHE"] = "1"
        return env
    env["UV_CACHE_DIR"] = str(cache)
    # uv's lock files for the target interpreter go to TMPDIR: keep them with its cache, so an
    # uncached build (a stand-in cache, removed afterwards) leaves nothing behind.
    env["TMPDIR"] = str(cache / "tmp")
    try:
        (cache / "tmp").mkdir(parents=True, exist_ok=True)
        same_fs = root is None or cache.stat().st_dev == root.stat().st_dev
    except OSError:
        same_fs = False
    # Hard links from uv's cache where the filesystem allows (files are never rewritten in
    # place: layers are hard-linked copies already); a copy, without uv's warning, otherwise.
    env["UV_LINK_MODE"] = "hardlink" if same_fs else "copy"
    return env


# A requirement uv names ends before ", ", " and " or the sentence's full stop: not at the
# first "," or "." (``dcbp-pin==1.0`` is not ``dcbp-pin==1``; ``flask>=2,<3`` is one).
_END = r"(?=, | and |\.?\s|\.?$)"
_UV_CULPRITS = (
    re.compile(rf"was not found in the package registry and you require (\S+?){_END}", re.M),
    re.compile(r"Because you require (\S+?(?: and (?!you\b)\S+?)?), we can conclude", re.M),
    re.compile(r"Because (\S+?) was not found in the package registry"),
    re.compile(r"there is no version of (\S+?)(?: and|,|$)", re.M),
    re.compile(r"Failed to (?:build|download|download and build|fetch) `([^`]+)`"),
    re.compile(r"Because (?:only )?(\S+?) (?:depends|is available)"),
    re.compile(rf"you require (\S+?){_END}", re.M),
)
_UV_PARSE = re.compile(r"Couldn't parse requirement in `([^`]+)` at position (\d+)")


def uv_culprit(output: str, cwd: Path) -> tuple[str | None, str | None]:
    """(requirement, ``file:line``) uv failed on, from its own output."""
    m = _UV_PARSE.search(output)
    if m:
        path = cwd / m.group(1)
        try:
            text = path.read_text(encoding="utf-8-sig", errors="replace")
        except OSError:
            return None, None
        offset = int(m.group(2))
        number = text.count("\n", 0, offset) + 1
        line = text.splitlines()[number - 1] if number <= len(text.splitlines()) else ""
        return line.strip(), f"{m.group(1)}:{number}"
    for pattern in _UV_CULPRITS:
        m = pattern.search(output)
        if m:
            return m.group(1).strip(), None
    return None, None


def _uv_fail(output: str, requirement: str, cwd: Path, label: str) -> log.BuildError:
    full = disk_full(output, "uv", label) or untrusted(output, "uv", label)
    if full:
        return full
    known = diagnose.explain(output, requirement, cwd, label)
    if known:
        return log.BuildError(f"uv could not install the packages in {label}", *known)
    what, place = uv_culprit(output, cwd)
    if what:
        what = f"{what} ({place})" if place else located(what, requirement, cwd)
    return log.BuildError(
        f"uv could not install the packages in {label}",
        f"Failed requirement: {what}" if what else "uv's own message is above.",
        f"Fix {label} and deploy again (DC_INSTALLER=pip installs with pip instead).",
    )


def _stream_uv(cmd: list[str], cwd: Path, env: dict[str, str], show: bool = True) -> tuple[int, str]:
    """Run uv; its lines indented, without the one naming the (temporary) environment's path."""
    return _stream(cmd, cwd, env, show, quiet=("Using Python ", "Audited "))


def bound_uv_cache(uv: Path, env: dict[str, str]) -> None:
    """Keep uv's cache under ``DC_UV_CACHE_MAX_MB`` (default 2048): past it, ``uv cache prune``,
    then, if that is not enough, ``uv cache clean``. The layers keep their files (hard links or
    copies), so only the next new package is fetched again."""
    if "UV_CACHE_DIR" not in env:
        return
    try:
        limit_mb = int(os.environ.get("DC_UV_CACHE_MAX_MB", "2048"))
    except ValueError:
        limit_mb = 2048

    root = Path(env["UV_CACHE_DIR"])
    size = tree_size(root)
    if size <= limit_mb << 20:
        return
    after, done = size, ""
    for action, past in (("prune", "pruned"), ("clean", "emptied")):
        subprocess.run([str(uv), "cache", action], env=env, capture_output=True, check=False)
        after, done = tree_size(root), past
        if after <= limit_mb << 20:
            break
    log.detail(f"uv's cache held {size >> 20} MB, over DC_UV_CACHE_MAX_MB={limit_mb}: {done}, {after >> 20} MB now")


def _dist_infos(root: Path) -> set[Path]:
    return set(root.glob("lib/python3*/site-packages/*.dist-info"))


def _direct_locals(infos: set[Path]) -> list[str]:
    """Of these distributions, those that came from a local directory or file (``direct_url.json``)."""
    found = []
    for info in infos:
        try:
            url = json.loads((info / "direct_url.json").read_text()).get("url", "")
        except (OSError, ValueError):
            continue
        if url.startswith("file:"):
            found.append(_wheel_key(info.name[: -len(".dist-info")])[0])
    return sorted(found)


def _uv_install(uv: Path, root: Path, requirement: str, cwd: Path, env: dict[str, str], label: str,
                local_names: list[str]) -> None:
    """``uv pip install -r`` into ``root``, local projects built again (``--refresh-package``:
    uv would reuse the wheel it built from a directory whose setup files did not change)."""
    python = str(root / "bin" / "python3")
    before = _dist_infos(root)
    cmd = [str(uv), "pip", "install", "--python", python, "--break-system-packages", "-r", requirement]
    refresh = [arg for name in local_names for arg in ("--refresh-package", name)]
    status, output = _stream_uv([*cmd, *refresh], cwd, env)
    if status != 0:
        raise _uv_fail(output, requirement, cwd, label)
    if "Prepared " not in output:  # uv says how many it fetched or built, when any
        log.detail("All packages came from the uv cache")
    else:
        bound_uv_cache(uv, env)
    # A local project whose name could not be read from its files: installed again, built anew.
    unnamed = [name for name in _direct_locals(_dist_infos(root) - before) if name not in local_names]
    if unnamed:
        again = [arg for name in unnamed for arg in ("--reinstall-package", name)]
        status, output = _stream_uv([*cmd, *again], cwd, env, show=False)
        if status != 0:
            sys.stdout.write("".join(log.INDENT + line + "\n" for line in output.splitlines()))
            raise _uv_fail(output, requirement, cwd, label)


def install(root: Path, requirement: str, cwd: Path, cache: Path | None, env_dir: Path | None, label: str,
            wheelhouse: Path | None = None, previous: Path | None = None, engine: str = "pip",
            uv: Path | None = None) -> None:
    """``pip install -r requirement`` (or ``uv pip install``) into the runtime at ``root``.

    ``root`` is a fresh copy of the layer below (the runtime, or the dcreqs environment), never
    an earlier environment of this app: what gets installed is what an empty cache would
    install, whatever was built before. Only bytecode is borrowed from ``previous`` (the last
    environment on the same layer below), for the distributions that are the same there
    (dcbuild.bytecode).

    With a wheelhouse (pip: a directory of wheels kept in the cache), packages that are already
    there are neither downloaded nor built again: first an offline install from it is tried;
    if something is missing, ``pip wheel`` adds just that, and the install runs from it.
    The registry here sends no cache headers, so pip's own HTTP cache would store nothing.
    """
    from . import bytecode, localpkgs, relocate

    relocate.bind(root)
    locals_ = localpkgs.find(reqs.collect(cwd / requirement), cwd)
    if engine == "uv":
        assert uv is not None
        _uv_install(uv, root, requirement, cwd, uv_env(cache, env_dir, root), label, localpkgs.names(locals_))
    else:
        env = clean_env(cache, env_dir)
        pip = [str(root / "bin" / "python3"), "-I", "-m", "pip"]
        via = wheelhouse
        if via is not None and not wheelhouse_applies(reqs.collect(cwd / requirement)):
            log.detail("Editable, path, URL or hash-checked requirements: installing without the wheel cache")
            via = None
        if via is None:
            status, output = _stream([*pip, "install", "--no-warn-script-location", "--no-compile", "-r",
                                      requirement], cwd, env)
            if status != 0:
                raise _fail(output, requirement, cwd, label)
        else:
            _via_wheelhouse(pip, requirement, cwd, env, via, label)
    localpkgs.relocate_editables(root, cwd)
    bytecode.compile_missing(root, previous if previous is not None and previous.is_dir() else None)
    if engine == "pip" and wheelhouse is not None and wheelhouse.is_dir():
        record_wheels(root, wheelhouse)
    else:  # no wheelhouse files: the pip wheelhouse's pruning still works
        used = root.parent / USED
        tmp = used.with_name(f"{USED}.tmp.{os.getpid()}")
        tmp.write_text("")
        os.replace(tmp, used)
    relocate.make_scripts_relocatable(root)
    relocate.unbind(root)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dcbuild.pip")
    parser.add_argument("root", type=Path, help="the runtime tree (has bin/python3)")
    parser.add_argument("requirement", help="requirements file, as pip should name it")
    parser.add_argument("--cwd", type=Path, default=Path.cwd())
    parser.add_argument("--cache", type=Path, default=None, help="pip's (or uv's) cache directory")
    parser.add_argument("--installer", choices=INSTALLERS, default=None,
                        help="uv or pip (default: DC_INSTALLER from ENV_DIR or the environment, else uv)")
    parser.add_argument("--tools", type=Path, default=None, help="where the pinned uv is kept (the build cache)")
    parser.add_argument("--env-dir", type=Path, default=None)
    parser.add_argument("--label", default=None, help="how the log names the file")
    parser.add_argument("--wheelhouse", type=Path, default=None, help="a directory of wheels kept between builds")
    parser.add_argument("--bytecode-from", type=Path, default=None,
                        help="the previous environment on the same layer below: bytecode of the same"
                             " distributions is taken from it")
    parser.add_argument("--uv-lock", default=None,
                        help="the directory (relative to --cwd) of a uv.lock to export to REQUIREMENT first")
    args = parser.parse_args(argv)
    engine = args.installer or installer(args.env_dir)
    if args.uv_lock:
        from . import lockfiles

        lockfiles.uv_lock_requirements(args.cwd, args.cwd / args.uv_lock, args.tools, args.env_dir,
                                       args.root / "bin" / "python3")
    uv = None
    if engine == "uv":
        from . import tools

        uv = tools.uv(args.tools)
    install(args.root, args.requirement, args.cwd, args.cache, args.env_dir, args.label or args.requirement,
            args.wheelhouse, args.bytecode_from, engine, uv)
    return 0


if __name__ == "__main__":
    log.main(_main)
