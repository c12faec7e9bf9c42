"""The app's build hooks, in real builds: Heroku's bin/pre_compile and bin/post_compile,
dotcloud.yml's prebuild and postbuild, Django's collectstatic (pass, fail, disabled). Then the
state key that lets a warm `make -q compile` say there is nothing to do.

One build cache for the module (bin/compile serialises builds that share it), so Django and the
dotCloud requirements are fetched once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from pathlib import Path

import pytest

from conftest import BP, Build, build_env, copy_fixture, local_versions, run_compile
from dcbuild import hooks

STEP_PRE = "-----> Running bin/pre_compile"
STEP_PREBUILD = "-----> Running dotcloud.yml prebuild (./prebuild.sh)"
STEP_PIP = "-----> Installing requirements with uv (requirements.txt)"
STEP_POSTBUILD = "-----> Running dotcloud.yml postbuild (./postbuild.sh)"
STEP_POST = "-----> Running bin/post_compile"
NOT_AGAIN = "-----> Not running the app's build hooks again"
COLLECT = "-----> $ python manage.py collectstatic --noinput"


@pytest.fixture(scope="module")
def cache(shared_dir, runtimes) -> Path:
    root = shared_dir / "hooks"
    root.mkdir(exist_ok=True)
    with open(shared_dir / "hooks.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if local_versions():
            # Offline, the default Python is the newest local one: share the run's archive.
            with contextlib.suppress(FileExistsError):
                runtimes.seed(root / "cache", max(local_versions()))
    return root / "cache"


def env_dir(path: Path, **config: str) -> Path:
    """The platform's config vars: one file per variable (written as `echo` would)."""
    path.mkdir()
    for name, value in config.items():
        (path / name).write_text(value + "\n")
    return path


def make_q(app: Path, cache: Path, env: Path | None = None) -> int:
    """`make -q compile` on the built app: 0 when make has nothing to do."""
    args = ["make", "-C", str(BP), "-q", "compile", f"BUILD_DIR={app}", f"CACHE_DIR={cache}",
            f"ENV_DIR={env or ''}"]
    return subprocess.run(args, env=build_env(), capture_output=True, text=True).returncode


def assert_failure(build: Build, summary: str) -> None:
    assert build.returncode != 0, build
    assert f" !     Error: {summary}" in build.stderr, build
    assert "Traceback" not in build.stderr, build


# --- Heroku's and dotCloud's hooks ------------------------------------------------------


@pytest.mark.slow
def test_hooks_run_in_order_with_config_vars_and_indented_output(tmp_path, cache):
    app = copy_fixture("hooks_pass", tmp_path / "app")
    config = env_dir(tmp_path / "env", HOOK_GREETING="hello", PATH="/nonexistent")
    build = run_compile(app, cache, config)
    assert build.returncode == 0, build
    out = build.stdout
    order = [out.index(step) for step in (STEP_PRE, STEP_PREBUILD, STEP_PIP, STEP_POSTBUILD, STEP_POST)]
    assert order == sorted(order), out
    # pre_compile wrote requirements.txt before the plan read it (the fixture has none).
    assert (app / "site" / "built-by.txt").read_text() == "pre_compile\nprebuild\npostbuild\npost_compile\n"
    assert os.access(app / "bin" / "pre_compile", os.X_OK)  # made executable, as Heroku does
    slug_python = app / ".dotcloud" / "python" / "bin" / "python3"
    # Config vars are exported (trailing newline gone, as $(cat) gives it); PATH is not taken.
    assert f"       pre_compile: cwd={app} greeting=hello\n" in out
    assert f"       prebuild: cwd={app / 'site'} python=" in out
    assert f"prebuild: cwd={app / 'site'} python={slug_python}" not in out  # no slug Python yet
    assert f"       postbuild: cwd={app / 'site'} python={slug_python}\n" in out
    assert "       postbuild: itsdangerous itsdangerous\n" in out
    assert f"       post_compile: cwd={app} python={slug_python} greeting=hello\n" in out
    assert f"       post_compile: BUILD_DIR={app} MAKEFLAGS=none\n" in out  # our make's flags stay ours
    assert "       stderr is shown too\n" in out
    assert "       last line without a newline\n" in out

    # Warm: nothing changed, so nothing runs, and make agrees.
    assert make_q(app, cache, config) == 0
    again = run_compile(app, cache, config)
    assert again.returncode == 0, again
    assert NOT_AGAIN in again.stdout
    assert STEP_PRE not in again.stdout and STEP_POST not in again.stdout
    # A changed config var runs them all again (on a platform every build is a fresh directory).
    (config / "HOOK_GREETING").write_text("bonjour\n")
    assert make_q(app, cache, config) != 0
    changed = run_compile(app, cache, config)
    assert changed.returncode == 0, changed
    assert STEP_PRE in changed.stdout and STEP_POST in changed.stdout
    assert "greeting=bonjour" in changed.stdout


