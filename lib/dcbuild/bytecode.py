"""Bytecode of a new environment's packages, taken from the previous environment where the
package is the same, compiled where not.

Every userreqs layer is installed afresh on the dcreqs layer, exactly as an empty cache would
install it, so no resolution of an earlier build survives into it. Compiling the bytecode of
all its packages again would then cost most of a redeploy (a second or two for Django), so
``seed`` hard-links the ``.pyc`` files of each distribution whose RECORD (files, hashes,
sizes) is the same in the previous environment, and ``compile_missing`` compiles the rest.
The interpreter checks every ``.pyc`` against its source as usual (mtime and size, or hash),
so a borrowed one that does not fit is simply not used.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from . import log


def _site(root: Path) -> list[Path]:
    return sorted(root.glob("lib/python3*/site-packages"))


def cache_tag(site: Path) -> str:
    """``cpython-312`` for ``lib/python3.12/site-packages`` (``cpython-313t``: free-threaded)."""
    m = re.fullmatch(r"python3\.(\d+)(t?)", site.parent.name)
    return f"cpython-3{m.group(1)}{m.group(2)}" if m else "cpython"


def _record(info: Path) -> list[str]:
    """A distribution's RECORD as far as site-packages goes: without its bytecode lines (pip lists
    what it compiled) and without the files outside (console scripts, which the build rewrites
    and records again: dcbuild.relocate)."""
    try:
        lines = (info / "RECORD").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return sorted(line for line in lines
                  if line and "__pycache__/" not in line.split(",", 1)[0] and not line.startswith(("../", '"../')))


def _sources(site: str, record: list[str]) -> list[str]:
    """The ``.py`` files of a RECORD, as paths under ``site`` (string operations: a large
    distribution has thousands)."""
    out = []
    for line in record:
        name = line.rsplit(",", 2)[0].strip('"')
        if name.endswith(".py") and not name.startswith("/") and "/../" not in f"/{name}":
            out.append(os.path.join(site, name))
    return out


def _pyc(source: str, tag: str) -> str:
    head, tail = os.path.split(source)
    return os.path.join(head, "__pycache__", f"{tail[:-3]}.{tag}.pyc")


def fits(pyc: str | Path, source: str | Path) -> bool:
    """Whether the interpreter would use ``pyc`` for ``source`` as it is: a hash-based ``.pyc``
    (checked against the source when imported) or one recording the source's mtime and size."""
    try:
        with open(pyc, "rb") as fh:
            head = fh.read(16)
        st = os.stat(source)
    except OSError:
        return False
    if len(head) < 16:
        return False
    flags = int.from_bytes(head[4:8], "little")
    if flags & 1:
        return True
    return (int.from_bytes(head[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
            and int.from_bytes(head[12:16], "little") == st.st_size & 0xFFFFFFFF)


def seed(root: Path, previous: Path | None) -> list[str]:
    """Hard-link into ``root`` the bytecode ``previous`` has for the same distributions (same
    RECORD, and a ``.pyc`` that fits the source); return the sources still without bytecode."""
    todo: list[str] = []
    for site_path in _site(root):
        site = str(site_path)
        old_site = str(previous / site_path.relative_to(root)) if previous is not None else ""
        tag = cache_tag(site_path)
        for info in site_path.glob("*.dist-info"):
            record = _record(info)
            same = bool(old_site) and bool(record) and _record(Path(old_site) / info.name) == record
            for source in _sources(site, record):
                pyc = _pyc(source, tag)
                if os.path.exists(pyc) or not os.path.isfile(source):
                    continue
                if same:
                    old = old_site + pyc[len(site):]
                    if fits(old, source):
                        try:
                            os.makedirs(os.path.dirname(pyc), exist_ok=True)
                            os.link(old, pyc)
                            continue
                        except OSError:
                            pass  # another filesystem: compiled instead
                todo.append(source)
    return todo


def missing(root: Path) -> list[str]:
    """The sources of installed distributions that have no bytecode."""
    return seed(root, None)


def compile_missing(root: Path, previous: Path | None = None) -> int:
    """Borrow what bytecode ``previous`` has that fits (``seed``), then compile the rest with
    ``root``'s own interpreter, one compileall per CPU (compileall works through a list of files
    one by one); return how many sources were compiled. A source that does not compile (a
    Python 2 module in a package, say) is left without bytecode, as pip and uv leave it."""
    todo = seed(root, previous)
    if not todo:
        return 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    jobs = max(1, min(len(os.sched_getaffinity(0)), (len(todo) + 99) // 100))
    procs = []
    for part in range(jobs):
        proc = subprocess.Popen([str(root / "bin" / "python3"), "-I", "-m", "compileall", "-q", "-i", "-"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                text=True, errors="replace")
        procs.append(proc)
        assert proc.stdin is not None
        proc.stdin.write("".join(f"{p}\n" for p in todo[part::jobs]))
        proc.stdin.close()
    failed = []
    for proc in procs:
        assert proc.stdout is not None
        output = proc.stdout.read()
        if proc.wait() not in (0, 1):  # 1: some file did not compile, as above
            failed.append(output.strip()[-2000:])
    if failed:
        raise log.BuildError("Cannot compile the packages' bytecode", *failed)
    return len(todo)
