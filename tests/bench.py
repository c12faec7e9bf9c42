"""`make bench`: compile and serving figures, measured side by side in one run.

Not a test: it prints a table. Everything runs on this machine, offline from the network:
the runtime comes from a local mirror, packages from a local index built once per run
(so timings exclude the registry), nginx is vendored beforehand by `make vendor`.
"""

from __future__ import annotations

import argparse
import html
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BP / "lib"))

from dcbuild import localpython, manifest  # noqa: E402

APPS = {"sample": "sample (1 package)", "bench_large": "larger (5 pins, 20 packages)"}
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

    def compile(self, app: str, cache: Path, tag: str, bump: bool = False) -> float:
        build = self.work / f"{app}-{tag}"
        shutil.copytree(FIXTURE / app, build)
        if bump:
            req = build / "requirements.txt"
            old, new = BUMP[app]
            req.write_text(req.read_text().replace(old, new))
        (build / "runtime.txt").write_text(f"python-{self.version}\n")
        return timed([str(BP / "bin" / "compile"), str(build), str(cache)], cwd=build, env=self.env)

    def plain(self, app: str) -> float:
        venv = self.work / f"{app}-venv"
        env = dict(self.env, PIP_CONFIG_FILE=os.devnull)
        start = time.perf_counter()
        run([str(self.local.executable), "-m", "venv", str(venv)], env=env, capture_output=True)
        run([str(venv / "bin" / "pip"), "install", "--quiet", "-r", str(FIXTURE / app / "requirements.txt")],
            env=env, capture_output=True)
        return time.perf_counter() - start


FIXTURE = BP / "test" / "fixtures"


def du(path: Path) -> int:
    return int(run(["du", "-sb", str(path)], capture_output=True, text=True).stdout.split()[0])


def main() -> int:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--python", default=None, help="X.Y.Z of a local CPython (default: newest 3.12)")
    args = parser.parse_args()
    locals_ = localpython.find_local()
    pick = [lp for lp in locals_ if str(lp.version) == args.python] if args.python else \
        [lp for lp in locals_ if lp.version.line == (3, 12)] or locals_
    if not pick:
        sys.exit("bench: no local CPython to package")
    with tempfile.TemporaryDirectory(prefix="dcbench-") as tmp:
        bench = Bench(Path(tmp), pick[0].version)
        print(f"Python {bench.version} from a local mirror; packages from a local index; nginx vendored.")
        bench.prepare()
        rows = []
        for app, label in APPS.items():
            cache = Path(tmp) / f"cache-{app}"
            cold = bench.compile(app, cache, "cold")
            warm = bench.compile(app, cache, "warm")
            changed = bench.compile(app, cache, "changed", bump=True)
            plain = bench.plain(app)
            size = du(Path(tmp) / f"{app}-warm")
            rows.append((label, cold, warm, changed, plain, size))
        print()
        print("| app | cold s | warm s | warm/cold | one pin changed s | changed/cold | venv+pip s |"
              " cold/plain | slug MB |")
        print("|---|---|---|---|---|---|---|---|---|")
        for label, cold, warm, changed, plain, size in rows:
            print(f"| {label} | {cold:.2f} | {warm:.2f} | {warm / cold:.2f} | {changed:.2f} | {changed / cold:.2f}"
                  f" | {plain:.2f} | {cold / plain:.2f} | {size / 1e6:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
