"""Cache truth, as a property: after any sequence of the edits users make, a build on the warm
cache gives the same environment as a build of the last state on an empty cache.

For each scenario the app goes through its states on one CACHE_DIR (each state a fresh build
directory: a platform's checkout); the last state is then built once more on an empty cache
(the run's runtime archive only) in yet another directory. The two slugs must hold the same
distributions (``importlib.metadata``: names and versions) and the same ``.py`` files in
site-packages (path and sha256), and import the same code. Packages come from a local index the
test makes (PIP_EXTRA_INDEX_URL; the dotCloud requirements still come from PyPI), so "the newest
allowed" is known: dcbp-a has 1.0, 1.1 and 2.0.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import copy_fixture, local_index, local_versions, make_wheel, run_compile
from dcbuild.versions import SUPPORTED_LINES

pytestmark = pytest.mark.slow

LISTING = """
import importlib.metadata as m, json, sys
print(json.dumps(sorted({(d.metadata["Name"].lower().replace("_", "-"), d.version) for d in m.distributions()})))
"""


def _setup_py_project(version: str, value: int) -> dict[str, str]:
    return {
        "vendor/mylib/pyproject.toml": (
            '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
            f'[project]\nname = "mylib"\nversion = "{version}"\n'),
        "vendor/mylib/mylib/__init__.py": f"VALUE = {value}\n",
    }


def _setup_py_dynamic_name(value: int) -> dict[str, str]:
    """A project whose name the buildpack cannot read without running setup.py."""
    return {
        "vendor/mylib/setup.py": ("from setuptools import setup\nNAME = 'my' + 'lib'\n"
                                  "setup(name=NAME, version='1.0', packages=['mylib'])\n"),
        "vendor/mylib/mylib/__init__.py": f"VALUE = {value}\n",
    }


def _uv_project(pin: str) -> dict[str, str]:
    return {"pyproject.toml": f'[project]\nname = "app"\nversion = "0"\nrequires-python = ">=3.9"\n'
                              f'dependencies = ["{pin}"]\n'}


# name -> states; a state is (files to write, environment of the build). A file mapped to None is
# removed. "uv lock" in a state's environment: run `uv lock` before the build, as a user would.
SCENARIOS: dict[str, list[tuple[dict[str, str | None], dict[str, str]]]] = {
    "pin_to_unpin": [({"requirements.txt": "dcbp-a==1.0\n"}, {}),
                     ({"requirements.txt": "dcbp-a\n"}, {})],
    "range_widened": [({"requirements.txt": "dcbp-a<1.1\n"}, {}),
                      ({"requirements.txt": "dcbp-a<3\n"}, {})],
    "package_removed": [({"requirements.txt": "dcbp-a==1.0\ndcbp-c==1.0\n"}, {}),
                        ({"requirements.txt": "dcbp-a==1.0\n"}, {})],
    "nested_files_edited": [
        ({"requirements.txt": "-r base.txt\n-c limits.txt\n", "base.txt": "dcbp-a\n", "limits.txt": "dcbp-a<2\n"},
         {}),
        ({"limits.txt": "dcbp-a<1.1\n"}, {}),
        ({"limits.txt": "dcbp-a<3\n", "base.txt": "dcbp-a\ndcbp-b\n"}, {}),
    ],
    "local_package_bumped": [({"requirements.txt": "./vendor/mylib\n", **_setup_py_project("1.0", 1)}, {}),
                             (_setup_py_project("1.1", 2), {})],
    "local_package_code_only": [({"requirements.txt": "./vendor/mylib\n", **_setup_py_project("1.0", 1)}, {}),
                                ({"vendor/mylib/mylib/__init__.py": "VALUE = 2\n"}, {})],
    "local_package_unnamed": [({"requirements.txt": "./vendor/mylib\n", **_setup_py_dynamic_name(1)}, {}),
                              ({"vendor/mylib/mylib/__init__.py": "VALUE = 2\n"}, {})],
    "editable_package": [({"requirements.txt": "-e ./vendor/mylib\n", **_setup_py_project("1.0", 1)}, {}),
                         (_setup_py_project("1.1", 2), {})],
    "uv_lock_changed": [({**_uv_project("dcbp-a==1.0"), "requirements.txt": None}, {"uv lock": "1"}),
                        (_uv_project("dcbp-a>=1.1"), {"uv lock": "1"})],
    "installer_switched": [({"requirements.txt": "dcbp-a\n"}, {"DC_INSTALLER": "uv"}),
                           ({"requirements.txt": "dcbp-a<2\n"}, {"DC_INSTALLER": "pip"}),
                           ({"requirements.txt": "dcbp-a\n"}, {"DC_INSTALLER": "uv"}),
                           ({"requirements.txt": "dcbp-a==1.0\n"}, {"DC_INSTALLER": "pip"})],
    "pip_pin_to_unpin": [({"requirements.txt": "dcbp-a==1.0\ndcbp-c\n"}, {"DC_INSTALLER": "pip"}),
                         ({"requirements.txt": "dcbp-a\n"}, {"DC_INSTALLER": "pip"})],
}


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("truth-index")
    wheels = [make_wheel(root / "wheels", "dcbp-a", v) for v in ("1.0", "1.1", "2.0")]
    wheels += [make_wheel(root / "wheels", "dcbp-b", "1.0"),
               make_wheel(root / "wheels", "dcbp-c", "1.0", requires=("dcbp-b",))]
    return local_index(root / "index", wheels)


@pytest.fixture
def version():
    found = sorted((v for v in local_versions() if v.line in SUPPORTED_LINES), reverse=True)
    if not found:
        pytest.skip("no local CPython of a supported line")
    return found[0]


# Every file of every checkout gets this mtime (1980-01-01, as Cloud Native Buildpacks' exporter
# sets it): a changed file with an unchanged mtime is then noticed by content, or not at all.
FIXED_MTIME = 315532801


def write_state(app: Path, files: dict[str, str | None]) -> None:
    for name, text in files.items():
        path = app / name
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for path in [app, *app.rglob("*")]:
        os.utime(path, (FIXED_MTIME, FIXED_MTIME), follow_symlinks=False)


def uv_lock(app: Path, cache: Path, index: str, version) -> None:
    """`uv lock` with the pinned uv the build fetched, against the test's index."""
    from dcbuild import localpython, tools

    uv = tools.uv(cache / "python-dotcloud")
    python = next(lp for lp in localpython.find_local() if lp.version == version).executable
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_"))}
    env.update(UV_PYTHON_DOWNLOADS="never", UV_CACHE_DIR=str(cache.parent / "uv-lock-cache"))
    res = subprocess.run([str(uv), "lock", "--python", str(python), "--default-index", index, "--directory",
                          str(app)], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr


def snapshot(app: Path) -> tuple[list, dict[str, str]]:
    """(distributions, {site-packages .py path: sha256}) of a slug."""
    python = app / ".dotcloud/python/bin/python3"
    res = subprocess.run([str(python), "-I", "-c", LISTING], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert res.returncode == 0, res.stderr
    site = next((app / ".dotcloud/python/lib").glob("python3*/site-packages"))
    files = {str(p.relative_to(site)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(site.rglob("*.py"))}
    return [tuple(d) for d in json.loads(res.stdout)], files


def imported(app: Path, module: str, attribute: str) -> str:
    """``module.attribute`` as the slug's Python imports it, from the slug's own directory."""
    res = subprocess.run([str(app / ".dotcloud/python/bin/python3"), "-c",
                          f"import {module}; print({module}.{attribute})"], cwd=app, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_warm_build_equals_empty_cache_build(tmp_path, runtimes, version, index, scenario):
    states = SCENARIOS[scenario]
    warm_cache = runtimes.seed(tmp_path / "warm-cache", version)
    files: dict[str, str | None] = {}
    app = None
    for number, (changes, env) in enumerate(states):
        files.update(changes)
        app = copy_fixture("sample", tmp_path / f"warm-{number}")  # a fresh checkout each time
        (app / "runtime.txt").write_text(f"python-{version}\n")
        write_state(app, files)
        build_env = {k: v for k, v in env.items() if k != "uv lock"}
        if "uv lock" in env:
            uv_lock(app, warm_cache, index, version)
        build = run_compile(app, warm_cache, PIP_EXTRA_INDEX_URL=index, STACK="", **build_env)
        assert build.returncode == 0, build
        if number:
            assert "-----> Using cached Python" in build.stdout, build  # the warm path was taken
    assert app is not None
    cold = copy_fixture("sample", tmp_path / "cold")
    (cold / "runtime.txt").write_text(f"python-{version}\n")
    write_state(cold, files)
    if "uv lock" in states[-1][1]:
        shutil.copy(app / "uv.lock", cold / "uv.lock")
    build = run_compile(cold, runtimes.seed(tmp_path / "cold-cache", version), PIP_EXTRA_INDEX_URL=index, STACK="",
                        **{k: v for k, v in states[-1][1].items() if k != "uv lock"})
    assert build.returncode == 0, build
    assert "Using cached dotCloud requirements" not in build.stdout, build

    warm_dists, warm_files = snapshot(app)
    cold_dists, cold_files = snapshot(cold)
    assert warm_dists == cold_dists
    assert warm_files == cold_files

    if "mylib" in str(files):
        # The slug imports the last state's code, also once moved elsewhere (as to /app).
        moved = tmp_path / "moved"
        shutil.move(str(app), moved)
        assert imported(moved, "mylib", "VALUE") == "2"
        assert imported(cold, "mylib", "VALUE") == "2"
    if scenario == "pin_to_unpin":
        assert ("dcbp-a", "2.0") in warm_dists  # the newest allowed, not the one installed before
