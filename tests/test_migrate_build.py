"""The migration report and the diagnosis of failed installs in real builds (issue 14):

- a Python 2 dotCloud app (test/fixtures/migrate_py2) builds with the report printed before the
  installs, written to .dotcloud/migration.txt, and a warning; a redeploy in a fresh directory
  shows it from the cache; DC_STRICT_PY3=1 (a config var) fails the build with one error
  paragraph and no make noise, cached or not; the ported app passes under DC_STRICT_PY3=1
  -> test_report_warns_caches_and_strict_fails_until_ported
- old pins (migrate_oldpins): the report names them before the install fails, and the failure
  says the package is Python 2 code and what to do -> test_report_comes_before_a_failing_install
- a dependency of a dependency that cannot be built (diagnose_distribute: distribute==0.7.3)
  -> the failing package, the app's requirement that pulls it in and its file:line
  -> test_a_failing_dependency_of_a_dependency_is_named
- `-e git://` (diagnose_git) -> the git+https:// line to use -> test_git_protocol_gets_the_https_line
- bin/report and make report before the first deploy: the same report, the app left untouched
  -> test_report_on_its_own_reads_the_app_and_writes_nothing
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import BP, Build, build_env, copy_fixture, local_index, local_line, make_wheel, run_compile

MAKE_NOISE = ("make: ***", "Deleting file", "Build stopped")


@pytest.fixture
def py313():
    version = local_line((3, 13))
    if version is None:
        pytest.skip("no local CPython 3.13 on this machine (cgi is removed in 3.13)")
    return version


def seeded(tmp_path: Path, runtimes, version, fixture: str, name: str = "app") -> tuple[Path, Path]:
    app = copy_fixture(fixture, tmp_path / name)
    (app / "runtime.txt").write_text(f"python-{version}\n")
    cache = tmp_path / "cache"
    if not (cache / "python-dotcloud" / "runtimes").is_dir():
        runtimes.seed(cache, version)
    return app, cache


def one_error(build: Build, *fragments: str) -> str:
    """A clean failure: non-zero, one ` !     Error:` paragraph holding every fragment, no make noise."""
    assert build.returncode != 0, build
    # Ours would start a line; a package's build may print its own, indented under the installer's output.
    assert not any(line.startswith("Traceback") for line in build.output.splitlines()), build
    for noise in MAKE_NOISE:
        assert noise not in build.output, build
    assert len([line for line in build.stderr.splitlines() if line.startswith(" !     Error: ")]) == 1, build
    paragraph = "\n".join(line for line in build.stderr.splitlines() if line.startswith(" !     "))
    for fragment in fragments:
        assert fragment in paragraph, build
    return paragraph


def config_vars(path: Path, **values: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for key, value in values.items():
        (path / key).write_text(value)
    return path


def test_report_warns_caches_and_strict_fails_until_ported(tmp_path, runtimes, py313):
    app, cache = seeded(tmp_path, runtimes, py313, "migrate_py2")
    cold = run_compile(app, cache)
    assert cold.returncode == 0, cold
    header = f"-----> Migration report for Python {py313}: 4 syntax, 5 modules, 1 home, 2 data"
    assert header + " (all in .dotcloud/migration.txt)\n" in cold.stdout, cold
    # After the runtime, before any install: a failing install would not hide it.
    assert cold.stdout.index(header) < cold.stdout.index("-----> Installing dotCloud requirements"), cold
    report = (app / ".dotcloud" / "migration.txt").read_text()
    for line in ("shop/models.py:4: octal literal (0755) -> 0o755", "shop/views.py:5: backticks -> repr(...)",
                 "wsgi.py:11: print statement -> print(...)", "wsgi.py:14: `except X, e:` -> except X as e:",
                 "shop/models.py:1: cgi (removed in 3.13) -> urllib.parse.parse_qs",
                 "shop/models.py:2: imp (removed in 3.12) -> importlib",
                 "shop/views.py:1: implicit relative import of models (Python 2) -> from . import models",
                 "wsgi.py:3: urllib2 (Python 2) -> urllib.request, urllib.error",
                 "wsgi.py:4: StringIO (Python 2) -> io.StringIO (text) or io.BytesIO (bytes)",
                 "wsgi.py:6: ENV = json.load(open('/home/dotcloud/environment.json'))",
                 "db (mysql): provision a MySQL database add-on (DATABASE_URL); its URL in DATABASE_URL",
                 "cache (redis): provision a Redis add-on (REDIS_URL); its URL in REDIS_URL"):
        assert f"  {line}" in report, report
        assert line in cold.stdout, cold
    assert f"Warning: the app has 4 line(s) of Python 2 syntax that Python {py313} cannot run" in cold.stderr

    # A redeploy in a fresh directory: the report comes from the cache, the file is the same.
    again = copy_fixture("migrate_py2", tmp_path / "again")
    (again / "runtime.txt").write_text(f"python-{py313}\n")
    warm = run_compile(again, cache)
    assert warm.returncode == 0, warm
    assert header + " (all in .dotcloud/migration.txt) (app unchanged: from the cache)" in warm.stdout, warm
    assert warm.stdout.index(header) > warm.stdout.index("-----> Using cached packages"), warm
    assert (again / ".dotcloud" / "migration.txt").read_text() == report

    # DC_STRICT_PY3=1 as a config var: the cached report fails the build ...
    strict = config_vars(tmp_path / "env", DC_STRICT_PY3="1")
    third = copy_fixture("migrate_py2", tmp_path / "third")
    (third / "runtime.txt").write_text(f"python-{py313}\n")
    one_error(run_compile(third, cache, strict), "the app has 4 line(s) of Python 2 syntax, and DC_STRICT_PY3 is set",
              "(first: shop/models.py:4: octal literal (0755) -> 0o755)", "or unset DC_STRICT_PY3")
    # ... and so does a new one (made by make's report step), with the new line in it.
    with (third / "shop" / "models.py").open("a") as f:
        f.write("print 'one more'\n")
    build = run_compile(third, cache, strict)
    one_error(build, "the app has 5 line(s) of Python 2 syntax, and DC_STRICT_PY3 is set")
    assert "shop/models.py:5: print statement -> print(...)" in build.stdout
    assert "(app unchanged" not in build.output

    # Ported, the app passes under DC_STRICT_PY3; what is left is not syntax.
    (third / "wsgi.py").write_text((third / "wsgi.py").read_text()
                                   .replace('print "request for", environ[\'PATH_INFO\']',
                                            "print('request for', environ['PATH_INFO'])")
                                   .replace("except ValueError, e:", "except ValueError as e:"))
    (third / "shop" / "models.py").write_text("MODE = 0o644\n")
    (third / "shop" / "views.py").write_text("from .models import MODE\n\n\ndef show(value):\n"
                                             "    return repr(value) if value != MODE else None\n")
    ported = run_compile(third, cache, strict)
    assert ported.returncode == 0, ported
    assert f"-----> Migration report for Python {py313}: 2 modules, 1 home, 2 data" in ported.stdout, ported
    assert "Python 2 syntax (compiled by Python" not in ported.stdout
    assert "Python 2 syntax (compiled by Python 3.13.0): none" in (third / ".dotcloud/migration.txt").read_text()


def test_report_comes_before_a_failing_install(tmp_path, runtimes, py313):
    app, cache = seeded(tmp_path, runtimes, py313, "migrate_oldpins")
    build = run_compile(app, cache)
    one_error(build, "uv could not install the packages in requirements.txt", "is Python 2 code",
              "then deploy again")
    report = build.stdout[:build.stdout.index("-----> Installing requirements with uv")]
    for line in ("wsgi.py:4: `print >>f, x` (compiles, but is not a print) -> print(x, file=f)",
                 "requirements.txt:2: Django==1.3.1: Django 1.3 supports Python 2.4-2.7 only; the first Django"
                 " for Python 3.13 is 5.1.3: pin Django>=5.1.3",
                 "requirements.txt:3: wsgiref==0.1.2: Python 2 only: remove the line (wsgiref is in the standard",
                 "requirements.txt:4: MySQL-python==1.2.3: Python 2 only: use mysqlclient"):
        assert line in report, build
    assert (app / ".dotcloud" / "migration.txt").is_file()


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_a_failing_dependency_of_a_dependency_is_named(tmp_path, runtimes, py313, installer):
    app, cache = seeded(tmp_path, runtimes, py313, "diagnose_distribute")
    # PyPI has distribute 0.7.3 (which no longer builds); the test's own index has the package that pins it.
    index = local_index(tmp_path / "index", [make_wheel(tmp_path / "wheels", "old-redis-cache", "1.0",
                                                        requires=("distribute==0.7.3",))])
    env = config_vars(tmp_path / "env", PIP_EXTRA_INDEX_URL=index, DC_INSTALLER=installer)
    build = run_compile(app, cache, env)
    one_error(build, f"{installer} could not install the packages in requirements.txt",
              "Failed requirement: distribute==0.7.3, which requirements.txt does not name:"
              " old-redis-cache==1.0 (requirements.txt:3) requires it.",
              "distribute was merged back into setuptools in 2013",
              "Pin a release of old-redis-cache that does not need distribute==0.7.3")
    assert "requirements.txt:2" not in build.stderr  # itsdangerous, the line before, is not blamed


def test_git_protocol_gets_the_https_line(tmp_path, runtimes, py313):
    app, cache = seeded(tmp_path, runtimes, py313, "diagnose_git")
    build = run_compile(app, cache)
    one_error(build, "Failed requirement: -e git://github.com/jezdez/django-appconf.git#egg=django-appconf"
              " (requirements.txt:2)", "GitHub turned the unauthenticated git protocol off in 2022",
              "Use -e git+https://github.com/jezdez/django-appconf.git#egg=django-appconf in requirements.txt:2")
    assert ("requirements.txt:2: git:// no longer works (GitHub turned it off in 2022): use"
            " git+https://github.com/jezdez/django-appconf.git#egg=django-appconf") in build.stdout


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"dir" for p in sorted(root.rglob("*"))}


def test_report_on_its_own_reads_the_app_and_writes_nothing(tmp_path, runtimes, py313):
    app, cache = seeded(tmp_path, runtimes, py313, "migrate_py2", name="my app")  # a space: make's word splitting
    before = snapshot(app)
    res = subprocess.run([str(BP / "bin" / "report"), str(app), str(cache)], env=build_env(), capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith(f"Migration report for Python {py313}")
    assert "  wsgi.py:11: print statement -> print(...)" in res.stdout
    assert "  db (mysql): provision a MySQL database add-on" in res.stdout
    assert f"(4 Python files compiled by Python {py313} in" in res.stderr
    assert snapshot(app) == before
    # The build says the same.
    build = run_compile(app, cache)
    assert build.returncode == 0, build
    assert (app / ".dotcloud" / "migration.txt").read_text() == res.stdout
    # make report: the same target; without APP, an error saying how to call it; DC_STRICT_PY3 exits 1.
    plain = copy_fixture("migrate_py2", tmp_path / "plain")
    (plain / "runtime.txt").write_text(f"python-{py313}\n")
    strict = subprocess.run(["make", "--no-print-directory", "-C", str(BP), "report", f"APP={plain}",
                             f"CACHE_DIR={cache}"],
                            env=build_env(DC_STRICT_PY3="1"), capture_output=True, text=True, timeout=600)
    assert strict.returncode != 0 and strict.stdout.startswith("Migration report"), strict.stdout + strict.stderr
    assert "Error: the app has 4 line(s) of Python 2 syntax, and DC_STRICT_PY3 is set" in strict.stderr
    missing = subprocess.run(["make", "-C", str(BP), "report"], env=build_env(), capture_output=True, text=True)
    assert missing.returncode != 0 and "make report needs APP=path/to/app" in missing.stderr
    assert not os.path.exists(plain / ".dotcloud")
