"""Unit tests: local packages in requirement files (what the key covers, the names uv must
build again, editable paths made relative) and the bytecode borrowed from a previous
environment."""

from __future__ import annotations

import ast
import os
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest

from dcbuild import bytecode, localpkgs


def project(root: Path, name: str = "mylib", version: str = "1.0", value: int = 1) -> Path:
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(f'[project]\nname = "{name}"\nversion = "{version}"\n')
    (root / name / "__init__.py").write_text(f"VALUE = {value}\n")
    return root


def test_find_names_every_kind_of_local_path(tmp_path):
    app = tmp_path / "app"
    (app / "reqs").mkdir(parents=True)
    req = app / "requirements.txt"
    req.write_text("six==1.16.0\n./vendor/a\n-e ./vendor/b  # editable\n--editable=vendor/c\n"
                   "d @ file:///opt/d\n./dist/e-1.0.tar.gz\n-f ./wheels\nhttps://example.invalid/x.tar.gz\n"
                   "git+https://example.invalid/y.git\n--index-url https://example.invalid/simple\n"
                   "./vendor/f[extra] ; python_version >= '3'\n")
    found = {(str(x.path.relative_to(app)) if x.path.is_relative_to(app) else str(x.path), x.kind)
             for x in localpkgs.find([req], app)}
    assert found == {("vendor/a", "package"), ("vendor/b", "editable"), ("vendor/c", "editable"),
                     ("/opt/d", "package"), ("dist/e-1.0.tar.gz", "package"), ("wheels", "find-links"),
                     ("vendor/f", "package")}
    nested = app / "reqs" / "more.txt"  # uv reads a relative path against the file's directory
    nested.write_text("../vendor/g\n")
    assert {str(x.path) for x in localpkgs.find([nested], app)} == {str(app / "../vendor/g"),
                                                                    str(app / "reqs/../vendor/g")}


def test_digest_follows_content_not_build_leftovers(tmp_path):
    lib = project(tmp_path / "mylib")
    local = [localpkgs.Local(lib, "package", "requirements.txt:1")]
    first = localpkgs.digest(local)
    for leftover in ("build/lib/mylib/__init__.py", "mylib.egg-info/PKG-INFO", "mylib/__pycache__/x.pyc",
                     ".git/HEAD"):
        (lib / leftover).parent.mkdir(parents=True, exist_ok=True)
        (lib / leftover).write_text("x")
    os.utime(lib / "pyproject.toml", (1, 1))  # mtimes do not count
    assert localpkgs.digest(local) == first
    (lib / "mylib" / "__init__.py").write_text("VALUE = 2\n")
    assert localpkgs.digest(local) != first
    assert localpkgs.digest([]) == ""


def test_editable_digest_follows_what_the_install_writes(tmp_path):
    lib = project(tmp_path / "mylib")
    local = [localpkgs.Local(lib, "editable", "requirements.txt:1")]
    first = localpkgs.digest(local)
    (lib / "mylib" / "__init__.py").write_text("VALUE = 2\n")  # used from the slug as it is
    assert localpkgs.digest(local) == first
    (lib / "other").mkdir()  # a new top-level package: the finder maps it
    assert localpkgs.digest(local) != first
    second = localpkgs.digest(local)
    (lib / "pyproject.toml").write_text('[project]\nname = "mylib"\nversion = "1.1"\n')
    assert localpkgs.digest(local) != second


def test_project_names(tmp_path):
    assert localpkgs.project_name(project(tmp_path / "a", name="My_Lib")) == "my-lib"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "setup.cfg").write_text("[metadata]\nname = from.cfg\n")
    assert localpkgs.project_name(tmp_path / "b") == "from-cfg"
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "setup.py").write_text("from setuptools import setup\nsetup(\n    name='from_py',\n)\n")
    assert localpkgs.project_name(tmp_path / "c") == "from-py"
    wheel = tmp_path / "Some_Pkg-2.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    sdist = tmp_path / "other-pkg-1.0.tar.gz"
    sdist.write_bytes(b"")
    assert [localpkgs.project_name(wheel), localpkgs.project_name(sdist)] == ["some-pkg", "other-pkg"]
    (tmp_path / "d").mkdir()
    assert localpkgs.project_name(tmp_path / "d") is None


def test_uv_lock_sources(tmp_path):
    lock = tmp_path / "uv.lock"
    lock.write_text('[[package]]\nname = "app"\nsource = { editable = "." }\n'
                    '[[package]]\nname = "mylib"\nsource = { directory = "vendor/mylib" }\n'
                    '[[package]]\nname = "dev"\nsource = { editable = "libs/dev" }\n'
                    '[[package]]\nname = "six"\nsource = { registry = "https://pypi.org/simple" }\n')
    assert [(x.path.relative_to(tmp_path).as_posix(), x.kind) for x in localpkgs.from_uv_lock(lock)] == [
        ("vendor/mylib", "package"), ("libs/dev", "editable")]


