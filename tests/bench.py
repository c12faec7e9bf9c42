"""`make bench`: compile and serving figures, measured side by side in one run.

Not a test: it prints one table per part. Everything runs on this machine, offline from the
network: the runtime comes from a local mirror, packages from a local index built once per run
(so timings exclude the registry), nginx is vendored beforehand by `make vendor`.

Compile: cold, warm, one pin changed, and plain `venv + pip install`, for two apps, with each
installer (uv, the default, and DC_INSTALLER=pip), so the gain shows as a ratio.
Serving: the compiled sample slug (plus a static file) under `bin/dcweb`, loaded with `wrk` on
127.0.0.1 for 10 s per target: `/` through nginx -> uWSGI (default settings, then the old
defaults: 4 processes, uWSGI's request log on), the static file through nginx, the
same app under gunicorn (4 sync workers, a venv of the same Python), and a bare nginx
`return 200` with the vendored binary and our worker count (the ceiling). Then the time from
starting `bin/dcweb` to the first 200 (median of 5), and the slug's size. Besides requests/s,
each load gives the server's CPU time per request (all its processes): other work on the
machine moves requests/s a lot and that figure much less.

    python tests/bench.py [--python X.Y.Z] [--part all|compile|serving] [--against OTHER_CHECKOUT]

``--against`` measures another checkout of the buildpack in the same run (each build right
after ours, on its own caches) and prints ours/theirs for cold, warm and one-pin-changed.
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import html
import http.client
import os
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BP / "lib"))

from dcbuild import localpython, manifest  # noqa: E402

APPS = {"sample": "sample (1 package)", "bench_large": "larger (5 pins, 20 packages)"}
ENGINES = ("uv", "pip")
BUMP = {"sample": ("itsdangerous==2.2.0", "itsdangerous==2.1.2"),
        "bench_large": ("requests==2.32.3", "requests==2.32.4")}


def run(cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("check", True)
    return subprocess.run(cmd, **kw)


def timed(cmd, **kw) -> float:
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    elapsed = time.perf_counter() - start
    if res.returncode != 0:
        sys.exit(f"bench: {' '.join(map(str, cmd))} failed:\n{res.stdout}\n{res.stderr}")
    return elapsed


class Bench:
    def __init__(self, work: Path, version) -> None:
        self.work = work
        self.local = next(lp for lp in localpython.find_local() if lp.version == version)
        self.version = version
        self.platform = manifest.current_platform()
        self.mirror = work / "mirror"
        self.index = work / "index"
        self.env = dict(os.environ)

    def prepare(self) -> None:
        """A runtime mirror with its own manifest, and a local package index."""
        self.mirror.mkdir(parents=True)
        archive = self.mirror / f"cpython-{self.version}-{self.platform}.tar.gz"
        sha = localpython.package(self.local, archive)
        table = self.work / "manifest.tsv"
        table.write_text("\t".join(manifest.HEADER) + "\n"
                         f"{self.version}\t{self.platform}\thttps://example.invalid/{archive.name}\t{sha}\n")
        wheels = self.work / "wheels"
        reqs = [BP / "config" / "dcrequirements.txt"]
        for app, (_old, new) in BUMP.items():
            reqs.append(FIXTURE / app / "requirements.txt")
            extra = self.work / f"{app}-bump.txt"
            extra.write_text(new + "\n")
            reqs.append(extra)
        extra = self.work / "gunicorn.txt"
        extra.write_text("gunicorn==23.0.0\n")
        reqs.append(extra)
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        clean["PIP_CONFIG_FILE"] = os.devnull
        clean["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        for req in reqs:
            run([str(self.local.executable), "-m", "pip", "download", "--quiet", "--no-deps" if "bump" in req.name
                 else "--progress-bar=off", "-d", str(wheels), "-r", str(req)], env=clean)
        for wheel in wheels.iterdir():
            name = wheel.name.split("-")[0].replace("_", "-").lower()
            if wheel.name.endswith(".tar.gz"):
                name = wheel.name.rsplit("-", 1)[0].replace("_", "-").lower()
            d = self.index / name
            d.mkdir(parents=True, exist_ok=True)
            shutil.copy(wheel, d / wheel.name)
        for d in self.index.iterdir():
            links = "".join(f'<a href="{html.escape(f.name)}">{html.escape(f.name)}</a>\n'
                            for f in d.iterdir() if f.name != "index.html")
            (d / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
        self.env.update(PYTHON_MIRROR=str(self.mirror), PYTHON_MANIFEST=str(table), PYTHON_OFFLINE="",
                        PIP_INDEX_URL=self.index.as_uri())
        self.env.pop("PIP_FIND_LINKS", None)

    def seed_tools(self, cache: Path) -> None:
        """The pinned uv, fetched once per run: a cold build's time excludes the registry."""
        from dcbuild import tools

        exe = tools.uv(self.work / "tools-cache")
        dest = cache / "python-dotcloud" / "tools"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(exe, dest / exe.name)

    def compile(self, app: str, cache: Path, tag: str, bump: bool = False, engine: str = "uv", bp: Path = BP) -> float:
        if not cache.exists():
            self.seed_tools(cache)
        build = self.work / f"{app}-{tag}"
        shutil.copytree(FIXTURE / app, build)
        if bump:
            req = build / "requirements.txt"
            old, new = BUMP[app]
            req.write_text(req.read_text().replace(old, new))
        (build / "runtime.txt").write_text(f"python-{self.version}\n")
        return timed([str(bp / "bin" / "compile"), str(build), str(cache)], cwd=build,
                     env=dict(self.env, DC_INSTALLER=engine))

    def plain(self, app: str) -> float:
        venv = self.work / f"{app}-venv"
        env = dict(self.env, PIP_CONFIG_FILE=os.devnull)
        start = time.perf_counter()
        run([str(self.local.executable), "-m", "venv", str(venv)], env=env, capture_output=True)
        run([str(venv / "bin" / "pip"), "install", "--quiet", "-r", str(FIXTURE / app / "requirements.txt")],
            env=env, capture_output=True)
        return time.perf_counter() - start


