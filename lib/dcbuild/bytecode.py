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
    """A distribution's RECORD without its bytecode lines (pip lists what it compiled)."""
    try:
        lines = (info / "RECORD").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return sorted(line for line in lines if line and "__pycache__/" not in line.split(",", 1)[0])


def _sources(site: Path, record: list[str]) -> list[Path]:
    out = []
    for line in record:
        name = line.rsplit(",", 2)[0].strip('"')
        if name.endswith(".py"):
            path = (site / name)
            if path.parent == site or site in path.parents:
                out.append(path)
    return out


def _pyc(source: Path, tag: str) -> Path:
    return source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"


def fits(pyc: Path, source: Path) -> bool:
    """Whether the interpreter would use ``pyc`` for ``source`` as it is: a hash-based ``.pyc``
    (checked against the source when imported) or one recording the source's mtime and size."""
    try:
        with open(pyc, "rb") as fh:
            head = fh.read(16)
        st = source.stat()
    except OSError:
        return False
    if len(head) < 16:
        return False
    flags = int.from_bytes(head[4:8], "little")
    if flags & 1:
        return True
    return (int.from_bytes(head[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
            and int.from_bytes(head[12:16], "little") == st.st_size & 0xFFFFFFFF)


def seed(root: Path, previous: Path) -> int:
    """Hard-link into ``root`` the bytecode ``previous`` has for the same distributions; return
    how many files were linked."""
    linked = 0
    for site in _site(root):
        old_site = previous / site.relative_to(root)
        if not old_site.is_dir():
            continue
        tag = cache_tag(site)
        for info in site.glob("*.dist-info"):
            old_info = old_site / info.name
            record = _record(info)
            if not record or not old_info.is_dir() or _record(old_info) != record:
                continue
            for source in _sources(site, record):
                pyc = _pyc(source, tag)
                old = old_site / pyc.relative_to(site)
                if pyc.exists() or not fits(old, source):
                    continue
                try:
                    pyc.parent.mkdir(exist_ok=True)
                    os.link(old, pyc)
                    linked += 1
                except OSError:
                    continue  # another filesystem: compiled below instead
    return linked


def missing(root: Path) -> list[Path]:
    """The sources of installed distributions that have no bytecode."""
    out = []
    for site in _site(root):
        tag = cache_tag(site)
        for info in site.glob("*.dist-info"):
            out += [s for s in _sources(site, _record(info)) if s.is_file() and not _pyc(s, tag).exists()]
    return out


def compile_missing(root: Path) -> int:
    """Compile what has no bytecode yet with ``root``'s own interpreter, one compileall per CPU
    (compileall works through a list of files one by one); return how many sources were
    compiled. A source that does not compile (a Python 2 module in a package, say) is left
    without bytecode, as pip and uv leave it."""
    todo = missing(root)
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