@pytest.mark.slow
@pytest.mark.parametrize("where", ["pre_compile", "postbuild", "post_compile"])
def test_failing_hook_stops_the_build_and_is_named(tmp_path, cache, where):
    app = copy_fixture("hooks_fail", tmp_path / "app")
    if where == "pre_compile":
        (app / "bin" / "post_compile").unlink()
        (app / "bin" / "pre_compile").write_text("#!/bin/sh\necho 'pre_compile: no token'\nexit 4\n")
        summary = "bin/pre_compile failed (exit status 4)."
    elif where == "postbuild":
        (app / "bin" / "post_compile").unlink()
        (app / "dotcloud.yml").write_text('www:\n  type: python\n  postbuild: "echo postbuild broken; exit 5"\n')
        summary = "dotcloud.yml postbuild (echo postbuild broken; exit 5) failed (exit status 5)."
    else:
        summary = "bin/post_compile failed (exit status 3)."
    build = run_compile(app, cache)
    assert_failure(build, summary)
    if where == "pre_compile":
        assert "       pre_compile: no token\n" in build.stdout
        assert "-----> Using cached Python" not in build.stdout  # stopped before the build started
        assert not (app / ".dotcloud" / "python").exists()
    elif where == "postbuild":
        assert "       postbuild broken\n" in build.stdout
    else:
        assert "       post_compile: about to fail\n" in build.stdout
        assert "       post_compile: something is wrong\n" in build.stdout
    assert not list((app / ".dotcloud" / "state").glob("hooks-*"))  # a failed step is not recorded


# --- Django's collectstatic ---------------------------------------------------------------


@pytest.mark.slow
def test_collectstatic_collects_into_static_root(tmp_path, cache):
    app = copy_fixture("django_static", tmp_path / "app")
    build = run_compile(app, cache)
    assert build.returncode == 0, build
    assert COLLECT in build.stdout
    assert f"       1 static file copied to '{app / 'staticfiles'}'.\n" in build.stdout
    assert (app / "staticfiles" / "site.css").read_text() == (app / "assets" / "site.css").read_text()
    assert make_q(app, cache) == 0


@pytest.mark.slow
def test_collectstatic_failure_says_why_and_how_to_skip(tmp_path, cache):
    app = copy_fixture("django_static", tmp_path / "app")
    settings = app / "proj" / "settings.py"
    settings.write_text("".join(line for line in settings.read_text().splitlines(True) if "STATIC_ROOT" not in line))
    build = run_compile(app, cache)
    assert_failure(build, "collectstatic failed (exit status 1).")
    assert " !     Cause: django.core.exceptions.ImproperlyConfigured: You're using the staticfiles app without" \
        in build.stderr
    assert "DISABLE_COLLECTSTATIC=1" in build.stderr
    assert "       django.core.exceptions.ImproperlyConfigured" in build.stdout  # Django's own output, indented


@pytest.mark.slow
def test_collectstatic_disabled_by_config_var(tmp_path, cache):
    app = copy_fixture("django_static", tmp_path / "app")
    build = run_compile(app, cache, env_dir(tmp_path / "env", DISABLE_COLLECTSTATIC="1"))
    assert build.returncode == 0, build
    assert "-----> Skipping collectstatic (manage.py): DISABLE_COLLECTSTATIC is set" in build.stdout
    assert COLLECT not in build.stdout
    assert not (app / "staticfiles").exists()


# --- the state key (no builds) ------------------------------------------------------------


def test_tree_digest_is_content_not_mtime(tmp_path):
    app = tmp_path / "app"
    (app / ".dotcloud" / "state").mkdir(parents=True)
    (app / "pkg" / "__pycache__").mkdir(parents=True)
    (app / "a.txt").write_text("one\n")
    (app / "pkg" / "m.py").write_text("x = 1\n")
    first = hooks.tree_digest(app)
    os.utime(app / "a.txt", (1, 1))  # a fresh checkout: new mtimes, same content
    (app / "pkg" / "__pycache__" / "m.cpython-313.pyc").write_bytes(b"\0")
    (app / ".dotcloud" / "python").mkdir()  # the buildpack's own tree
    (app / ".dotcloud" / "python" / "x").write_text("y")
    assert hooks.tree_digest(app) == first
    (app / "a.txt").write_text("two\n")
    second = hooks.tree_digest(app)
    assert second != first
    (app / "pkg" / "m.py").chmod(0o755)  # an executable bit changes what a hook would run
    assert hooks.tree_digest(app) != second
    (app / "link").symlink_to("a.txt")
    assert hooks.tree_digest(app) != second