FIXTURE = BP / "test" / "fixtures"

# --- serving: wrk against the compiled sample slug, gunicorn, and a bare nginx -------------------

LOAD_SECONDS = 10
WRK = ["-t2", "-c64", f"-d{LOAD_SECONDS}s", "--latency"]
STARTS = 5
ROUNDS = 3
WARM_RUNS = 3
STATIC_BODY = "Hello from a static file.\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str = "/", timeout: float = 2.0) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        res = conn.getresponse()
        res.read()
        return res.status
    finally:
        conn.close()


class Server:
    """A server process in its own session, on a free loopback port, stopped with its group."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], log: Path, stop=signal.SIGTERM) -> None:
        self.port = int(env.get("PORT") or free_port())
        self.stop_signal = stop
        self.log = log
        self.started = time.perf_counter()
        with log.open("ab") as out:
            self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def ready(self, path: str = "/", timeout: float = 30.0) -> float:
        """Seconds from start to the first 200 on ``path``."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(OSError, http.client.HTTPException):
                if get(self.port, path) == 200:
                    return time.perf_counter() - self.started
            time.sleep(0.01)
        self.close()
        sys.exit(f"bench: {self.proc.args} gave no 200 on {path} (exit {self.proc.returncode}):\n"
                 + self.log.read_text(errors="replace")[-4000:])

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, self.stop_signal)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever a graceful stop left
        self.proc.wait(10)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def session_cpu(sid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of a session."""
    total = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:
                total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def wrk(port: int, path: str, sid: int) -> dict[str, float]:
    """One bounded wrk run (after a 1 s warm-up): requests/s, p50 and p99 in ms, errors, and the
    server's CPU time per request in microseconds (its session's processes: on a machine shared
    with other work, a steadier measure of cost than requests/s)."""
    url = f"http://127.0.0.1:{port}{path}"
    run(["wrk", "-t2", "-c64", "-d1s", url], capture_output=True)
    cpu = session_cpu(sid)
    out = run(["wrk", *WRK, url], capture_output=True, text=True, timeout=LOAD_SECONDS + 60).stdout
    cpu = session_cpu(sid) - cpu
    done = re.search(r"^\s*(\d+) requests in", out, re.M)

    def latency(pct: str) -> float:
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * _UNIT[m.group(2)] if m else float("nan")

    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(rps.group(1)) if rps else float("nan"), "p50": latency("50"), "p99": latency("99"),
            "errors": errors + (int(non2xx.group(1)) if non2xx else 0),
            "cpu_us": cpu / int(done.group(1)) * 1e6 if done and int(done.group(1)) else float("nan")}


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        sys.exit("bench: wrk is missing (apt-get install wrk)")
    print("Installing wrk (apt-get)", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, capture_output=True).returncode != 0:
        run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, capture_output=True)


class Serving:
    """The runtime part: the sample slug (plus a static file) under bin/dcweb, gunicorn, nginx."""

    def __init__(self, bench: Bench, cache: Path) -> None:
        self.bench = bench
        self.work = bench.work
        self.cache = cache
        self.tmpdir = self.work / "t"  # dcweb's run directories: short paths, nobody may enter
        self.tmpdir.mkdir(mode=0o755)
        self.app = self.work / "sample-web"

    def compile(self) -> None:
        shutil.copytree(FIXTURE / "sample", self.app)
        (self.app / "static").mkdir()
        (self.app / "static" / "hello.txt").write_text(STATIC_BODY)
        (self.app / "runtime.txt").write_text(f"python-{self.bench.version}\n")
        if not self.cache.exists():  # --part serving: no compile rows before
            self.bench.seed_tools(self.cache)
        timed([str(BP / "bin" / "compile"), str(self.app), str(self.cache)], cwd=self.app, env=self.bench.env)

    def dcweb(self, log: str = "dcweb", **extra: str) -> Server:
        env = {"HOME": str(self.app), "PORT": str(free_port()), "TMPDIR": str(self.tmpdir), "PATH": "/usr/bin:/bin",
               "LANG": "C.UTF-8", **extra}
        command = 'for f in .profile.d/*.sh; do . "$f"; done; exec bin/dcweb'
        return Server(["bash", "-c", command], self.app, env, self.work / f"{log}.log")

    def our_nginx_workers(self) -> int:
        for conf in self.tmpdir.glob("dcweb.*/nginx.conf"):
            m = re.search(r"^\s*worker_processes\s+(\d+)\s*;", conf.read_text(), re.M)
            if m:
                return int(m.group(1))
        sys.exit("bench: cannot read worker_processes from the running web process's nginx.conf")

    def gunicorn(self) -> Server:
        venv = self.work / "gunicorn-venv"
        if not venv.exists():
            env = dict(self.bench.env, PIP_CONFIG_FILE=os.devnull)
            run([str(self.bench.local.executable), "-m", "venv", str(venv)], env=env, capture_output=True)
            run([str(venv / "bin" / "pip"), "install", "--quiet", "gunicorn==23.0.0"], env=env, capture_output=True)
        port = free_port()
        argv = [str(venv / "bin" / "gunicorn"), "--workers", "4", "--worker-class", "sync", "--bind",
                f"127.0.0.1:{port}", "--chdir", str(self.app), "wsgi:application"]
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PORT": str(port)}
        return Server(argv, self.app, env, self.work / "gunicorn.log")

    def ceiling(self, workers: int) -> Server:
        """nginx `return 200` with the vendored binary: the same workers as ours, no app, no log."""
        d = self.work / "ceiling"
        d.mkdir(exist_ok=True)
        port = free_port()
        user = ""
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            user = f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};"
        (d / "nginx.conf").write_text(f"""\
