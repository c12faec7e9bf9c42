"""The cache's memory of the last build: why a layer is rebuilt, and pruning old entries.

``last-build.json`` holds what the last successful build used (Python version, stack,
hashes of the requirement files). When a layer has to be built again, ``why`` compares and
says, one line per reason, what changed. ``record`` writes the file and prunes entries not
used by the last few builds, so the cache does not grow without bound.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import time
from pathlib import Path

from . import log

STATE = "last-build.json"
# In each dependency layer's directory: the wheelhouse files installed in it (for pruning).
USED = "wheels-used.txt"
FIELDS = ("python", "stack", "dcreqs", "userreqs", "requirements", "installer", "locals", "index")
KEEP = int(os.environ.get("DC_CACHE_KEEP", "3"))


def load(cache: Path) -> dict[str, str]:
    try:
        data = json.loads((cache / STATE).read_text())
        return {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def reasons(kind: str, last: dict[str, str], now: dict[str, str]) -> list[str]:
    """What changed since the last build, as the log says it, for a layer of ``kind``."""
    if not last:
        return []
    out = []
    if last.get("stack", "") != now.get("stack", ""):
        out.append(f"stack changed ({last.get('stack') or 'none'} -> {now.get('stack') or 'none'})")
    if last.get("python") != now.get("python"):
        out.append(f"Python {last.get('python')} -> {now.get('python')}")
    if last.get("dcreqs") != now.get("dcreqs"):
        out.append("the buildpack's config/dcrequirements.txt changed")
    if (last.get("installer") or "pip") != (now.get("installer") or "pip"):  # builds before uv used pip
        out.append(f"installer {last.get('installer') or 'pip'} -> {now.get('installer') or 'pip'}")
    if last.get("index", "pypi") != now.get("index", "pypi"):
        out.append("package index settings changed (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_TRUSTED_HOST)")
    if kind == "userreqs" and (last.get("userreqs"), last.get("requirements")) != (
        now.get("userreqs"),
        now.get("requirements"),
    ):
        if not last.get("requirements"):
            out.append(f"{now.get('requirements')} added")
        else:
            out.append(f"{now.get('requirements') or last.get('requirements')} changed")
    if kind == "userreqs" and last.get("locals", "") != now.get("locals", "") and now.get("locals"):
        out.append("a local package named in the requirements changed")
    return out


LABELS = {"dcreqs": "cached dotCloud requirements", "userreqs": "cached packages"}


def record(cache: Path, now: dict[str, str], used: list[Path]) -> None:
    tmp = cache / f"{STATE}.tmp.{os.getpid()}"
    tmp.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, cache / STATE)
    stamp = time.time()
    for path in used:
        if path.exists():
            os.utime(path, (stamp, stamp))  # recency, for pruning
    prune(cache, KEEP)


def prune(cache: Path, keep: int) -> list[Path]:
    """Keep the ``keep`` most recently used entries of each kind; remove the rest.

    Then the wheelhouse: a wheel no kept layer names (``wheels-used.txt``, written by
    dcbuild.pip) goes too, else every version ever pinned would stay for good.
    """
    removed = []
    groups: dict[str, list[Path]] = {}
    layers = cache / "layers"
    if layers.is_dir():
        for path in layers.iterdir():
            if ".tmp." not in path.name:
                groups.setdefault(path.name.split("-", 1)[0], []).append(path)
    runtimes = cache / "runtimes"
    if runtimes.is_dir():
        groups["archives"] = [p for p in runtimes.glob("cpython-*.tar.gz")]
    for paths in groups.values():
        paths.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        for path in paths[keep:]:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
                Path(str(path) + ".sha256").unlink(missing_ok=True)
            removed.append(path)
    return removed + prune_wheels(cache) + prune_checks(cache) + prune_pycache(cache)


def tree_size(root: Path) -> int:
    """The bytes of the files under ``root`` (links not followed; 0 if it does not exist)."""
    size = 0
    for folder, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                size += os.lstat(os.path.join(folder, name)).st_size
    return size


def prune_pycache(cache: Path, limit_mb: int = 64) -> list[Path]:
    """The build's own bytecode (``pycache``, see dcbuild.slug): a tree per buildpack location,
    which a platform may change at every build; past the limit it goes, and one build remakes it."""
    root = cache / "pycache"
    if tree_size(root) <= limit_mb << 20:
        return []
    shutil.rmtree(root, ignore_errors=True)
    return [root]


def prune_checks(cache: Path, keep: int = 10) -> list[Path]:
    """The marks of app configs that passed the compile-time checks (dcbuild.checks): the newest."""
    marks = sorted((cache / "checks").glob("ok-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for mark in marks[keep:]:
        mark.unlink(missing_ok=True)
    return marks[keep:]


def prune_wheels(cache: Path) -> list[Path]:
    wheels = cache / "wheels"
    layers = cache / "layers"
    if not wheels.is_dir() or not layers.is_dir():
        return []
    named: set[str] = set()
    for layer in layers.iterdir():
        if layer.name.startswith(("dcreqs-", "userreqs-")) and ".tmp." not in layer.name:
            try:
                named.update((layer / USED).read_text().split())
            except OSError:
                return []  # a layer made before the lists were kept: leave the wheelhouse alone
    removed = [wheel for wheel in wheels.glob("*.whl") if wheel.name not in named]
    for wheel in removed:
        wheel.unlink(missing_ok=True)
    return removed


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dcbuild.cache")
    parser.add_argument("cmd", choices=["why", "record"])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--kind", default="userreqs")
    for field in FIELDS:
        parser.add_argument(f"--{field}", default="")
    parser.add_argument("--used", type=Path, action="append", default=[])
    args = parser.parse_args(argv)
    now = {field: getattr(args, field) for field in FIELDS}
    if args.cmd == "why":
        for reason in reasons(args.kind, load(args.cache), now):
            log.step(f"Discarding {LABELS.get(args.kind, 'cache')}: {reason}")
    else:
        record(args.cache, now, args.used)
    return 0


if __name__ == "__main__":
    log.main(_main)
