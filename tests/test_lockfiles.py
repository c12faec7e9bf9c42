"""Lock files: one fixture app per package manager compiled for real (the slug's Python then
imports the locked packages, and not the dev ones), and the errors for several, missing and
stale locks. The fixtures' locks were made by the real tools (pipenv 2026.10.3, Poetry 2.5.1,
uv 0.13.8), so the hashes checked here are theirs.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import copy_fixture, run_compile
from dcbuild import lockfiles, log

LOCKS = {"lockfile_pipenv": "Pipfile.lock", "lockfile_poetry": "poetry.lock", "lockfile_uv": "uv.lock"}


def slug_python(app: Path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(app / ".dotcloud/python/bin/python3"), "-I", "-c", code], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin"}, timeout=60)


def assert_clean_failure(build) -> None:
    assert build.returncode != 0, build
    assert " !     Error: " in build.stderr, build
    assert "Traceback" not in build.output, build


@pytest.mark.slow
@pytest.mark.parametrize("fixture", sorted(LOCKS))
def test_lockfile_app_builds_with_locked_packages(tmp_path, runtimes, py312, fixture):
    app = copy_fixture(fixture, tmp_path / "app")
    (app / "runtime.txt").write_text(f"python-{py312}\n")
    cache = runtimes.seed(tmp_path / "cache", py312)
    build = run_compile(app, cache)
    assert build.returncode == 0, build
    assert f"-----> Installing requirements with uv ({LOCKS[fixture]})" in build.stdout
    assert f"-----> Python {py312} (runtime.txt:1) with {LOCKS[fixture]}" in build.stdout
    res = slug_python(app, "import importlib.metadata as m, dateutil, six; "
                           "print(m.version('python-dateutil'), m.version('six'))")
    assert res.stdout.split() == ["2.9.0.post0", "1.17.0"], res.stderr
    dev = slug_python(app, "import iniconfig")  # a dev dependency in every lock: not installed
    assert "No module named 'iniconfig'" in dev.stderr
    # Warm, in a fresh checkout: the same lock reuses the layer.
    app = copy_fixture(fixture, tmp_path / "again")
    (app / "runtime.txt").write_text(f"python-{py312}\n")
    again = run_compile(app, cache)
    assert again.returncode == 0, again
    assert f"-----> Using cached packages ({LOCKS[fixture]} unchanged)" in again.stdout


@pytest.mark.slow
def test_lockfile_with_pip_engine(tmp_path, runtimes, py312):
    app = copy_fixture("lockfile_poetry", tmp_path / "app")
    (app / "runtime.txt").write_text(f"python-{py312}\n")
    build = run_compile(app, runtimes.seed(tmp_path / "cache", py312), DC_INSTALLER="pip")
    assert build.returncode == 0, build
    assert "-----> Installing requirements with pip (poetry.lock)" in build.stdout
    assert slug_python(app, "import dateutil, six").returncode == 0


@pytest.mark.slow
def test_stale_uv_lock_fails_with_uvs_message(tmp_path, runtimes, py312):
    app = copy_fixture("lockfile_uv", tmp_path / "app")
    (app / "runtime.txt").write_text(f"python-{py312}\n")
    pyproject = app / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"python-dateutil==2.9.0.post0"',
                                                       '"python-dateutil==2.9.0.post0", "six==1.16.0"'))
    build = run_compile(app, runtimes.seed(tmp_path / "cache", py312))
    assert_clean_failure(build)
    assert "\n       error: The lockfile at `uv.lock` needs to be updated" in build.output, build
    assert " !     Error: uv.lock does not match pyproject.toml (uv export --locked failed)" in build.stderr
    assert "Run `uv lock`, add the new uv.lock to the app, and deploy again." in build.stderr


@pytest.mark.slow
def test_several_lists_of_packages_are_an_error(tmp_path, runtimes, py312):
    app = copy_fixture("lockfile_poetry", tmp_path / "app")
    (app / "runtime.txt").write_text(f"python-{py312}\n")
    (app / "requirements.txt").write_text("six\n")
    build = run_compile(app, runtimes.seed(tmp_path / "cache", py312))
    assert_clean_failure(build)
    assert (" !     Error: The app has requirements.txt and poetry.lock: more than one list of packages"
            " to install") in build.stderr


# --- detection and staleness, without a build -------------------------------------------------


def fixture_copy(tmp_path: Path, name: str) -> Path:
    return copy_fixture(name, tmp_path / name)


def test_detect_names_every_file_when_several(tmp_path):
    app = fixture_copy(tmp_path, "lockfile_uv")
    (app / "Pipfile.lock").write_text("{}")
    (app / "requirements.txt").write_text("six\n")
    with pytest.raises(log.BuildError) as exc:
        lockfiles.detect(app, "web")
    assert exc.value.summary == ("The app has web/requirements.txt, web/Pipfile.lock and web/uv.lock:"
                                 " more than one list of packages to install")


@pytest.mark.parametrize(("files", "summary", "fix"), [
    ({"Pipfile": "[packages]\nsix = '*'\n"}, "Pipfile has no Pipfile.lock next to it", "`pipenv lock`"),
    ({"pyproject.toml": "[tool.poetry]\nname = 'x'\n"},
     "pyproject.toml has a [tool.poetry] table but there is no poetry.lock", "`poetry lock`"),
    ({"pyproject.toml": "[project]\nname = 'x'\n[tool.uv]\npackage = false\n"},
     "pyproject.toml has a [tool.uv] table but there is no uv.lock", "`uv lock`"),
])
def test_a_lock_is_missing(tmp_path, files, summary, fix):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(log.BuildError) as exc:
        lockfiles.detect(tmp_path, ".")
    assert exc.value.summary == summary
    assert any(fix in line for line in exc.value.details)


def test_nothing_to_install_is_fine(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert lockfiles.detect(tmp_path, ".") is None


@pytest.mark.parametrize(("fixture", "made_from", "edit", "cmd"), [
    ("lockfile_pipenv", "Pipfile", ("==2.9.0.post0", "==2.8.2"), "pipenv lock"),
    ("lockfile_poetry", "pyproject.toml", ('python-dateutil = "2.9.0.post0"', 'python-dateutil = "2.8.2"'),
     "poetry lock"),
])
def test_stale_lock_says_which_command_makes_it(tmp_path, fixture, made_from, edit, cmd):
    app = fixture_copy(tmp_path, fixture)
    kind = LOCKS[fixture]
    assert lockfiles.write_requirements(tmp_path, app, kind)  # fresh as the tool left it
    path = app / made_from
    text = path.read_text()
    assert edit[0] in text
    path.write_text(text.replace(*edit))
    with pytest.raises(log.BuildError) as exc:
        lockfiles.write_requirements(tmp_path, app, kind)
    assert exc.value.summary == f"{kind} is out of date: {made_from} changed since it was made"
    assert any(f"Run `{cmd}`" in line for line in exc.value.details)


def test_lock_requirements_are_pinned_hashed_and_main_only(tmp_path):
    for fixture in ("lockfile_pipenv", "lockfile_poetry"):
        app = fixture_copy(tmp_path, fixture)
        out = tmp_path / lockfiles.write_requirements(tmp_path, app, LOCKS[fixture])
        text = out.read_text()
        assert "python-dateutil==2.9.0.post0" in text and "six==1.17.0" in text, text
        assert "--hash=sha256:a8b2bc7bffae282281c8140a97d3aa9c14da0b136dfe83f850eea9a5f7470427" in text
        assert "iniconfig" not in text


def test_key_covers_the_file_the_lock_is_made_from(tmp_path):
    app = fixture_copy(tmp_path, "lockfile_uv")
    assert [p.name for p in lockfiles.inputs(app, "uv.lock")] == ["uv.lock", "pyproject.toml"]
    app = fixture_copy(tmp_path, "lockfile_pipenv")
    assert [p.name for p in lockfiles.inputs(app, "Pipfile.lock")] == ["Pipfile.lock", "Pipfile"]


def test_poetry_lock_without_groups_walks_the_main_dependencies(tmp_path):
    """lock-version 2.0 (Poetry 1.x) records no groups: main is what the main dependencies reach."""
    (tmp_path / "pyproject.toml").write_text(
        "[tool.poetry]\nname = 'x'\n[tool.poetry.dependencies]\npython = '>=3.9'\nflask = '3.0.3'\n"
        "[tool.poetry.group.dev.dependencies]\npytest = '8.0.0'\n")
    (tmp_path / "poetry.lock").write_text(
        '[[package]]\nname = "Flask"\nversion = "3.0.3"\nfiles = [{file = "f.whl", hash = "sha256:aa"}]\n'
        '[package.dependencies]\nclick = ">=8"\n'
        'colorama = {version = "*", markers = "platform_system == \'Windows\'"}\n'
        '[[package]]\nname = "click"\nversion = "8.1.7"\nfiles = []\n'
        '[[package]]\nname = "colorama"\nversion = "0.4.6"\nfiles = []\n'
        '[[package]]\nname = "pytest"\nversion = "8.0.0"\nfiles = []\n'
        '[metadata]\nlock-version = "2.0"\n')
    lines = lockfiles.from_poetry_lock(tmp_path)
    assert lines == ["click==8.1.7", "colorama==0.4.6 ; (platform_system == 'Windows')",
                     "flask==3.0.3 \\\n    --hash=sha256:aa"]