daemon off;
{user}
worker_processes {workers};
pid {d}/nginx.pid;
error_log stderr;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/client-body;
    proxy_temp_path {d}/proxy;
    uwsgi_temp_path {d}/uwsgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok\\n"; }}
    }}
}}
""")
        nginx = self.app / ".dotcloud" / "nginx" / "bin" / "nginx"
        return Server([str(nginx), "-p", f"{d}/", "-e", "stderr", "-c", str(d / "nginx.conf")], d,
                      {"PATH": "/usr/bin:/bin", "PORT": str(port)}, self.work / "ceiling.log", stop=signal.SIGQUIT)

    def measure(self) -> tuple[dict[str, list[dict[str, float]]], list[float], int]:
        """Every server up at once, then ROUNDS rounds of one wrk run per row, in turn: a ratio
        is taken between runs seconds apart, not minutes (this machine's speed drifts by 20-30%
        from one minute to the next). An idle server costs the others nothing."""
        ensure_wrk()
        self.compile()
        loads: dict[str, list[dict[str, float]]] = {}
        # The defaults before the serving work (dotCloud's 4 processes, uWSGI's request log on),
        # for comparison; the access log stays buffered (not switchable).
        with self.dcweb() as web, self.dcweb("old", WEB_CONCURRENCY="4", UWSGI_DISABLE_LOGGING="false") as old, \
                self.gunicorn() as g:
            for server in (web, old, g):
                server.ready()
            workers = self.our_nginx_workers()
            if get(web.port, "/static/hello.txt") != 200:
                sys.exit("bench: /static/hello.txt is not served")
            with self.ceiling(workers) as c:
                c.ready()
                rows = {"dynamic": (web, "/"), "static": (web, "/static/hello.txt"), "old": (old, "/"),
                        "gunicorn": (g, "/"), "ceiling": (c, "/")}
                for _ in range(ROUNDS):
                    for key, (server, path) in rows.items():
                        loads.setdefault(key, []).append(wrk(server.port, path, server.proc.pid))
            found = re.findall(r"uWSGI processes: (\d+)", web.log.read_text(errors="replace"))
            loads["dynamic"][0]["processes"] = float(found[0]) if found else float("nan")
        starts = []
        for _ in range(STARTS):
            with self.dcweb() as web:
                starts.append(web.ready())
        return loads, starts, workers


def serving_tables(loads: dict[str, list[dict[str, float]]], starts: list[float], workers: int, slug: Path) -> str:
    def ratio(a: str, b: str) -> str:
        """The median of the rounds' ratios, and their range."""
        each = [x["rps"] / y["rps"] for x, y in zip(loads[a], loads[b])]
        return f"{statistics.median(each):.2f}x {b} ({min(each):.2f}-{max(each):.2f})"

    def median(key: str, field: str) -> float:
        return statistics.median(run[field] for run in loads[key])

    rows = [
        ("dynamic", f"`/` through nginx -> uWSGI (ours, {loads['dynamic'][0]['processes']:.0f} processes by default)",
         f"{ratio('dynamic', 'gunicorn')}, target >= 3; {ratio('dynamic', 'ceiling')}"),
        ("old", "`/`, 4 processes, uWSGI's request log on (the old uWSGI defaults)",
         f"{ratio('old', 'gunicorn')}; ours is {ratio('dynamic', 'old').replace('x old', 'x this')}"),
        ("static", "`/static/hello.txt` through nginx (ours)", f"{ratio('static', 'ceiling')}, target >= 0.6"),
        ("gunicorn", "`/` under gunicorn, 4 sync workers", ""),
        ("ceiling", f"nginx `return 200`, {workers} workers, no log (ceiling)", ""),
    ]
    out = [f"wrk {' '.join(WRK)} on 127.0.0.1, after a 1 s warm-up each; {ROUNDS} rounds, the rows in turn"
           " in each. Medians over the rounds; a ratio is the median of the rounds' ratios (their range in"
           " brackets).", "",
           "| what | requests/s | p50 ms | p99 ms | errors | server CPU us/request | ratio |",
           "|---|---|---|---|---|---|---|"]
    for key, label, note in rows:
        errors = sum(run["errors"] for run in loads[key])
        out.append(f"| {label} | {median(key, 'rps'):.0f} | {median(key, 'p50'):.2f} | {median(key, 'p99'):.2f}"
                   f" | {errors:.0f} | {median(key, 'cpu_us'):.0f} | {note} |")
    tgz = len(subprocess.run(["tar", "-czf", "-", "-C", str(slug), "."], capture_output=True, check=True).stdout)
    out += ["", "| first 200 after starting bin/dcweb (median of 5) | min | max | slug MB | slug .tar.gz MB |",
            "|---|---|---|---|---|",
            f"| {statistics.median(starts):.2f} s (target <= 1.5) | {min(starts):.2f} s | {max(starts):.2f} s"
            f" | {du(slug) / 1e6:.0f} | {tgz / 1e6:.0f} |"]
    return "\n".join(out)