FINDER = '''\
from __future__ import annotations
import sys

MAPPING: dict[str, str] = {'mylib': '%(app)s/vendor/mylib/mylib', 'elsewhere': '/opt/other/pkg'}
NAMESPACES: dict[str, list[str]] = {'ns': ['%(app)s/vendor/ns']}


def install():
    sys.modules[__name__].RESULT = (MAPPING, NAMESPACES)
'''


def test_editables_become_relative_to_site_packages(tmp_path):
    app = tmp_path / "build"
    layer = tmp_path / "cache" / "layer" / "python"  # where the environment is made
    site = layer / "lib" / "python3.12" / "site-packages"
    site.mkdir(parents=True)
    (site / "__editable__.mylib-1.0.pth").write_text(
        "import __editable___mylib_1_0_finder; __editable___mylib_1_0_finder.install()\n")
    (site / "_hatch.pth").write_text(f"{app}/src\n/opt/elsewhere\n")
    (site / "__editable___mylib_1_0_finder.py").write_text(FINDER % {"app": app})
    changed = localpkgs.relocate_editables(layer, app)
    assert sorted(p.name for p in changed) == ["__editable___mylib_1_0_finder.py", "_hatch.pth"]
    assert (site / "_hatch.pth").read_text() == "../../../../../src\n/opt/elsewhere\n"
    # In the slug, moved to another place: the paths are the new place's.
    moved = tmp_path / "app"
    slug_site = moved / ".dotcloud" / "python" / "lib" / "python3.12" / "site-packages"
    slug_site.mkdir(parents=True)
    for f in site.iterdir():
        (slug_site / f.name).write_bytes(f.read_bytes())
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import __editable___mylib_1_0_finder as f; "
            "f.install(); print(f.RESULT)")
    res = subprocess.run([sys.executable, "-c", code, str(slug_site)], capture_output=True, text=True, check=True)
    mapping, namespaces = ast.literal_eval(res.stdout)
    assert mapping == {"mylib": str(moved / "vendor/mylib/mylib"), "elsewhere": "/opt/other/pkg"}
    assert namespaces == {"ns": [str(moved / "vendor/ns")]}
    assert localpkgs.relocate_editables(layer, app) == []  # already relative: nothing to do


def dist(site: Path, name: str, files: dict[str, str]) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    for rel, text in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    (info / "RECORD").write_text("".join(f"{rel},sha256=x,{len(text)}\n" for rel, text in files.items()))


@pytest.fixture
def two_envs(tmp_path):
    tag = f"python3.{sys.version_info.minor}"
    old, new = tmp_path / "old", tmp_path / "new"
    for root in (old, new):
        site = root / "lib" / tag / "site-packages"
        dist(site, "same", {"same/__init__.py": "A = 1\n"})
        # Its console script, rewritten by the build after the install and recorded again.
        with (site / "same-1.0.dist-info" / "RECORD").open("a") as record:
            record.write(f"../../../bin/same,sha256={'old' if root == old else 'new'},1\n")
        dist(site, "changed", {"changed/__init__.py": "B = 1\n" if root == old else "B = 22\n"})
    return old, new, tag


def test_bytecode_is_borrowed_only_where_it_fits(two_envs):
    old, new, tag = two_envs
    old_site, new_site = old / "lib" / tag / "site-packages", new / "lib" / tag / "site-packages"
    cache_tag = bytecode.cache_tag(new_site)
    assert cache_tag == f"cpython-3{sys.version_info.minor}"
    for rel in ("same/__init__.py", "changed/__init__.py"):
        pyc = rel.replace("__init__.py", f"__pycache__/__init__.{cache_tag}.pyc")
        py_compile.compile(str(old_site / rel), cfile=str(old_site / pyc))
    # The same distribution, its source with the same mtime (a hard link from the installer's cache).
    os.utime(new_site / "same/__init__.py", ns=(os.stat(old_site / "same/__init__.py").st_mtime_ns,) * 2)
    assert [Path(p).relative_to(new_site).as_posix() for p in bytecode.seed(new, old)] == ["changed/__init__.py"]
    borrowed = new_site / f"same/__pycache__/__init__.{cache_tag}.pyc"
    assert borrowed.stat().st_ino == (old_site / f"same/__pycache__/__init__.{cache_tag}.pyc").stat().st_ino
    assert [Path(p).relative_to(new_site).as_posix() for p in bytecode.missing(new)] == ["changed/__init__.py"]


def test_bytecode_of_a_source_with_another_mtime_is_not_borrowed(two_envs):
    old, new, tag = two_envs
    old_site, new_site = old / "lib" / tag / "site-packages", new / "lib" / tag / "site-packages"
    cache_tag = bytecode.cache_tag(new_site)
    py_compile.compile(str(old_site / "same/__init__.py"),
                       cfile=str(old_site / f"same/__pycache__/__init__.{cache_tag}.pyc"))
    os.utime(new_site / "same/__init__.py", (1, 1))  # fetched again: the installer's cache was emptied
    assert len(bytecode.seed(new, old)) == 2  # nothing borrowed
    assert len(bytecode.missing(new)) == 2
