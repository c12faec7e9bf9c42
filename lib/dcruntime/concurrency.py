"""The default number of uWSGI workers, from the CPUs and memory this container may use.

Heroku's Python buildpack sets ``WEB_CONCURRENCY`` to the lower of ``2 * cores + 1`` and
``memory / 256 MB``. That suits gunicorn serving clients itself. Here nginx sits in front and
buffers every request and response, so a worker is busy only while the app runs; a CPU-bound
app is fastest with one worker per core (on 2 cores, hello world through nginx: 2 workers served
59k requests/s and 4 served 47k; 2 use about 120 us of CPU per request, 4 about 145). The
default is therefore

    min(max(2, cores), memory // 256 MB), at least 1

where ``cores`` is the smaller of the CPUs this process may run on (``sched_getaffinity``) and
the cgroup's CPU quota (rounded up), and ``memory`` the cgroup's memory limit (none: no cap).
An app that waits on a database or an API most of the time wants more: ``WEB_CONCURRENCY``.

The cgroup files read (the first that exists, for this process's cgroup and its ancestors):
v2 ``cpu.max`` and ``memory.max``; v1 ``cpu/cpu.cfs_quota_us`` + ``cpu.cfs_period_us`` and
``memory/memory.limit_in_bytes``. ``max``, ``-1`` or a huge number mean no limit.
``DC_CGROUP_ROOT`` (default ``/sys/fs/cgroup``) names another root, for tests: then the files
are read right under it, without looking up this process's cgroup in ``/proc/self/cgroup``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MB = 1024 * 1024
MEMORY_PER_WORKER = 256 * MB
UNLIMITED = 1 << 60  # cgroup v1 writes 9223372036854771712 (page-rounded 2**63 - 1) for "none"
DEFAULT_ROOT = "/sys/fs/cgroup"


@dataclass(frozen=True)
class Limits:
    cores: int
    memory: int | None  # bytes; None: no limit

    def workers(self) -> int:
        count = max(2, self.cores)
        if self.memory is not None:
            count = min(count, self.memory // MEMORY_PER_WORKER)
        return max(1, count)

    def describe(self) -> str:
        cores = f"{self.cores} core" + ("s" if self.cores != 1 else "")
        memory = "no memory limit" if self.memory is None else f"{self.memory // MB} MB memory limit"
        return f"{cores}, {memory}"


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _own_paths(proc_cgroup: Path) -> dict[str, str]:
    """This process's cgroup per v1 controller (``memory``, ``cpu``) and ``""`` for v2."""
    paths: dict[str, str] = {}
    for line in (_read(proc_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                paths[controller] = parts[2]
    return paths


def _candidates(base: Path, own: str | None) -> list[Path]:
    """base/own, its parents up to base, and base itself (without own: base only)."""
    dirs = [base]
    if own and own.strip("/"):
        parts = own.strip("/").split("/")
        dirs = [base.joinpath(*parts[:n]) for n in range(len(parts), 0, -1)] + [base]
    return dirs


def _number(text: str | None) -> int | None:
    if text is None or not text.lstrip("-").isdigit():
        return None
    value = int(text)
    return value if 0 < value < UNLIMITED else None


def memory_limit(root: Path, own: Mapping[str, str] | None) -> int | None:
    found: list[int] = []
    for directory in _candidates(root, (own or {}).get("")):
        value = _number(_read(directory / "memory.max"))
        if value is not None:
            found.append(value)
    for directory in _candidates(root / "memory", (own or {}).get("memory")):
        value = _number(_read(directory / "memory.limit_in_bytes"))
        if value is not None:
            found.append(value)
    return min(found) if found else None


def cpu_quota(root: Path, own: Mapping[str, str] | None) -> int | None:
    found: list[int] = []
    for directory in _candidates(root, (own or {}).get("")):
        fields = (_read(directory / "cpu.max") or "").split()
        if len(fields) == 2:
            quota, period = _number(fields[0]), _number(fields[1])
            if quota and period:
                found.append(math.ceil(quota / period))
    for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        for directory in _candidates(root / name, (own or {}).get("cpu")):
            quota = _number(_read(directory / "cpu.cfs_quota_us"))
            period = _number(_read(directory / "cpu.cfs_period_us"))
            if quota and period:
                found.append(math.ceil(quota / period))
    return min(found) if found else None


def limits(environ: Mapping[str, str]) -> Limits:
    injected = environ.get("DC_CGROUP_ROOT", "").strip()
    root = Path(injected or DEFAULT_ROOT)
    own = None if injected else _own_paths(Path("/proc/self/cgroup"))
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = cpu_quota(root, own)
    if quota is not None:
        cores = min(cores, max(1, quota))
    return Limits(cores=max(1, cores), memory=memory_limit(root, own))
