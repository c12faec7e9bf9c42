"""Migration help: where the app still names dotCloud's home directory.

On dotCloud the app lived in /home/dotcloud; here it lives wherever the platform puts it
($HOME, /app on Heroku). Every text file that mentions the old path is listed with its line,
as a warning: snippets for nginx, uWSGI and supervisord are rewritten at boot, code is not.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import log

OLD_HOME = b"/home/dotcloud"
SKIP_DIRS = {".git", ".hg", ".svn", ".dotcloud", "node_modules", "__pycache__", ".venv", "venv", "env"}
MAX_FILE = 1 << 20  # larger files are data, not code
MAX_REPORTED = 20


def mentions(app: Path) -> list[str]:
    found = []
    for root, dirs, files in os.walk(app):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not os.path.islink(os.path.join(root, d)))
        for name in sorted(files):
            path = Path(root) / name
            try:
                if path.is_symlink() or path.stat().st_size > MAX_FILE:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            if OLD_HOME not in data or b"\0" in data[:8192]:
                continue
            rel = path.relative_to(app)
            for number, line in enumerate(data.splitlines(), 1):
                if OLD_HOME in line:
                    found.append(f"{rel}:{number}: {line.decode('utf-8', 'replace').strip()[:100]}")
    return found


def warn_about(app: Path) -> None:
    found = mentions(app)
    if not found:
        return
    shown = found[:MAX_REPORTED]
    more = [f"... and {len(found) - len(shown)} more"] if len(found) > len(shown) else []
    log.warn(
        f"{len(found)} line(s) mention /home/dotcloud, which does not exist here:",
        *shown,
        *more,
        "nginx.conf, uwsgi.conf and supervisord.conf snippets are rewritten to $HOME at boot;",
        "in code, use os.environ['HOME'] (or paths relative to the file) instead.",
    )
