"""Package a CPython installed on this machine as a relocatable runtime archive.

For builds that can reach neither the mirror nor python-build-standalone's releases (CI
without a route to GitHub): a pyenv-style CPython (built with ``--enable-shared``, so its
``bin/python3.X`` has an absolute RUNPATH to ``PREFIX/lib``) is copied without its
site-packages, tests and static library, its RUNPATHs are made ``$ORIGIN``-relative, its
build configuration is given the ``/install`` placeholder prefix (see ``relocate``), pip is
installed into it with its own interpreter, and the result is written as a ``.tar.gz`` laid
out like python-build-standalone's ``install_only`` archives: one top directory ``python/``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import log, relocate, tools
from .versions import Version

ENV_VAR = "DC_LOCAL_PYTHONS"
# Distro Pythons live here, in a layout (dist-packages, /usr/lib/python3/) that cannot move.
SYSTEM_PREFIXES = (Path("/usr"),)
_EXE_NAME = re.compile(r"python3\.(\d+)")
_PROBE = (
    "import json, sys, sysconfig\n"
    "print(json.dumps({'implementation': sys.implementation.name,"
    " 'version_info': list(sys.version_info[:4]), 'base_prefix': sys.base_prefix,"
    " 'executable': sys.executable, 'prefix': sysconfig.get_config_var('prefix'),"
    " 'gil_disabled': bool(sysconfig.get_config_var('Py_GIL_DISABLED')),"
    " 'abiflags': getattr(sys, 'abiflags', '')}))\n"
)
# Test suites and host-specific files that a runtime does not ship (relative to lib/python3.X).
_STDLIB_SKIP_DIRS = {
    "test",
    "idlelib/idle_test",
    "tkinter/test",
    "ctypes/test",
    "sqlite3/test",
    "unittest/test",
    "lib2to3/tests",
    "distutils/tests",
}
_BIN_NAMES = re.compile(r"(python|pydoc|idle|2to3).*")


@dataclass(frozen=True)
class LocalPython:
    version: Version
    prefix: Path
    executable: Path


def _is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment minus everything that steers Python or pip from outside."""
    drop = ("PYTHON", "PIP_", "VIRTUAL_ENV", "CONDA_", "__PYVENV_LAUNCHER__", "PYENV_VERSION", "ENSUREPIP_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra or {})
    return env


def _probe(exe: Path) -> dict | None:
    try:
        proc = subprocess.run(
            [str(exe), "-I", "-S", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=20,
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    try:
        return json.loads(proc.stdout)
    except ValueError:
        return None


def _exe_in_prefix(prefix: Path) -> Path | None:
    """The newest ``bin/python3.X`` binary of an install prefix."""
    bindir = prefix / "bin"
    best: tuple[int, Path] | None = None
    try:
        entries = list(bindir.iterdir())
    except OSError:
        return None
    for path in entries:
        m = _EXE_NAME.fullmatch(path.name)
        if m and (best is None or int(m.group(1)) > best[0]) and _is_elf(path.resolve()):
            best = (int(m.group(1)), path)
    if best is None and _is_elf((bindir / "python3").resolve()):
        return bindir / "python3"
    return best[1] if best else None


def _candidates() -> Iterable[Path]:
    """Executables worth asking, in no particular order, maybe repeated."""
    for entry in filter(None, os.environ.get(ENV_VAR, "").split(os.pathsep)):
        path = Path(entry).expanduser()
        if path.is_dir():
            exe = _exe_in_prefix(path)
            if exe:
                yield exe
        elif path.is_file():
            yield path
    roots = [Path(os.environ["PYENV_ROOT"])] if os.environ.get("PYENV_ROOT") else []
    roots.append(Path.home() / ".pyenv")
    for root in roots:
        try:
            versions = sorted((root / "versions").iterdir())
        except OSError:
            continue
        for prefix in versions:
            if prefix.is_dir() and not (prefix / "pyvenv.cfg").exists():
                exe = _exe_in_prefix(prefix)
                if exe:
                    yield exe
    for directory in filter(None, os.environ.get("PATH", "").split(os.pathsep)):
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            if _EXE_NAME.fullmatch(name):
                yield Path(directory) / name


def inspect(path: Path, probe: Callable[[Path], dict | None] = _probe) -> LocalPython | None:
    """The CPython at ``path`` (an executable or a prefix), or None if it is not one we can use."""
    path = Path(path)
    if path.is_dir():
        found = _exe_in_prefix(path)
        if found is None:
            return None
        path = found
    exe = path.resolve()
    if not _is_elf(exe):  # a pyenv shim or another wrapper script
        return None
    info = probe(exe)
    if not info or info.get("implementation") != "cpython":
        return None
    if info.get("gil_disabled") or "t" in (info.get("abiflags") or ""):
        return None
    major, minor, micro, level = info["version_info"]
    if level != "final" or major != 3:
        return None
    prefix = Path(info["base_prefix"]).resolve()
    if prefix in SYSTEM_PREFIXES or exe.parent != prefix / "bin":
        return None
    return LocalPython(Version(major, minor, micro), prefix, exe)


def _signature(exe: Path) -> list[int]:
    st = exe.stat()
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def find_local(memo: Path | None = None) -> list[LocalPython]:
    """Usable local CPythons, newest first, one per install prefix.

    With ``memo`` (a JSON file), an interpreter whose executable is unchanged (inode, size,
    mtime) is not asked again: a warm build should not start a dozen interpreters.
    """
    exes: dict[Path, None] = {}
    for candidate in _candidates():
        exe = candidate.resolve()
        # /usr/bin holds the distro's Pythons (prefix /usr): not worth a process to ask.
        if exe not in exes and exe.parent != Path("/usr/bin") and _is_elf(exe):
            exes[exe] = None
    known: dict = {}
    if memo is not None:
        try:
            known = json.loads(memo.read_text())
        except (OSError, ValueError):
            known = {}
    seen: dict[str, dict] = {}

    def probe(exe: Path) -> dict | None:
        try:
            sig = _signature(exe)
        except OSError:
            return None
        hit = known.get(str(exe)) if isinstance(known, dict) else None
        info = hit["info"] if isinstance(hit, dict) and hit.get("sig") == sig else _probe(exe)
        seen[str(exe)] = {"sig": sig, "info": info}
        return info

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda exe: inspect(exe, probe), exes))
    if memo is not None and seen != known:
        try:
            tmp = memo.with_name(f"{memo.name}.tmp.{os.getpid()}")
            tmp.write_text(json.dumps(seen, sort_keys=True))
            os.replace(tmp, memo)
        except OSError:
            pass  # a read-only cache only costs the probes
    found: dict[Path, LocalPython] = {}
    for local in results:
        if local and local.prefix not in found:
            found[local.prefix] = local
    return sorted(found.values(), key=lambda lp: (lp.version, str(lp.prefix)), reverse=True)


# --- packaging ---------------------------------------------------------------------------


def _skip(rel: str, name: str, is_dir: bool, stdlib: str) -> bool:
    """Whether ``rel/name`` (relative to the prefix) stays out of the runtime."""
    if name == "__pycache__" or (not is_dir and name.endswith(".pth")):
        return True
    std = f"lib/{stdlib}"
    if rel == f"{std}/site-packages":
        return True  # the directory itself is kept, empty
    if rel == std or rel.startswith(std + "/"):
        sub = (rel + "/" + name)[len(std) + 1 :]
        if is_dir and sub in _STDLIB_SKIP_DIRS:
            return True
        if not is_dir and sub.startswith("config-") and name.startswith("libpython") and name.endswith(".a"):
            return True
    return False


def _top_level(prefix: Path, stdlib: str) -> list[str]:
    """The prefix-relative paths that belong to Python itself (not the host's other tools)."""
    chosen = []
    for sub, pattern in (
        ("bin", _BIN_NAMES),
        ("include", re.compile(re.escape(stdlib) + r".*")),
        ("lib", re.compile(re.escape(stdlib) + r"|libpython3.*")),
        ("lib/pkgconfig", re.compile(r"python.*\.pc")),
    ):
        try:
            names = sorted(os.listdir(prefix / sub))
        except OSError:
            continue
        chosen += [f"{sub}/{n}" for n in names if pattern.fullmatch(n)]
    return chosen


def _copy_entry(src: Path, dst: Path, prefix: Path) -> None:
    if src.is_symlink():
        target = os.readlink(src)
        if os.path.isabs(target):
            real = Path(os.path.realpath(src))
            if not real.exists():
                return  # dangling: nothing to ship
            if real == prefix or prefix in real.parents:
                target = os.path.relpath(real, src.parent.resolve())
            else:
                shutil.copy2(src, dst)  # follows the link: the runtime must not depend on it
                return
        os.symlink(target, dst)
        return
    shutil.copy2(src, dst, follow_symlinks=False)
    mode = dst.lstat().st_mode
    os.chmod(dst, mode | 0o200)  # patchelf and the prefix rewrite need to write


def _copy_prefix(prefix: Path, dest: Path, stdlib: str) -> None:
    dest.mkdir()
    for rel in _top_level(prefix, stdlib):
        src = prefix / rel
        dst = dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink() or not src.is_dir():
            if not _skip(os.path.dirname(rel), src.name, False, stdlib):
                _copy_entry(src, dst, prefix)
            continue
        for dirpath, dirnames, filenames in os.walk(src):
            here = os.path.relpath(dirpath, prefix)
            os.makedirs(dest / here, exist_ok=True)
            shutil.copymode(dirpath, dest / here)
            keep_dirs = []
            for name in sorted(dirnames):
                full = Path(dirpath, name)
                if _skip(here, name, True, stdlib):
                    continue
                if full.is_symlink():
                    _copy_entry(full, dest / here / name, prefix)
                else:
                    keep_dirs.append(name)
            dirnames[:] = keep_dirs
            if here == f"lib/{stdlib}/site-packages":
                continue
            for name in sorted(filenames):
                if not _skip(here, name, False, stdlib):
                    _copy_entry(Path(dirpath, name), dest / here / name, prefix)
        site = dest / "lib" / stdlib / "site-packages"
        if rel == f"lib/{stdlib}":
            site.mkdir(exist_ok=True)


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        raise log.BuildError(f"{what} failed (exit status {proc.returncode})", *tail)
    return proc.stdout


def _elf_files(root: Path, stdlib: str) -> list[Path]:
    """The staged ELF files that may carry a search path: interpreters, libpython, extensions."""
    candidates = list((root / "bin").iterdir())
    candidates += (root / "lib").glob("libpython3*.so*")
    candidates += (root / "lib" / stdlib / "lib-dynload").glob("*.so")
    return sorted(p for p in candidates if not p.is_symlink() and p.is_file() and _is_elf(p))


def _new_rpath(path: Path, current: str, root: Path, old_prefixes: list[str], needs_libpython: bool) -> list[str]:
    entries = [e for e in current.split(":") if e]
    new_entries: list[str] = []
    for entry in entries:
        for old in old_prefixes:
            if entry == old or entry.startswith(old + "/"):
                rel = os.path.relpath(root / os.path.relpath(entry, old), path.parent)
                entry = "$ORIGIN" if rel == "." else f"$ORIGIN/{rel}"
                break
        if entry not in new_entries:
            new_entries.append(entry)
    if needs_libpython and "$ORIGIN/../lib" not in new_entries:
        new_entries.insert(0, "$ORIGIN/../lib")
    return new_entries


def _fix_rpaths(patchelf: str, root: Path, old_prefixes: list[str], stdlib: str) -> int:
    """Turn RUNPATH entries under the old prefix into ``$ORIGIN``-relative ones; return how many files."""
    groups: dict[str, list[str]] = {}
    for path in _elf_files(root, stdlib):
        data = path.read_bytes()
        in_bin = path.parent == root / "bin"
        if not any(p.encode() in data for p in old_prefixes) and not (in_bin and b"libpython" in data):
            continue
        current = _run([patchelf, "--print-rpath", str(path)], f"patchelf --print-rpath {path.name}").strip()
        needs_libpython = False
        if in_bin and b"libpython" in data:
            needed = _run([patchelf, "--print-needed", str(path)], f"patchelf --print-needed {path.name}")
            needs_libpython = "libpython" in needed
        new = _new_rpath(path, current, root, old_prefixes, needs_libpython)
        if ":".join(new) != current:
            groups.setdefault(":".join(new), []).append(str(path))
    for rpath, paths in groups.items():
        _run([patchelf, "--set-rpath", rpath, *paths], "patchelf --set-rpath")
    return sum(len(p) for p in groups.values())


def _strip_debug(root: Path, stdlib: str) -> None:
    """Drop debug information (pyenv builds keep it: 30 MB in libpython alone), if strip exists."""
    strip = shutil.which("strip")
    files = [str(p) for p in _elf_files(root, stdlib)]
    if strip and files:
        _run([strip, "--strip-debug", *files], "strip --strip-debug")


def _install_pip(root: Path, python: Path, stdlib: str) -> None:
    """Install pip, alone, into the staged tree with the staged interpreter.

    What ``ensurepip --default-pip`` does, from the same bundled wheel, run directly: that
    skips ensurepip's byte-compiling of pip (seconds; pip compiles what it imports when it
    first runs) and the setuptools that ensurepip adds up to Python 3.11.
    """
    env = _clean_env(
        {
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
            "PYTHONNOUSERSITE": "1",
        }
    )
    site = root / "lib" / stdlib / "site-packages"
    wheels = sorted((root / "lib" / stdlib / "ensurepip" / "_bundled").glob("pip-*.whl"))
    if wheels:
        wheel = str(wheels[-1])
        cmd = [str(python), "-I", f"{wheel}/pip", "install", "--no-index", "--no-cache-dir"]
        _run([*cmd, "--no-warn-script-location", "--quiet", wheel], "Installing pip", env)
    else:
        _run([str(python), "-I", "-m", "ensurepip", "--default-pip"], "ensurepip", env)
        if (site / "setuptools").exists():
            _run([str(python), "-I", "-m", "pip", "uninstall", "-y", "-q", "setuptools"], "pip uninstall", env)
    if not (root / "bin" / "pip3").exists():
        raise log.BuildError("Installing pip failed", f"No pip3 in {root / 'bin'}.")


def _compile_stdlib(root: Path, python: Path, stdlib: str) -> None:
    """Byte-compile the standard library, as ``make install`` (and python-build-standalone) do:
    without it every interpreter start of a build compiles what pip imports, again and again."""
    std = root / "lib" / stdlib
    _run([str(python), "-I", "-m", "compileall", "-q", "-j0", "-x", r"/(test|tests|idle_test)/",
          str(std)], "Compiling the standard library", _clean_env())


def _link(path: Path, target: str) -> None:
    if path.is_symlink() and os.readlink(path) == target:
        return
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, path)


