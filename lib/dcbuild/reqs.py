"""The app's requirement files: which files one install pulls in, and their content hash.

A requirements file may name others with ``-r``/``--requirement`` and ``-c``/``--constraint``,
relative to itself. The cache key of the userreqs layer covers all of them, so a change in a
nested file is noticed (a classic cache bug elsewhere), and a loop is a clear error.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shlex
from pathlib import Path

from . import log

_INCLUDE = re.compile(r"^\s*(?:-r|--requirement|-c|--constraint)(?:\s*=\s*|\s+)(\S.*)$")
_INCLUDE_JOINED = re.compile(r"^\s*-[rc](\S.*)$")


def _included(line: str) -> str | None:
    line = re.sub(r"(^|\s)#.*$", "", line).strip()
    m = _INCLUDE.match(line) or _INCLUDE_JOINED.match(line)
    if not m:
        return None
    target = shlex.split(m.group(1))[0] if m.group(1).strip() else ""
    return target or None


def collect(root_file: Path) -> list[Path]:
    """The file and every file it includes, depth first, each once."""
    seen: list[Path] = []

    def visit(path: Path, chain: list[Path], where: str) -> None:
        path = path.resolve()
        if path in chain:
            loop = " -> ".join(p.name for p in [*chain, path])
            raise log.BuildError(
                f"{where}: requirement files include each other in a loop",
                f"{loop}",
                "Remove one of the -r/-c lines that closes the loop.",
            )
        if path in seen:
            return
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise log.BuildError(
                f"{where}: requirement file {path.name} does not exist",
                f"Looked for {path}.",
                "Fix the -r/-c line, or add the file to the app.",
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise log.BuildError(f"Cannot read {path.name}", str(exc)) from None
        seen.append(path)
        for number, line in enumerate(text.splitlines(), 1):
            target = _included(line)
            if target and "://" not in target:
                visit(path.parent / target, [*chain, path], f"{path.name}:{number}")

    visit(root_file, [], root_file.name)
    return seen


def digest(root_file: Path, base: Path) -> str:
    """sha256 over the names (relative to ``base``) and contents of every file involved."""
    h = hashlib.sha256()
    for path in collect(root_file):
        try:
            name = str(path.relative_to(base.resolve()))
        except ValueError:
            name = str(path)
        h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dcbuild.reqs")
    parser.add_argument("cmd", choices=["digest", "files"])
    parser.add_argument("file", type=Path)
    parser.add_argument("--base", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.cmd == "digest":
        print(digest(args.file, args.base or args.file.parent)[:16])
    else:
        for path in collect(args.file):
            print(path)
    return 0


if __name__ == "__main__":
    log.main(_main)
