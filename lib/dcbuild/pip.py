"""Install a requirements file into a Python runtime tree with that runtime's own pip.

The host's pip configuration is not honoured (``/etc/pip.conf``, ``PIP_FIND_LINKS``, a
constraints file): a platform's build machine has none, and a build must not depend on the
machine it happens to run on. Only the index settings below pass through, from the
environment or the platform's ENV_DIR (config vars), as Heroku's buildpack does.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

from . import log, reqs

PASSED_THROUGH = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_RETRIES")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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


def install(root: Path, requirement: str, cwd: Path, cache: Path | None, env_dir: Path | None, label: str) -> None:
    """``pip install -r requirement`` into the runtime at ``root``; output indented."""
    from . import relocate

    python = root / "bin" / "python3"
    relocate.bind(root)
    cmd = [str(python), "-I", "-m", "pip", "install", "--no-warn-script-location", "-r", requirement]
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=clean_env(cache, env_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    captured = []
    assert proc.stdout is not None
    for line in proc.stdout:
        captured.append(line)
        sys.stdout.write(log.INDENT + line.rstrip("\n") + "\n")
        sys.stdout.flush()
    if proc.wait() != 0:
        what = culprit("".join(captured))
        if what:
            try:
                place = where(what, reqs.collect(cwd / requirement), cwd)
            except log.BuildError:
                place = None
            what += f" ({place})" if place else ""
        raise log.BuildError(
            f"pip could not install the packages in {label}",
            f"Failed requirement: {what}" if what else "pip's own message is above.",
            f"Fix {label} and deploy again.",
        )
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
    args = parser.parse_args(argv)
    install(args.root, args.requirement, args.cwd, args.cache, args.env_dir, args.label or args.requirement)
    return 0


if __name__ == "__main__":
    log.main(_main)
