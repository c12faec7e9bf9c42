"""Whether a failed build ran out of disk space, and where: bin/compile runs this on make's
output (``python3 -S -m dcbuild.diskfull LOG --dir NAME PATH ... [--alias SHIM REAL ...]``).

If the output says the disk was full, it prints one error paragraph: the file the failing
write named (with bin/compile's link directory replaced by the real path), else the directory
with the least space, then the free space of each directory given. Otherwise it prints nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

# An installer's or a tool's words for a full disk (or quota); dcbuild.pip uses them too.
FULL = re.compile(r"No space left on device|Errno 28\b|os error 28\b|ENOSPC|Disk quota exceeded|os error 122\b")
# The path the failing write named, quoted '...' or `...` (a copy names its target last).
QUOTED = re.compile(r"['`](/[^'`]+)['`]")
MB = 1 << 20


def mount_point(path: str) -> str:
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def free_mb(path: str) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize // MB


def report(output: str, dirs: list[tuple[str, str]], aliases: list[tuple[str, str]], min_free: str) -> list[str]:
    """The error paragraph's lines (without the ` !     ` prefix), or [] if the disk was not full."""
    lines = [line for line in output.splitlines() if FULL.search(line)]
    if not lines:
        return []
    named = next((found for found in map(QUOTED.findall, lines) if found), [])
    where = ""
    if named:
        path = named[-1]
        for shim, real in aliases:
            if path == shim or path.startswith(shim.rstrip("/") + "/"):
                path = real + path[len(shim):]
                break
        where = f"writing {path}"
    rows, least = [], None
    for name, path in dirs:
        free = free_mb(path)
        at = mount_point(path) if os.path.exists(path) else "?"
        rows.append(f"  {name} {path}: {'?' if free is None else free} MB free on the filesystem mounted at {at}")
        if free is not None and (least is None or free < least[0]):
            least = (free, f"{name} ({path})")
    if not where:
        where = f"in {least[1] if least else 'one of the directories below'}"
    return [f"Error: the disk is full: the build ran out of space {where}.",
            "Free space now (the build has removed what it left half-made):", *rows,
            "Free some space there or give the build a larger disk, then build again. A cache with less",
            f"than DC_CACHE_MIN_FREE_MB (now {min_free}) MB free is not used: the build then runs uncached."]


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dcbuild.diskfull")
    parser.add_argument("log")
    parser.add_argument("--dir", nargs=2, action="append", default=[], metavar=("NAME", "PATH"))
    parser.add_argument("--alias", nargs=2, action="append", default=[], metavar=("SHIM", "REAL"))
    parser.add_argument("--min-free", default="256")
    args = parser.parse_args(argv)
    try:
        with open(args.log, encoding="utf-8", errors="replace") as f:
            output = f.read()
    except OSError:
        return 0
    lines = report(output, [tuple(d) for d in args.dir], [tuple(a) for a in args.alias], args.min_free)
    sys.stderr.write("".join(f" !     {line}\n" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
