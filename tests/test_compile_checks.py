"""Compile-time checks of the app's run-time configuration (issue 6, item 3): a broken app fails its
build with an error naming the file, the line and the fix, not its boot; and the cache is as good
as before (the next good build is warm).

Every case builds against a copy (hard links) of one cache warmed once per run with the sample
app, whose requirements the fixtures share: a failing build must find every layer there, and
leave it so that the sample app builds again without installing anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BP, build_env, copy_fixture, once, run_compile

pytestmark = pytest.mark.slow

# A build that prints none of these rebuilt nothing.
WORK = ("-----> Installing Python", "-----> Installing dotCloud requirements", "-----> Installing requirements",
        "-----> Discarding")


@pytest.fixture(scope="session")
def warm_cache(shared_dir) -> Path:
    root = shared_dir / "checks"
    cache = root / "cache"

    def warm() -> None:
        shutil.rmtree(root / "app", ignore_errors=True)
        build = run_compile(copy_fixture("sample", root / "app"), cache, STACK="")
        assert build.returncode == 0, build
        (root / "ok").touch()

    once(root / "lock", (root / "ok").exists, warm)
    return cache


@pytest.fixture
def cache(warm_cache, tmp_path) -> Path:
    """This test's own cache: the warm one, hard-linked (builds publish by rename, never in place)."""
    dest = tmp_path / "cache"
    subprocess.run(["cp", "-al", str(warm_cache), str(dest)], check=True)
    return dest


def assert_clean_failure(build) -> None:
    assert build.returncode != 0, build
    assert " !     Error: " in build.stderr, build
    assert "Traceback" not in build.output, build


def assert_still_warm(tmp_path: Path, cache: Path) -> None:
    good = run_compile(copy_fixture("sample", tmp_path / "good"), cache, STACK="")
    assert good.returncode == 0, good
    assert not [line for line in good.stdout.splitlines() if line.startswith(WORK)], good


CASES = {
    "bad_nginx_conf": (
        "Error: nginx.conf is rejected by nginx.",
        '[emerg] unknown directive "retrun" in nginx.conf:3',
        "current/*nginx.conf is included at server level",
    ),
    "bad_uwsgi_conf": (
        "Error: uwsgi.conf is rejected by nginx.",
        'invalid number of arguments in "uwsgi_read_timeout" directive in uwsgi.conf:3',
    ),
    "bad_supervisord_conf": (
        "Error: supervisord.conf:4: supervisord cannot parse this line: 'this line is not a setting'.",
        "Fix the line and deploy again.",
    ),
    "bad_supervisord_command": (
        "Error: supervisord.conf:5: [program:mailer] has no command=.",
        "Add command=... to [program:mailer]",
    ),
    "bad_dotcloud_uwsgi": (
        "Error: dotcloud.yml:6: config.uwsgi_processes is 'lots': it must be a whole number 1 or more.",
        "Fix the value in dotcloud.yml",
    ),
    "bad_process_name": (
        "Error: dotcloud.yml:6: processes: 'nginx' has the name of the buildpack's program nginx: rename it.",
    ),
    "bad_no_wsgi": (
        "Error: No wsgi.py in the app's top directory.",
        "or declare a web process of your own in a Procfile",
    ),
    "bad_approot": (
        "Error: dotcloud.yml:4: approot 'site' does not exist.",
        "There is no directory site/ in the app.",
    ),
}


def cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def marks(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "python-dotcloud" / "checks").glob("ok-*"))


@pytest.mark.parametrize("fixture", sorted(CASES))
def test_bad_config_fails_the_build_and_keeps_the_cache(tmp_path, cache, fixture):
    before = marks(cache)
    app = copy_fixture(fixture, tmp_path / "app")
    build = run_compile(app, cache, STACK="")
    assert_clean_failure(build)
    for fragment in CASES[fixture]:
        assert fragment in build.stderr, build
    assert marks(cache) == before  # not remembered as good
    assert not list((app / ".dotcloud" / "state").glob("checks-*"))
    # The environment's copy, started early (dcbuild.slug precopy), is stopped and removed.
    assert not (app / ".dotcloud" / "python").exists()
    assert not list((app / ".dotcloud" / "state").glob("precopy*"))
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and str(app).encode() in cmdline(pid)]
    assert_still_warm(tmp_path, cache)