def du(path: Path) -> int:
    return int(run(["du", "-sb", str(path)], capture_output=True, text=True).stdout.split()[0])


def main() -> int:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--python", default=None, help="X.Y.Z of a local CPython (default: newest 3.12)")
    parser.add_argument("--part", choices=["all", "compile", "serving"], default="all")
    parser.add_argument("--against", type=Path, default=None,
                        help="another checkout of the buildpack (e.g. a git worktree of the last release): its"
                             " compile figures are measured in the same run, each build right after ours")
    args = parser.parse_args()
    locals_ = localpython.find_local()
    pick = [lp for lp in locals_ if str(lp.version) == args.python] if args.python else \
        [lp for lp in locals_ if lp.version.line == (3, 12)] or locals_
    if not pick:
        sys.exit("bench: no local CPython to package")
    with tempfile.TemporaryDirectory(prefix="dcbench-") as tmp:
        os.chmod(tmp, 0o755)  # as root, nginx's workers run as nobody and must reach the slug
        bench = Bench(Path(tmp), pick[0].version)
        print(f"Python {bench.version} from a local mirror; packages from a local index; nginx vendored.")
        bench.prepare()
        rows = []
        against = []
        for app, label in (APPS if args.part != "serving" else {}).items():
            plain = bench.plain(app)
            for engine in ENGINES:  # the sample's uv cache (cache-sample) is the one serving uses
                cache = Path(tmp) / (f"cache-{app}" if engine == "uv" else f"cache-{app}-{engine}")
                other = Path(tmp) / f"against-{app}-{engine}"
                trees = [(BP, cache, "", rows)] + ([(args.against.resolve(), other, "against-", against)]
                                                   if args.against else [])
                figures: dict[Path, list[float]] = {bp: [] for bp, *_ in trees}
                # Each step for both trees in turn, so that the machine's drift hits both alike.
                for bp, where, tag, _rows in trees:
                    figures[bp].append(bench.compile(app, where, f"{tag}{engine}-cold", engine=engine, bp=bp))
                for i in range(WARM_RUNS):
                    for bp, where, tag, _rows in trees:
                        figures[bp].append(bench.compile(app, where, f"{tag}{engine}-warm{i}", engine=engine, bp=bp))
                for bp, where, tag, _rows in trees:
                    figures[bp].append(bench.compile(app, where, f"{tag}{engine}-changed", bump=True, engine=engine,
                                                     bp=bp))
                for bp, _where, tag, out in trees:
                    cold, *warms, changed = figures[bp]
                    # A warm build is short and the machine's speed drifts: the median of three.
                    size = du(Path(tmp) / f"{app}-{tag}{engine}-warm0")
                    out.append((label, engine, cold, statistics.median(warms), changed, plain, size))
        if rows:
            print_compile_table(rows)
        if against:
            print(f"The same, with {args.against}:")
            print_compile_table(against)
            print_against(rows, against)
        if args.part != "compile":
            serving = Serving(bench, Path(tmp) / "cache-sample")
            loads, starts, workers = serving.measure()
            print(serving_tables(loads, starts, workers, serving.app))
    return 0