def _tar_filter(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_tar(root: Path, tmp: Path) -> str:
    with tarfile.open(tmp, "w:gz", compresslevel=6, format=tarfile.PAX_FORMAT) as tar:
        tar.add(root, arcname="python", filter=_tar_filter)
    digest = hashlib.sha256()
    with tmp.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package(local: LocalPython, out: Path, cache: Path | None = None) -> str:
    """Write ``local`` as a relocatable ``install_only``-style archive at ``out``; return its sha256."""
    patchelf = tools.patchelf(cache)
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    prefix = Path(local.prefix)
    stdlib = f"python{local.version.major}.{local.version.minor}"
    if not (prefix / "lib" / stdlib / "os.py").is_file():
        raise log.BuildError(f"{prefix} does not look like a CPython {local.version} prefix", f"No lib/{stdlib}/os.py.")
    info = _probe(Path(local.executable)) or {}
    old_prefixes = []
    for p in (info.get("prefix"), str(prefix), os.path.realpath(prefix)):
        if p and p.rstrip("/") not in old_prefixes:
            old_prefixes.append(p.rstrip("/"))
    tmp = out.with_name(out.name + f".tmp.{os.getpid()}")
    stage = Path(tempfile.mkdtemp(prefix=".localpython-", dir=out.parent))
    try:
        root = stage / "python"
        _copy_prefix(prefix, root, stdlib)
        python = root / "bin" / stdlib
        if not _is_elf(python):
            raise log.BuildError(f"{prefix} has no bin/{stdlib} interpreter binary")
        _strip_debug(root, stdlib)
        _fix_rpaths(patchelf, root, old_prefixes, stdlib)
        for old in old_prefixes:
            relocate.rewrite_prefix(root, old, relocate.PLACEHOLDER)
        _install_pip(root, python, stdlib)
        relocate.make_scripts_relocatable(root)
        _link(root / "bin" / "python3", stdlib)
        _link(root / "bin" / "python", stdlib)
        _compile_stdlib(root, python, stdlib)
        sha256 = _write_tar(root, tmp)
        os.replace(tmp, out)
        return sha256
    finally:
        tmp.unlink(missing_ok=True)
        shutil.rmtree(stage, ignore_errors=True)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dcbuild.localpython", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the usable local CPythons, newest first")
    pack = sub.add_parser("package", help="write a relocatable runtime archive; print its sha256")
    pack.add_argument("python", type=Path, help="install prefix or interpreter")
    pack.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "list":
        for local in find_local():
            print(f"{local.version} {local.prefix}")
        return 0
    local = inspect(args.python)
    if local is None:
        raise log.BuildError(
            f"{args.python} is not a usable CPython",
            "Give the prefix or bin/python3.X of a CPython 3 installed outside /usr (pyenv's, say).",
            "'python3 -m dcbuild.localpython list' shows the ones found.",
        )
    print(package(local, args.out))
    return 0


if __name__ == "__main__":
    log.main(_main)
