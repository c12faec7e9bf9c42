"""dotcloud.yml's ``environment:`` as a ``.profile.d`` script, for every process of the slug.

Platforms source ``.profile.d/*.sh`` before each process (herokuish under ``set -eo pipefail``),
so nothing here may fail, and a value is never evaluated: each is single-quoted. A platform
config var of the same name wins (it is set before the script runs).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from . import log

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What a dotcloud.yml must not change under the runtime's feet.
RESERVED = {"PATH", "HOME", "PORT", "LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONHOME", "PYTHONPATH"}


def quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def render(environment: dict[str, str]) -> str:
    lines = [
        "# Written by buildpack-python-dotcloud from dotcloud.yml's environment: (config vars win).",
    ]
    for name, value in sorted(environment.items()):
        if not _NAME.fullmatch(name):
            log.warn(f"dotcloud.yml: environment variable name {name!r} is not valid in a shell; it is ignored.")
            continue
        if name in RESERVED:
            log.warn(f"dotcloud.yml: environment variable {name} is managed by the platform; it is ignored.")
            continue
        lines.append(f'if [ -z "${{{name}+x}}" ]; then export {name}={quote(value)}; fi')
    return "\n".join(lines) + "\n"


def write(app: Path) -> None:
    """.profile.d/dotcloud-environment.sh from .dotcloud/service.json (removed when there is nothing to export)."""
    try:
        service = json.loads((app / ".dotcloud" / "service.json").read_text())
    except (OSError, ValueError):
        service = {}
    target = app / ".profile.d" / "dotcloud-environment.sh"
    environment = (service.get("environment") if isinstance(service, dict) else None) or {}
    if not environment:
        target.unlink(missing_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp.{os.getpid()}")
    tmp.write_text(render({str(k): str(v) for k, v in environment.items()}))
    os.replace(tmp, target)
    log.step(f"Exporting {len(environment)} variables from dotcloud.yml's environment: (config vars win)")
