"""`make soak`: the web process under sustained load, and under load while workers are killed.

Not a test: it prints a table and exits 1 when a target is missed. The sample app (plus a static
file) is compiled with bin/compile (CACHE_DIR, when set, is reused) and run under bin/dcweb as a
platform runs it; wrk (as in tests/bench.py) loads it on 127.0.0.1.

1. warm-up: SOAK_WARMUP seconds (default 10) on each URL, then the RSS of every process of the
   web process (its session) is summed;
2. load: SOAK_SECONDS (default 60) at SOAK_CONNECTIONS (default 64) connections on `/` (nginx ->
   uWSGI -> the app), then on a static file (nginx): target zero failed requests (wrk's socket
   errors plus non-2xx/3xx answers); then the RSS again: target within 10% of the warm-up's;
3. kill: SOAK_SECONDS on `/` while a uWSGI worker is SIGKILLed every SOAK_KILL_EVERY seconds
   (default 5): target fewer than 0.1% failed requests.

    python tests/soak.py          (SOAK_SECONDS=10 SOAK_WARMUP=2 for a short run)
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import bench

from conftest import session_pids

BP = bench.BP
SECONDS = int(os.environ.get("SOAK_SECONDS") or 60)
WARMUP = int(os.environ.get("SOAK_WARMUP") or 10)
CONNECTIONS = int(os.environ.get("SOAK_CONNECTIONS") or 64)
KILL_EVERY = float(os.environ.get("SOAK_KILL_EVERY") or 5)
RSS_TOLERANCE = 0.10
KILL_TARGET = 0.001  # failed requests, as a fraction
STATIC_BODY = "Hello from a static file.\n"


@dataclass
class Load:
    label: str
    path: str
    requests: int
    seconds: float
    socket_errors: int
    non_2xx: int
    kills: int = 0

    @property
    def failed(self) -> int:
        return self.socket_errors + self.non_2xx

    @property
    def failed_share(self) -> float:
        return self.failed / max(self.requests, 1)


def wrk(port: int, path: str, seconds: int, label: str) -> Load:
    url = f"http://127.0.0.1:{port}{path}"
    argv = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", url]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 120).stdout
    total = re.search(r"^\s*(\d+) requests in ([\d.]+)(m?s|m)\b", out, re.M)
    if total is None:
        sys.exit(f"soak: cannot read wrk's output:\n{out}")
    scale = {"ms": 1e-3, "s": 1.0, "m": 60.0}[total.group(3)]
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Load(label, path, int(total.group(1)), float(total.group(2)) * scale,
                sum(map(int, errors.groups())) if errors else 0, int(non_2xx.group(1)) if non_2xx else 0)


def rss(pid: int) -> tuple[int, int]:
    """(summed VmRSS in bytes, number of processes) of the web process's session."""
    total = count = 0
    for member in session_pids(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        if m:
            total += int(m.group(1)) * 1024
            count += 1
    return total, count


def uwsgi_workers(pid: int) -> list[int]:
    rows = {}
    for member in session_pids(pid):
        try:
            ppid = int(Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = Path(f"/proc/{member}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith((b"uwsgi master", b"uwsgi worker ")):  # their titles (dcruntime.proctitle)
            rows[member] = ppid
    return [p for p, ppid in rows.items() if ppid in rows]


def killer(pid: int, stop: threading.Event, kills: list[int]) -> None:
    while not stop.wait(KILL_EVERY):
        workers = uwsgi_workers(pid)
        if workers:
            victim = random.choice(workers)
            try:
                os.kill(victim, signal.SIGKILL)
                kills.append(victim)
            except ProcessLookupError:
                pass


def compile_app(work: Path) -> Path:
    app = work / "sample-soak"
    shutil.copytree(BP / "test" / "fixtures" / "sample", app)
    (app / "static").mkdir()
    (app / "static" / "hello.txt").write_text(STATIC_BODY)
    cache = Path(os.environ.get("CACHE_DIR") or work / "cache")
    env = dict(os.environ)
    env.setdefault("PYTHON_OFFLINE", "1")
    res = subprocess.run([str(BP / "bin" / "compile"), str(app), str(cache)], cwd=app, env=env,
                         capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"soak: compile failed:\n{res.stdout}\n{res.stderr}")
    return app


def start(app: Path, work: Path) -> bench.Server:
    tmpdir = work / "t"
    tmpdir.mkdir(mode=0o755, exist_ok=True)
    env = {"HOME": str(app), "PORT": str(bench.free_port()), "TMPDIR": str(tmpdir), "PATH": "/usr/bin:/bin",
           "LANG": "C.UTF-8"}
    for name in ("WEB_CONCURRENCY", "NGINX_WORKERS"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    command = 'for f in .profile.d/*.sh; do . "$f"; done; exec bin/dcweb'
    return bench.Server(["bash", "-c", command], app, env, work / "dcweb.log")


def table(loads: list[Load], before: tuple[int, int], after: tuple[int, int]) -> tuple[str, bool]:
    ok = True
    out = [f"wrk -t2 -c{CONNECTIONS} on 127.0.0.1; {os.cpu_count()} cores shared with whatever else runs.", "",
           "| run | URL | s | requests | req/s | socket errors | non-2xx/3xx | failed % | target |",
           "|---|---|---|---|---|---|---|---|---|"]
    for load in loads:
        if load.kills:
            met = load.failed_share < KILL_TARGET
            target = f"< {KILL_TARGET:.1%} ({load.kills} workers killed)"
        else:
            met = load.failed == 0
            target = "0 failed"
        ok &= met
        out.append(f"| {load.label} | `{load.path}` | {load.seconds:.0f} | {load.requests} | "
                   f"{load.requests / load.seconds:.0f} | {load.socket_errors} | {load.non_2xx} | "
                   f"{load.failed_share:.4%} | {target}: {'met' if met else 'MISSED'} |")
    change = (after[0] - before[0]) / before[0]
    met = abs(change) <= RSS_TOLERANCE
    ok &= met
    out += ["", "| RSS of the web process's processes | after warm-up | after the load | change | target |",
            "|---|---|---|---|---|",
            f"| summed VmRSS | {before[0] / 2**20:.1f} MiB ({before[1]} processes) | "
            f"{after[0] / 2**20:.1f} MiB ({after[1]} processes) | {change:+.1%} | "
            f"within ±{RSS_TOLERANCE:.0%}: {'met' if met else 'MISSED'} |"]
    return "\n".join(out), ok


def main() -> int:
    bench.ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="dcsoak-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # as root, nginx's workers run as nobody and must reach the slug
        print("-----> Compiling the sample app", flush=True)
        app = compile_app(work)
        loads = []
        with start(app, work) as web:
            web.ready()
            if bench.get(web.port, "/static/hello.txt") != 200:
                sys.exit("soak: /static/hello.txt is not served")
            pid = web.proc.pid
            print(f"-----> Warming up ({WARMUP} s per URL)", flush=True)
            for path in ("/", "/static/hello.txt"):
                wrk(web.port, path, WARMUP, "warm-up")
            before = rss(pid)
            for label, path in (("load, dynamic", "/"), ("load, static", "/static/hello.txt")):
                print(f"-----> {label}: {SECONDS} s on {path}", flush=True)
                loads.append(wrk(web.port, path, SECONDS, label))
            time.sleep(1)
            after = rss(pid)
            print(f"-----> kill: {SECONDS} s on / with a uWSGI worker SIGKILLed every {KILL_EVERY:g} s", flush=True)
            stop, kills = threading.Event(), []
            thread = threading.Thread(target=killer, args=(pid, stop, kills), daemon=True)
            thread.start()
            load = wrk(web.port, "/", SECONDS, f"kill a worker every {KILL_EVERY:g} s")
            stop.set()
            thread.join()
            load.kills = len(kills)
            loads.append(load)
        text, ok = table(loads, before, after)
        print()
        print(text)
        if not ok:
            log = (work / "dcweb.log").read_text(errors="replace").splitlines()
            print("\nLast lines of the web log that are not requests:")
            print("\n".join([line for line in log if '"GET ' not in line and "GET /" not in line][-30:]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
