"""The environment's copy that make starts early (dcbuild.slug precopy), and how ``run`` adopts,
refuses or stops it: on small trees, with real ``cp`` and real processes. The warm builds of
test_cache and the failing ones of test_compile_checks run it end to end.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from dcbuild import log, slug, tools


def tree(root: Path) -> Path:
    (root / "lib" / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "lib" / "pkg" / "__init__.py").write_text("x = 1\n")
    (root / "lib" / "pkg" / "__pycache__" / "__init__.cpython-312.pyc").write_bytes(b"\0" * 16)
    (root / "bin").mkdir()
    (root / "bin" / "python3.12").write_text("#!/bin/sh\n")
    (root / "bin" / "python3").symlink_to("python3.12")
    os.chmod(root / "lib" / "pkg", 0o750)
    return root


def listing(root: Path) -> list[tuple[str, int, bool]]:
    return sorted((str(p.relative_to(root)), p.lstat().st_mode, p.is_symlink()) for p in root.rglob("*"))


def sleeper() -> subprocess.Popen:
    """A process in its own session, standing for a copy that still runs."""
    return subprocess.Popen(["sleep", "60"], start_new_session=True)


def test_a_started_copy_is_adopted_and_its_record_removed(tmp_path):
    src = tree(tmp_path / "layer" / "python")
    dest, state = tmp_path / "app" / ".dotcloud" / "python", tmp_path / "app" / ".dotcloud" / "state"
    slug.precopy(src, dest, state)
    started = int((state / slug.PRECOPY).read_text().split()[0])
    copy = slug.TreeCopy(src, dest, state=state)
    assert copy.pid == started  # no second cp
    copy.wait()
    assert listing(dest) == listing(src)  # modes (0750 too) and the symlink kept
    assert (dest / "lib" / "pkg" / "__init__.py").stat().st_ino == (src / "lib" / "pkg" / "__init__.py").stat().st_ino
    assert not (state / slug.PRECOPY).exists() and not (state / slug.PRECOPY_STATUS).exists()


def test_a_copy_of_another_tree_is_stopped_and_the_right_one_made(tmp_path):
    src = tree(tmp_path / "layer" / "python")
    dest, state = tmp_path / "slug" / "python", tmp_path / "state"
    state.mkdir()
    dest.parent.mkdir()
    other = sleeper()
    (state / slug.PRECOPY).write_text(f"{other.pid}\n{tmp_path / 'elsewhere'}\n{dest}\n")
    copy = slug.TreeCopy(src, dest, state=state)
    assert other.wait(10) == -signal.SIGKILL
    assert copy.pid not in (None, other.pid)  # a copy of its own
    copy.wait()
    assert listing(dest) == listing(src)
    assert not (state / slug.PRECOPY).exists()


def test_a_failed_early_copy_falls_back_to_a_plain_copy(tmp_path):
    """Hard links across filesystems fail (Dokku's cache): the copy is made again, as files."""
    shm = Path("/dev/shm")
    if not os.access(shm, os.W_OK) or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no writable /dev/shm on another filesystem")
    with tempfile.TemporaryDirectory(dir=shm) as other_fs:
        src = tree(Path(other_fs) / "python")
        dest, state = tmp_path / "slug" / "python", tmp_path / "state"
        dest.parent.mkdir()
        slug.precopy(src, dest, state)
        copy = slug.TreeCopy(src, dest, state=state)
        copy.wait()
        assert listing(dest) == listing(src)
        assert not (state / slug.PRECOPY).exists()


def test_a_copy_that_cannot_be_made_is_an_error(tmp_path):
    dest, state = tmp_path / "slug" / "python", tmp_path / "state"
    slug.precopy(tmp_path / "missing", dest, state)
    copy = slug.TreeCopy(tmp_path / "missing", dest, state=state)
    with pytest.raises(log.BuildError, match="Cannot copy"):
        copy.wait()


def test_stop_precopy_kills_a_running_copy_and_removes_what_it_made(tmp_path):
    dest, state = tmp_path / "slug" / "python", tmp_path / "state"
    state.mkdir()
    dest.mkdir(parents=True)
    running = sleeper()
    (state / slug.PRECOPY).write_text(f"{running.pid}\n{tmp_path / 'layer'}\n{dest}\n")
    assert slug.stop_precopy([str(state)]) == 0
    assert running.wait(10) == -signal.SIGKILL
    assert not dest.exists() and not (state / slug.PRECOPY).exists()


def test_a_finished_copy_is_never_killed(tmp_path):
    """Its status is written: its pid may belong to another process by now."""
    dest, state = tmp_path / "slug" / "python", tmp_path / "state"
    state.mkdir()
    bystander = sleeper()
    try:
        (state / slug.PRECOPY).write_text(f"{bystander.pid}\n{tmp_path / 'layer'}\n{dest}\n")
        (state / slug.PRECOPY_STATUS).write_text("0\n")
        slug.stop_precopy([str(state)])
        time.sleep(0.2)
        assert bystander.poll() is None
        assert not (state / slug.PRECOPY_STATUS).exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_a_zombie_counts_as_gone(tmp_path):
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while slug._alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not slug._alive(child.pid)  # exited, not reaped yet
    child.wait()
    assert not slug._alive(child.pid)
    assert slug._alive(os.getpid())


def test_layer_keys_name_what_each_layer_holds(tmp_path):
    bp = tmp_path / "bp"
    (bp / "config").mkdir(parents=True)
    (bp / "config" / "dcrequirements.txt").write_text("supervisor==4.3.0\n")
    dcreqs = hashlib.sha256(b"supervisor==4.3.0\n").hexdigest()[:12]
    uv = tools.version("uv")  # uv's version is in the key: another uv may resolve differently
    plan = {"PY_VERSION": "3.12.1", "INSTALLER": "uv", "USER_REQS": "requirements.txt", "USER_HASH": "0123abcd"}
    assert slug.layer_keys(plan, "x86_64-linux-gnu", "heroku-24", bp) == {
        "PY_KEY": "3.12.1-x86_64-linux-gnu",
        "DCREQS_HASH": dcreqs,
        "DC_KEY": f"3.12.1-x86_64-linux-gnu-heroku-24-f{slug.LAYER_FORMAT}-uv{uv}-{dcreqs}",
        "USER_KEY": f"3.12.1-x86_64-linux-gnu-heroku-24-f{slug.LAYER_FORMAT}-uv{uv}-{dcreqs}-0123abcd",
        "INSTALLER_ID": f"uv {uv}",
    }
    # No stack (a laptop), pip, no requirements: the user key says so.
    keys = slug.layer_keys({**plan, "INSTALLER": "pip", "USER_REQS": ""}, "aarch64-linux-gnu", "", bp)
    assert keys["DC_KEY"] == f"3.12.1-aarch64-linux-gnu-f{slug.LAYER_FORMAT}-pip-{dcreqs}"
    assert keys["USER_KEY"] == keys["DC_KEY"] + "-none"
