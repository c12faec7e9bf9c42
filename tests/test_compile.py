"""Real builds: bin/compile as a subprocess on fixture apps, then the slug's own tools run.

Runtimes come from local CPythons packaged by the buildpack (CI has no route upstream),
or from a file:// mirror the test makes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import copy_fixture, local_line, run_compile
from dcbuild import manifest
from dcbuild.versions import Version

pytestmark = pytest.mark.slow


def slug_run(app: Path, command: str, home: Path | None = None, **kw) -> subprocess.CompletedProcess:
    """Run a shell command the way a platform runs a process: .profile.d sourced, cwd = app."""
    home = home or app
    script = 'set -eo pipefail; for f in "$HOME"/.profile.d/*.sh; do . "$f"; done; ' + command
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    return subprocess.run(["bash", "-c", script], cwd=home, env=env, capture_output=True, text=True, **kw)


def assert_clean_failure(build) -> None:
    assert build.returncode != 0, build
    assert " !     Error: " in build.stderr, build
    assert "Traceback" not in build.output, build


def test_sample_app_builds_with_default_python(tmp_path, runtimes):
    app = copy_fixture("sample", tmp_path / "app")
    build = run_compile(app, tmp_path / "cache")
    assert build.returncode == 0, build
    assert "-----> Installing dotCloud requirements (config/dcrequirements.txt)" in build.stdout
    assert "-----> Installing requirements with uv (requirements.txt)" in build.stdout
    # Offline and with no 3.14 here: the newest local interpreter, and a warning that says so.
    assert "Upstream is unreachable" in build.stderr
    res = slug_run(app, "python3 -c 'import wsgi, itsdangerous, sys; print(sys.prefix)'")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(app / ".dotcloud" / "python")


def test_python_version_file(tmp_path, runtimes, py312):
    app = copy_fixture("pyversion_312", tmp_path / "app")
    cache = runtimes.seed(tmp_path / "cache", py312)
    build = run_compile(app, cache)
    assert build.returncode == 0, build
    assert f"Python {py312} (.python-version:2)" in build.stdout
    res = slug_run(app, "python3 --version")
    assert res.stdout.strip() == f"Python {py312}"


@pytest.mark.parametrize("line", [(3, 11), (3, 13)], ids=["3.11", "3.13"])
def test_two_minor_versions_end_to_end(tmp_path, runtimes, line):
    version = local_line(line)
    if version is None:
        pytest.skip(f"no local CPython {line[0]}.{line[1]}")
    app = copy_fixture("sample", tmp_path / "app")
    (app / "runtime.txt").write_text(f"python-{version}\n")
    build = run_compile(app, runtimes.seed(tmp_path / "cache", version))
    assert build.returncode == 0, build
    assert f"Python {version} (runtime.txt:1)" in build.stdout
    res = slug_run(app, "python3 -c 'import sys, wsgi; print(sys.version.split()[0])' && uwsgi --version"
                        " && supervisord --version")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [str(version), "2.0.30", "4.3.0"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("python-3.10.13", "runtime.txt:1: Python 'python-3.10.13' is not supported"),
        ("python-3.12.99", "runtime.txt:1: Python 3.12.99 is not a known release"),
        ("pyhton-3.12", "runtime.txt:1: 'pyhton-3.12' is not a Python version"),
    ],
)
def test_bad_runtime_txt(tmp_path, text, fragment):
    app = copy_fixture("sample", tmp_path / "app")
    (app / "runtime.txt").write_text(text + "\n")
    cache = tmp_path / "cache"
    build = run_compile(app, cache)
    assert_clean_failure(build)
    assert fragment in build.stderr
    assert not (app / ".dotcloud").exists()
    # Nothing but the bytecode of the buildpack's own modules (pycache, see dcbuild.slug).
    assert not [p for p in (cache / "python-dotcloud").glob("*/*") if p.parent.name != "pycache"]


def _newest_manifest_row(line):
    rows = manifest.rows_for(manifest.current_platform())
    return rows[max(v for v in rows if v.line == line)]


def test_mirror_with_wrong_checksum(tmp_path):
    row = _newest_manifest_row((3, 12))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / row.filename).write_bytes(b"not the archive the manifest names\n")
    app = copy_fixture("sample", tmp_path / "app")
    (app / "runtime.txt").write_text(f"python-{row.version}\n")
    cache = tmp_path / "cache"
    build = run_compile(app, cache, PYTHON_MIRROR=mirror.as_uri())
    assert_clean_failure(build)
    assert f"Checksum mismatch for {row.filename}" in build.stderr
    assert row.sha256 in build.stderr
    runtimes_dir = cache / "python-dotcloud" / "runtimes"
    assert not runtimes_dir.exists() or not any(runtimes_dir.iterdir())


def test_mirror_serves_the_runtime(tmp_path, runtimes, py312):
    """A file:// mirror and a manifest of its own (PYTHON_MANIFEST), as an air-gapped site has."""
    archive = runtimes.ensure(py312)
    sha = archive.with_name(archive.name + ".sha256").read_text().split()[0]
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(archive, mirror / f"cpython-{py312}-site.tar.gz")
    table = tmp_path / "manifest.tsv"
    table.write_text("\t".join(manifest.HEADER) + "\n"
                     f"{py312}\t{manifest.current_platform()}\thttps://example.invalid/cpython-{py312}-site.tar.gz\t{sha}\n")
    app = copy_fixture("sample", tmp_path / "app")
    (app / "runtime.txt").write_text(f"python-{py312}\n")
    build = run_compile(app, tmp_path / "cache", PYTHON_MIRROR=str(mirror), PYTHON_MANIFEST=str(table))
    assert build.returncode == 0, build
    assert f"Downloading {mirror.as_uri()}/cpython-{py312}-site.tar.gz" in build.stdout
    assert slug_run(app, "python3 --version").stdout.strip() == f"Python {py312}"