def print_against(rows, against) -> None:
    """Ours over the other tree's, figure by figure (below 1: ours is faster)."""
    print("| app | installer | cold ours/against | warm ours/against | one pin changed ours/against |")
    print("|---|---|---|---|---|")
    for ours, theirs in zip(rows, against):
        label, engine, cold, warm, changed = ours[:5]
        print(f"| {label} | {engine} | {cold / theirs[2]:.2f} | {warm / theirs[3]:.2f} | {changed / theirs[4]:.2f} |")
    print(flush=True)


def print_compile_table(rows) -> None:
    print()
    print(f"| app | installer | cold s | warm s (median of {WARM_RUNS}) | warm/cold | one pin changed s | changed/cold"
          " | venv+pip s | cold/plain | slug MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, engine, cold, warm, changed, plain, size in rows:
        print(f"| {label} | {engine} | {cold:.2f} | {warm:.2f} | {warm / cold:.2f} | {changed:.2f}"
              f" | {changed / cold:.2f} | {plain:.2f} | {cold / plain:.2f} | {size / 1e6:.0f} |")
    by = {(label, engine): (cold, changed) for label, engine, cold, _w, changed, _p, _s in rows}
    print()
    print("| app | cold uv/pip | one pin changed uv/pip |")
    print("|---|---|---|")
    for label in dict.fromkeys(r[0] for r in rows):
        if (label, "uv") in by and (label, "pip") in by:
            (cu, chu), (cp, chp) = by[(label, "uv")], by[(label, "pip")]
            print(f"| {label} | {cu / cp:.2f} | {chu / chp:.2f} |")
    print(flush=True)


if __name__ == "__main__":
    sys.exit(main())