def test_fixed_app_builds_and_its_check_is_remembered(tmp_path, cache):
    app = copy_fixture("bad_nginx_conf", tmp_path / "app")
    assert run_compile(app, cache, STACK="").returncode != 0
    # The fix, in the same directory: the checks pass, and the cache remembers this configuration.
    (app / "nginx.conf").write_text((app / "nginx.conf").read_text().replace("retrun", "return"))
    build = run_compile(app, cache, STACK="")
    assert build.returncode == 0, build
    stamp = next((app / ".dotcloud" / "state").glob("checks-*"))
    assert "ok-" + stamp.name.removeprefix("checks-") in marks(cache)
    res = subprocess.run(["make", "-q", "-C", str(BP), "compile", f"BUILD_DIR={app}", f"CACHE_DIR={cache}", "STACK="],
                         capture_output=True, text=True, env=build_env())
    assert res.returncode == 0, res.stdout + res.stderr  # nothing left to do


def test_a_configuration_that_passed_is_not_checked_again(tmp_path, cache):
    """The mark is what a fresh checkout of an unchanged app relies on: forged for a bad app, the
    build trusts it (so nginx -t does not run again on every platform build)."""
    app = copy_fixture("bad_nginx_conf", tmp_path / "app")
    assert run_compile(app, cache, STACK="").returncode != 0
    keys = (app / ".dotcloud" / "state" / "keys.mk").read_text()
    checks_key = next(line.split(" := ")[1] for line in keys.splitlines() if line.startswith("CHECKS_KEY := "))
    nginx_key = subprocess.run(["make", "-s", "-C", str(BP), "nginx-key"], capture_output=True, text=True,
                               check=True).stdout.strip()
    (cache / "python-dotcloud" / "checks" / f"ok-{checks_key}-{nginx_key}").touch()
    again = copy_fixture("bad_nginx_conf", tmp_path / "again")
    build = run_compile(again, cache, STACK="")
    assert build.returncode == 0, build


def test_own_web_process_needs_no_wsgi(tmp_path, cache):
    """A Procfile with a web process of its own (gunicorn, say): no wsgi.py needed."""
    app = copy_fixture("bad_no_wsgi", tmp_path / "app")
    (app / "Procfile").write_text("web: python3 -m http.server $PORT\n")
    build = run_compile(app, cache, STACK="")
    assert build.returncode == 0, build
    assert "Using the app's own Procfile" in build.stdout


def test_what_only_the_dyno_has_is_a_warning(tmp_path, cache):
    """An include of a file the boot may create (postinstall) does not fail the build; a typo
    before it still does (nginx reports its first error only)."""
    app = copy_fixture("bad_nginx_conf", tmp_path / "app")
    (app / "nginx.conf").write_text("include /home/dotcloud/data/generated.conf;\n")
    build = run_compile(app, cache, STACK="")
    assert build.returncode == 0, build
    assert "-----> Checking nginx.conf with nginx -t" in build.stdout
    assert " !     Warning: nginx.conf: nginx -t failed here on something only the dyno has" in build.stderr
    assert '"$HOME/data/generated.conf" failed (2: No such file or directory) in nginx.conf:1' in build.stderr
    again = copy_fixture("bad_nginx_conf", tmp_path / "again")
    (again / "nginx.conf").write_text("listen_typo 1;\ninclude /home/dotcloud/data/generated.conf;\n")
    failed = run_compile(again, cache, STACK="")
    assert_clean_failure(failed)
    assert 'unknown directive "listen_typo" in nginx.conf:1' in failed.stderr


def test_a_change_redoes_only_its_step(tmp_path, cache):
    """The slug's steps share one process but keep one stamp each: in the same directory, a new
    nginx.conf is checked, and nothing else is made again; then make has nothing to do."""
    app = copy_fixture("sample", tmp_path / "app")
    assert run_compile(app, cache, STACK="").returncode == 0
    state = app / ".dotcloud" / "state"
    before = {p.name: p.stat().st_mtime_ns for p in state.iterdir() if not p.name.endswith(".mk")}
    (app / "nginx.conf").write_text('location /hello/ { return 200 "hello"; }\n')
    build = run_compile(app, cache, STACK="")
    assert build.returncode == 0, build
    assert "-----> Checking nginx.conf with nginx -t" in build.stdout
    for line in ("-----> Python ", "-----> Installing runtime configs", "-----> Linking the approot"):
        assert line not in build.stdout, build
    after = {p.name: p.stat().st_mtime_ns for p in state.iterdir() if not p.name.endswith(".mk")}
    changed = {name for name in after if before.get(name) != after[name]}
    assert [name.split("-")[0] for name in changed] == ["checks"], changed
    res = subprocess.run(["make", "-q", "-C", str(BP), "compile", f"BUILD_DIR={app}", f"CACHE_DIR={cache}", "STACK="],
                         capture_output=True, text=True, env=build_env())
    assert res.returncode == 0, res.stdout + res.stderr