def test_manage_py_in_the_approot_first_then_the_shallowest(tmp_path):
    app = tmp_path / "app"
    for rel in ("deep/er/manage.py", "b/manage.py", "a/manage.py", "site/x/manage.py", ".dotcloud/manage.py"):
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        (app / rel).write_text("")
    assert hooks.find_manage(app, "site/x") == app / "site/x/manage.py"
    assert hooks.find_manage(app, ".") == app / "a/manage.py"
    (app / "manage.py").write_text("")
    assert hooks.find_manage(app, ".") == app / "manage.py"
    empty = tmp_path / "empty"
    (empty / "one/two/three").mkdir(parents=True)
    (empty / "one/two/three/manage.py").write_text("")  # four levels down: Heroku's limit is three
    assert hooks.find_manage(empty, ".") is None


def test_config_vars_for_hooks(tmp_path):
    config = env_dir(tmp_path / "env", GREETING="hi there", PATH="/bad", LD_PRELOAD="/evil.so",
                     DISABLE_COLLECTSTATIC="0")
    env = hooks.hook_env(tmp_path, config, tmp_path / "cache", slug_python=True)
    assert env["GREETING"] == "hi there"
    assert env.get("LD_PRELOAD") != "/evil.so"
    assert env["PATH"].startswith(f"{tmp_path}/.dotcloud/python/bin:") and "/bad" not in env["PATH"]
    assert (env["BUILD_DIR"], env["ENV_DIR"]) == (str(tmp_path), str(config))
    assert not hooks.config_flag("DISABLE_COLLECTSTATIC", config)  # 0 means not disabled
    (config / "DISABLE_COLLECTSTATIC").write_text("1\n")
    assert hooks.config_flag("DISABLE_COLLECTSTATIC", config)


# --- dotCloud's order: environment.json first; collectstatic in postinstall; the real cause ---------


@pytest.mark.slow
def test_environment_json_exists_before_collectstatic_and_is_gone_after(tmp_path, cache):
    """dotCloud's Django tutorial reads ~/environment.json in settings.py."""
    app = copy_fixture("django_envjson", tmp_path / "app")
    build = run_compile(app, cache, env_dir(tmp_path / "env", DJANGO_SECRET_KEY="s3cret"))
    assert build.returncode == 0, build
    assert COLLECT in build.stdout
    assert (app / "static" / "site.css").is_file()
    # The web process writes it at each start, with the run's config vars; the slug holds none.
    assert not [p.name for p in app.iterdir() if p.name.startswith("environment.")]


@pytest.mark.slow
def test_collectstatic_run_by_postinstall_is_skipped_at_build(tmp_path, cache):
    app = copy_fixture("django_envjson", tmp_path / "app")
    hook = app / "postinstall"
    hook.write_text("#!/bin/sh\npython manage.py collectstatic --noinput\n")
    hook.chmod(0o755)
    build = run_compile(app, cache)
    assert build.returncode == 0, build
    assert ("-----> Skipping collectstatic (manage.py): the postinstall (postinstall) hook runs it at every"
            " start, as on dotCloud") in build.stdout
    assert COLLECT not in build.stdout
    assert not (app / "static").exists()


@pytest.mark.slow
def test_collectstatic_failure_names_the_apps_line_or_the_old_manage_py(tmp_path, cache):
    app = copy_fixture("django_envjson", tmp_path / "app")
    settings = app / "hellodjango" / "settings.py"
    settings.write_text(settings.read_text().replace('env["DOTCLOUD_SERVICE_NAME"]', 'env["DOTCLOUD_DB_SQL_HOST"]'))
    build = run_compile(app, cache)
    assert_failure(build, "collectstatic failed (exit status 1).")
    line = next(i for i, text in enumerate(settings.read_text().splitlines(), 1) if "DOTCLOUD_DB_SQL_HOST" in text)
    assert " !     Cause: KeyError: 'DOTCLOUD_DB_SQL_HOST'\n" in build.stderr
    assert f" !     In the app's code: hellodjango/settings.py:{line} (in <module>)\n" in build.stderr
    assert """ !         SERVICE_NAME = env["DOTCLOUD_DB_SQL_HOST"]\n""" in build.stderr
    assert "Fix the static files settings" not in build.stderr

    # With DATABASE_URL set, dotCloud's name for the database is there at build time too.
    assert run_compile(app, cache, env_dir(tmp_path / "env", DATABASE_URL="postgres://u:p@db:5432/x")).returncode == 0

    # Django 1.3's manage.py, under a current Django.
    (app / "manage.py").write_text(
        "#!/usr/bin/env python\nfrom django.core.management import execute_manager\n"
        "import settings\n\nif __name__ == '__main__':\n    execute_manager(settings)\n")
    build = run_compile(app, cache)
    assert_failure(build, "collectstatic failed (exit status 1).")
    assert " !     Cause: manage.py is Django 1.3's: it imports execute_manager, removed in Django 1.6.\n" \
        in build.stderr
    assert "Fix the static files settings" not in build.stderr
