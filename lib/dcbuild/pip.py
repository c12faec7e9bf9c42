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


_NOT_NAMED = re.compile(r"^\s*(-e\b|--editable|\.|/|~|[a-z+]+://|git\+|--index-url|-i\b|--extra-index-url)", re.I)


def wheelhouse_applies(files: list[Path]) -> bool:
    """Only plain named requirements go through the wheel cache; editables, paths and URLs don't."""
    for path in files:
        for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():
            if _NOT_NAMED.match(line) or " @ " in line.split("#", 1)[0]:
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
    full = disk_full(output, "pip", label)
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
    full = disk_full(output, "uv", label)
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


_PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?:==|@)")


def compiled_names(text: str, root: Path, bases: list[Path]) -> set[str]:
    """The (normalised) names of the packages in ``uv pip compile`` output (requirements format).

    A path, ``-e`` or URL line is printed as it was written, without a name: those count by
    the installed distribution whose ``direct_url.json`` names the same file, directory or URL
    (a relative path is tried against each of ``bases``). uv's pylock.toml format names them
    all, but hashes every archive of a local or hash-less index on each run (seconds)."""
    names: set[str] = set()
    direct: set[str] = set()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-e ", "--editable ")):
            line = line.split(None, 1)[1].strip()
        elif line.startswith("-"):
            continue
        match = _PINNED.match(line)
        if match:
            names.add(_normal(match.group(1)))
        elif "://" in line:
            direct.add(line.split("#", 1)[0].rstrip("/"))
        else:
            direct.update((base / line).resolve().as_uri().rstrip("/") for base in bases)
    if direct:
        for info in root.glob("lib/python3*/site-packages/*.dist-info"):
            try:
                url = json.loads((info / "direct_url.json").read_text()).get("url", "")
            except (OSError, ValueError):
                continue
            if url.rstrip("/") in direct:
                names.add(_normal(_wheel_key(info.name[: -len(".dist-info")])[0]))
    return names


def _uv_install(uv: Path, root: Path, requirement: str, cwd: Path, env: dict[str, str], label: str,
                keep_from: Path | None) -> None:
    python = str(root / "bin" / "python3")
    status, output = _stream_uv([str(uv), "pip", "install", "--python", python, "--break-system-packages",
                                 "--compile-bytecode", "-r", requirement], cwd, env)
    if status != 0:
        raise _uv_fail(output, requirement, cwd, label)
    if "Prepared " not in output:  # uv says how many it fetched or built, when any
        log.detail("All packages came from the uv cache")
    else:
        bound_uv_cache(uv, env)
    if keep_from is None:
        return
    # What the requirements alone resolve to (as if nothing were installed), plus the dcreqs layer.
    res = subprocess.run([str(uv), "pip", "compile", "--python", python, "--quiet", "--no-header",
                          "--no-annotate", requirement], cwd=cwd, env=env, capture_output=True,
                         text=True, errors="replace")
    if res.returncode != 0:
        sys.stdout.write("".join(log.INDENT + line + "\n" for line in (res.stderr or res.stdout).splitlines()))
        raise _uv_fail(res.stderr + res.stdout, requirement, cwd, label)
    bases = [cwd, (cwd / requirement).parent]
    keep = compiled_names(res.stdout, root, bases) | _installed(keep_from) | {"pip", "setuptools", "wheel"}
    extras = sorted(_installed(root) - keep)
    if not extras:
        return
    log.detail(f"Removing packages no longer required: {', '.join(extras)}")
    status, output = _stream_uv([str(uv), "pip", "uninstall", "--python", python, "--break-system-packages",
                                 *extras], cwd, env, show=False)
    if status != 0:
        sys.stdout.write("".join(log.INDENT + line + "\n" for line in output.splitlines()))
        raise log.BuildError("uv could not remove packages that are no longer required", ", ".join(extras))


def install(root: Path, requirement: str, cwd: Path, cache: Path | None, env_dir: Path | None, label: str,
            wheelhouse: Path | None = None, keep_from: Path | None = None, engine: str = "pip",
            uv: Path | None = None) -> None:
    """``pip install -r requirement`` (or ``uv pip install``) into the runtime at ``root``.

    ``keep_from``: ``root`` started as a copy of the previous environment (so only what changed
    is installed); afterwards, packages that neither the requirements nor the dcreqs layer at
    ``keep_from`` need are removed, as if the environment had been built from scratch.

    With a wheelhouse (a directory of wheels kept in the cache), packages that are already
    there are neither downloaded nor built again: first an offline install from it is tried;
    if something is missing, ``pip wheel`` adds just that, and the install runs from it.
    The registry here sends no cache headers, so pip's own HTTP cache would store nothing.
    """
    from . import relocate

    if engine == "uv":
        assert uv is not None
        relocate.bind(root)
        _uv_install(uv, root, requirement, cwd, uv_env(cache, env_dir, root), label, keep_from)
        used = root.parent / USED  # no wheelhouse files: the pip wheelhouse's pruning still works
        tmp = used.with_name(f"{USED}.tmp.{os.getpid()}")
        tmp.write_text("")
        os.replace(tmp, used)
        relocate.make_scripts_relocatable(root)
        relocate.unbind(root)
        return
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
    parser.add_argument("--cache", type=Path, default=None, help="pip's (or uv's) cache directory")
    parser.add_argument("--installer", choices=INSTALLERS, default=None,
                        help="uv or pip (default: DC_INSTALLER from ENV_DIR or the environment, else uv)")
    parser.add_argument("--tools", type=Path, default=None, help="where the pinned uv is kept (the build cache)")
    parser.add_argument("--env-dir", type=Path, default=None)
    parser.add_argument("--label", default=None, help="how the log names the file")
    parser.add_argument("--wheelhouse", type=Path, default=None, help="a directory of wheels kept between builds")
    parser.add_argument("--keep-from", type=Path, default=None,
                        help="ROOT is a copy of the previous environment: remove what neither the requirements"
                             " nor this (dcreqs) runtime tree need")
    args = parser.parse_args(argv)
    engine = args.installer or installer(args.env_dir)
    uv = None
    if engine == "uv":
        from . import tools

        uv = tools.uv(args.tools)
    install(args.root, args.requirement, args.cwd, args.cache, args.env_dir, args.label or args.requirement,
            args.wheelhouse, args.keep_from, engine, uv)
    return 0


if __name__ == "__main__":
    log.main(_main)
