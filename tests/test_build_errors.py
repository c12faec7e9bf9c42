"""How a failed build ends (issue 14): one ` !     Error:` paragraph, never make's own lines
(`make: *** [...] Error 1`, `Deleting file`, `*** Build stopped`), a non-zero exit status, and
a paragraph of ours naming the step when the step that failed printed none (a crashed tool).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import copy_fixture, local_line, run_compile


@pytest.fixture
def version():
    found = local_line((3, 13)) or local_line((3, 12))
    if found is None:
        pytest.skip("no local CPython 3.12 or 3.13")
    return found


def wrapper(path: Path, crash_on: str) -> Path:
    """The build's python3, except for one dcbuild module, which crashes without an error paragraph."""
    import shutil

    real = shutil.which("python3", path="/usr/bin") or shutil.which("python3")
    path.write_text(f'#!/bin/sh\ncase "$*" in *{crash_on}*) echo "boom: a simulated crash" >&2; exit 3;; esac\n'
                    f'exec {real} "$@"\n')
    path.chmod(0o755)
    return path


def test_a_step_that_crashes_without_a_paragraph_gets_one(tmp_path, runtimes, version):
    app = copy_fixture("sample", tmp_path / "app")
    (app / "runtime.txt").write_text(f"python-{version}\n")
    cache = runtimes.seed(tmp_path / "cache", version)
    build = run_compile(app, cache, DC_PYTHON3=str(wrapper(tmp_path / "python3", "dcbuild.runtime")))
    assert build.returncode != 0, build
    assert "boom: a simulated crash" in build.stderr  # the step's own words are never swallowed
    errors = [line for line in build.stderr.splitlines() if line.startswith(" !     Error: ")]
    assert errors == [" !     Error: the build failed while installing Python (exit status 3)."], build
    assert " !     The step printed no error of its own: the lines just above are its output, and the cause." \
        in build.stderr
    for noise in ("make: ***", "Deleting file", "Build stopped"):
        assert noise not in build.output, build


def test_a_step_with_its_own_paragraph_ends_the_log_with_it(tmp_path, runtimes, version):
    app = copy_fixture("requirements_invalid", tmp_path / "app")
    (app / "runtime.txt").write_text(f"python-{version}\n")
    build = run_compile(app, runtimes.seed(tmp_path / "cache", version))
    assert build.returncode != 0, build
    bangs = [line for line in build.stderr.splitlines() if line.startswith(" !     ") and "Warning" not in line]
    assert bangs == [" !     Error: uv could not install the packages in requirements.txt.",
                     " !     Failed requirement: this-package-does-not-exist-dcbp==1.0 (requirements.txt:2)",
                     " !     Fix requirements.txt and deploy again (DC_INSTALLER=pip installs with pip instead)."
                     ], build
    assert build.stderr.rstrip("\n").endswith(bangs[-1]), build
    for noise in ("make: ***", "Deleting file", "Build stopped"):
        assert noise not in build.output, build