def test_broken_requirement(tmp_path, runtimes):
    app = copy_fixture("requirements_invalid", tmp_path / "app")
    cache = tmp_path / "cache"
    build = run_compile(app, cache)
    assert_clean_failure(build)
    assert "this-package-does-not-exist-dcbp was not found in the package registry" in build.output  # uv's own
    assert "Failed requirement: this-package-does-not-exist-dcbp==1.0 (requirements.txt:2)" \
        in build.stderr
    layers = cache / "python-dotcloud" / "layers"
    assert not [p.name for p in layers.iterdir() if p.name.startswith("userreqs-") or ".tmp." in p.name]


def test_app_requirements_override_dcreqs_pin(tmp_path, runtimes):
    app = copy_fixture("requirements_override", tmp_path / "app")
    build = run_compile(app, tmp_path / "cache")
    assert build.returncode == 0, build
    res = slug_run(app, "supervisord --version && uwsgi --version")
    assert res.stdout.split() == ["4.2.5", "2.0.30"], res.stderr


def test_nested_requirement_files_are_part_of_the_key(tmp_path, runtimes):
    app = copy_fixture("requirements_nested", tmp_path / "app")
    cache = tmp_path / "cache"
    assert run_compile(app, cache).returncode == 0
    check = "python3 -c 'import importlib.metadata as m; print(m.version(\"six\"))'"
    assert slug_run(app, check).stdout.strip() == "1.16.0"
    app2 = copy_fixture("requirements_nested", tmp_path / "app2")
    (app2 / "requirements" / "constraints.txt").write_text("six==1.17.0\n")
    build = run_compile(app2, cache)
    assert build.returncode == 0, build
    assert "Installing requirements with uv" in build.stdout
    assert slug_run(app2, check).stdout.strip() == "1.17.0"


@pytest.mark.skipif(os.geteuid() != 0, reason="hiding the original interpreter needs root (unshare --mount)")
def test_slug_runs_after_move_with_original_interpreter_hidden(tmp_path, runtimes, py312):
    from dcbuild import localpython

    prefix = next(lp.prefix for lp in localpython.find_local() if lp.version == py312)
    build_dir = copy_fixture("pyversion_312", tmp_path / "build")
    cache = runtimes.seed(tmp_path / "cache", py312)
    build = run_compile(build_dir, cache)
    assert build.returncode == 0, build
    moved = tmp_path / "elsewhere" / "app"
    moved.parent.mkdir()
    build_dir.rename(moved)
    shutil.rmtree(cache)  # nothing may point into the cache either
    # Nothing in the moved slug names the build directory (text files; .pyc are binary).
    grep = subprocess.run(["grep", "-rIl", str(build_dir), str(moved)], capture_output=True, text=True)
    assert grep.stdout == "", grep.stdout
    grep = subprocess.run(["grep", "-rIl", str(cache), str(moved)], capture_output=True, text=True)
    assert grep.stdout == "", grep.stdout
    inner = ("python3 -c 'import wsgi, itsdangerous, ssl, sqlite3, sys; print(sys.prefix)'"
             " && uwsgi --version && supervisord --version && pip --version")
    script = f"mount -t tmpfs none {prefix} && exec bash -c {_q(inner)}"
    res = slug_run(moved, f"unshare --mount sh -c {_q(script)}")
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert out[:3] == [str(moved / ".dotcloud" / "python"), "2.0.30", "4.3.0"]
    assert str(moved / ".dotcloud" / "python") in out[3]


def _q(text: str) -> str:
    import shlex

    return shlex.quote(text)


def test_version_object_roundtrip():
    assert str(Version.parse("3.12.1")) == "3.12.1"
