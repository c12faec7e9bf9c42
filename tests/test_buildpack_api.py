"""bin/detect and bin/release, run as platforms run them (any cwd)."""

from __future__ import annotations

import subprocess

import pytest

from conftest import BP, FIXTURES, copy_fixture


@pytest.mark.parametrize("marker", ["wsgi.py", "dotcloud.yml", "requirements.txt", "runtime.txt",
                                    ".python-version", "setup.py", "pyproject.toml"])
def test_detect_yes(tmp_path, marker):
    app = tmp_path / "app"
    app.mkdir()
    (app / marker).write_text("")
    res = subprocess.run([BP / "bin" / "detect", app], cwd="/", capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "Python (dotCloud)\n"


def test_detect_no(tmp_path):
    app = copy_fixture("detect_none", tmp_path / "app")
    res = subprocess.run([BP / "bin" / "detect", app], cwd="/", capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stdout == ""
    assert "No Python app found" in res.stderr and "wsgi.py" in res.stderr


def test_release_is_yaml_with_one_script_web_process(tmp_path):
    res = subprocess.run([BP / "bin" / "release", FIXTURES / "sample"], cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    lines = res.stdout.splitlines()
    assert lines[:2] == ["---", "default_process_types:"]
    web = [line.split(":", 1)[1].strip() for line in lines if line.strip().startswith("web:")]
    # herokuish runs this through `eval echo`: one executable and plain arguments only.
    assert web and not any(ch in web[0] for ch in ";&|$`")
