"""The migration report (issue 14): dcbuild.py2scan under each local target Python, the report's
sections (dcbuild.migrate, dcbuild.releases), the diagnosis of failed installs (dcbuild.diagnose)
and the end of a failed build (dcbuild.failed). The builds that print and cache the report are in
test_migrate_build.py.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from conftest import BP
from dcbuild import diagnose, failed, localpython, migrate, releases

# The lines a build may target (3.11 and newer); each words its syntax errors its own way.
LOCAL = {f"{lp.version.line[0]}.{lp.version.line[1]}": lp for lp in localpython.find_local()
         if lp.version.line >= (3, 11)}

PY2_FILE = textwrap.dedent('''\
    import sys
    print "hello %s" % (
        "x")
    print >>sys.stderr, "x"
    try:
        pass
    except ValueError, e:
        print e
    x = 0755
    y = `x`
    if x <> 1:
        print
    exec "z = 1"
    def f(async=False):
        raise ValueError, "bad"
    z = ur'abc'
    n = 10L
    ''')
EXPECTED = {
    2: "print statement -> print(...)",
    4: "`print >>f, x` (compiles, but is not a print) -> print(x, file=f)",
    7: "`except X, e:` -> except X as e:",
    8: "print statement",
    9: "octal literal (0755) -> 0o755",
    10: "backticks -> repr(...)",
    11: "`<>` operator -> !=",
    12: "bare `print` (compiles, prints nothing) -> print()",
    13: "exec statement",
    14: "`async`/`await` used as a name",
    15: "`raise E, message` -> raise E(message)",
    16: "ur'' string",
    17: "long literal (10L) -> 10",
}


@pytest.fixture(params=sorted(LOCAL) or ["none"])
def target(request) -> localpython.LocalPython:
    if request.param == "none":
        pytest.skip("no local CPython")
    return LOCAL[request.param]


def test_every_python2_construct_is_named_with_its_line(tmp_path, target):
    (tmp_path / "old.py").write_text(PY2_FILE)
    (tmp_path / "good.py").write_text("print('fine', file=__import__('sys').stderr)\n")
    scan = migrate.run_scanner(tmp_path, str(target.executable), ["old.py", "good.py"])
    assert scan["version"][:2] == list(target.version.line)
    lines = migrate.syntax_lines(scan)
    for number, what in EXPECTED.items():
        assert any(line.startswith(f"old.py:{number}: {what}") for line in lines), (number, lines)
    # One line each: the continuation of line 2's print is not a second finding, good.py has none.
    assert len(lines) == len(EXPECTED), lines
    assert not any(line.startswith("good.py") for line in lines)


def test_tabs_mixed_with_spaces_and_latin1_without_declaration(tmp_path, target):
    (tmp_path / "tabs.py").write_text("if 1:\n        x = 1\n\ty = 2\n")
    (tmp_path / "latin.py").write_bytes(b"s = '\xe9'\n")
    (tmp_path / "declared.py").write_bytes(b"# -*- coding: latin-1 -*-\ns = '\xe9'\n")
    lines = migrate.syntax_lines(migrate.run_scanner(tmp_path, str(target.executable),
                                                     ["tabs.py", "latin.py", "declared.py"]))
    assert lines == ["latin.py:1: not UTF-8 and no coding declaration -> add `# -*- coding: latin-1 -*-` or"
                     " re-save as UTF-8", "tabs.py:3: tabs and spaces mixed in indentation -> indent with spaces"]


def test_imports_of_python2_files_are_found_and_judged_by_the_target_version(tmp_path, target):
    app = tmp_path
    (app / "pkg").mkdir()
    (app / "pkg" / "__init__.py").write_text("")
    (app / "pkg" / "models.py").write_text("import cgi, imp\nfrom collections import Mapping\n")
    (app / "pkg" / "views.py").write_text("from models import X\nimport urllib2\nprint 'py2 file'\n")
    (app / "StringIO.py").write_text("# the app's own module of that name\n")
    (app / "main.py").write_text("import StringIO\nfrom urllib import urlencode\n")
    files = ["StringIO.py", "main.py", "pkg/__init__.py", "pkg/models.py", "pkg/views.py"]
    scan = migrate.run_scanner(app, str(target.executable), files)
    line = target.version.line
    lines = migrate.module_lines(scan, app, (*line, 0), set(), ".")
    text = "\n".join(lines)
    assert "pkg/views.py:1: implicit relative import of models (Python 2) -> from . import models" in text
    assert "pkg/views.py:2: urllib2 (Python 2) -> urllib.request, urllib.error" in text  # after a print statement
    assert "main.py:2: urllib.urlencode (Python 2) -> urllib.parse.urlencode" in text
    assert "StringIO" not in text  # the app has its own
    assert ("pkg/models.py:1: imp (removed in 3.12)" in text) == (line >= (3, 12))
    assert ("pkg/models.py:1: cgi (removed in 3.13)" in text) == (line >= (3, 13))
    assert "collections.Mapping (removed in 3.10) -> collections.abc.Mapping" in text
    # legacy-cgi among the requirements puts cgi back.
    assert "cgi (" not in "\n".join(migrate.module_lines(scan, app, (3, 13, 0), {"legacy-cgi"}, "."))


def test_django_pins_against_the_target_python():
    assert releases.django("1.3.1", (3, 13, 0)) == (
        "Django 1.3 supports Python 2.4-2.7 only; the first Django for Python 3.13 is 5.1.3:"
        " pin Django>=5.1.3 (and port the app to it)")
    assert releases.django("1.11.29", (3, 12, 1)).endswith("the first Django for Python 3.12 is 4.2.8:"
                                                            " pin Django>=4.2.8 (and port the app to it)")
    assert releases.django("4.2.1", (3, 12, 0)) == "Django 4.2 supports Python 3.12 from 4.2.8 on: pin Django>=4.2.8"
    assert releases.django("4.2.20", (3, 12, 0)) is None
    assert releases.django("5.2.8", (3, 14, 0)) is None
    assert releases.django("5.2", (3, 14, 0)) == "Django 5.2 supports Python 3.14 from 5.2.8 on: pin Django>=5.2.8"
    assert "no Django release known here supports 3.15" in releases.django("6.0", (3, 15, 0))
    assert releases.django("not-a-version", (3, 13, 0)) is None


def test_requires_python_specifiers():
    target = (3, 13, 0)
    for spec, ok in [(">=3.8", True), (">=3.14", False), ("<3.13", False), ("<3.14", True),
                     (">=2.7, !=3.0.*, !=3.1.*", True), (">=2.6, <3", False), ("==2.7.*", False),
                     ("~=3.6", True), ("~=3.6.0", False), ("!=3.13.*", False), ("", True), ("nonsense", True)]:
        assert releases.admits(spec, target) is ok, spec


def test_pypi_data_gives_the_nearest_release_for_the_target():
    def files(spec, tag="py3"):
        return [{"packagetype": "bdist_wheel", "python_version": tag, "requires_python": spec,
                 "filename": f"x-1-{tag}-none-any.whl"}]

    data = {"releases": {"1.0": files(None, "py2"), "1.1": files("<3"), "1.2rc1": files(None), "2.0": files(">=3.8"),
                         "1.5": files(None, "cp27") + files(None, "cp313")}}
    assert releases.from_pypi(data, "1.0", (3, 13, 0)) == (
        "release 1.0 has only wheels for other Pythons: nothing for Python 3.13; the nearest release for 3.13 is 1.5")
    assert releases.from_pypi(data, "1.1", (3, 12, 0)) == (
        "release 1.1 requires Python <3: nothing for Python 3.12; the nearest release for 3.12 is 2.0")
    assert releases.from_pypi(data, "2.0", (3, 13, 0)) is None
    assert releases.from_pypi(data, "9.9", (3, 13, 0)) is None  # not a release PyPI knows: nothing said
    only_old = {"releases": {"1.0": files("<3")}}
    assert releases.from_pypi(only_old, "1.0", (3, 13, 0)).endswith("no later release has one for 3.13")


def test_python2_only_packages_and_the_lookup_switch(monkeypatch):
    found = releases.check([("MySQL-python", "1.2.3"), ("wsgiref", "0.1.2"), ("Django", "1.3.1")], (3, 13, 0),
                           {"DC_PYPI_LOOKUP": "0"})
    assert found["MySQL-python"] == "Python 2 only: use mysqlclient (the same MySQLdb module, for Python 3)"
    assert found["wsgiref"] == "Python 2 only: remove the line (wsgiref is in the standard library)"
    assert "first Django for Python 3.13 is 5.1.3" in found["Django"]
    assert releases.enabled({"PIP_INDEX_URL": "", "DC_PYPI_LOOKUP": "1"})
    assert not releases.enabled({"PIP_INDEX_URL": "https://mirror.example/simple", "DC_PYPI_LOOKUP": ""})
    assert not releases.enabled({"PIP_INDEX_URL": "", "DC_PYPI_LOOKUP": "0"})


def test_requirements_section_names_file_line_and_git_protocol(tmp_path):
    (tmp_path / "requirements.txt").write_text("-r base.txt\nDjango==1.3.1  # the framework\n"
                                               "-e git://github.com/jezdez/django-appconf.git#egg=django-appconf\n")
    (tmp_path / "base.txt").write_text("South==0.7.3\nitsdangerous==2.2.0\n")
    lines, names = migrate.requirement_lines(tmp_path, "requirements.txt", (3, 13, 0), {"DC_PYPI_LOOKUP": "0"})
    assert lines == [
        "requirements.txt:3: git:// no longer works (GitHub turned it off in 2022):"
        " use git+https://github.com/jezdez/django-appconf.git#egg=django-appconf",
        "requirements.txt:2: Django==1.3.1: Django 1.3 supports Python 2.4-2.7 only; the first Django for"
        " Python 3.13 is 5.1.3: pin Django>=5.1.3 (and port the app to it)",
        "base.txt:1: South==0.7.3: Python 2 only: remove the line (Django 1.7 and later have their own"
        " migrations (manage.py makemigrations))",
    ]
    assert {"django", "south", "itsdangerous"} <= names


def test_data_services_and_the_variables_the_code_reads(tmp_path):
    (tmp_path / "settings.py").write_text("import json, os\nH = os.environ['DOTCLOUD_DB_MYSQL_HOST']\n"
                                          "K = os.environ.get('DOTCLOUD_API_KEY')\nE = 'DOTCLOUD_ENVIRONMENT'\n")
    (tmp_path / "blob.bin").write_bytes(b"\0/home/dotcloud DOTCLOUD_BINARY_X\0")
    (tmp_path / "nginx.conf").write_text("root /home/dotcloud/current/static;\n")
    tree = migrate.walk(tmp_path)
    assert tree.python == ["settings.py"]
    assert tree.home == ["nginx.conf:1: root /home/dotcloud/current/static;"]
    lines = migrate.data_lines({"db": "mysql", "cache": "redis"}, tree.variables)
    assert lines[0].startswith("cache (redis): provision a Redis add-on (REDIS_URL); its URL in REDIS_URL")
    assert "CACHE_URL fills DOTCLOUD_CACHE_REDIS_HOST/_PORT/_LOGIN/_PASSWORD/_URL" in lines[0]
    assert lines[1].startswith("db (mysql): provision a MySQL database add-on (DATABASE_URL); its URL in DATABASE_URL")
    # DOTCLOUD_DB_* comes from the db service, DOTCLOUD_ENVIRONMENT from the buildpack; the API key is the app's.
    assert lines[2:] == ["settings.py:3: names DOTCLOUD_API_KEY, which no data service here provides: set it as a"
                         " config var (or declare its data service in dotcloud.yml)"]


def test_key_follows_content_not_mtimes(tmp_path):
    (tmp_path / "wsgi.py").write_text("application = None\n")
    (tmp_path / "requirements.txt").write_text("itsdangerous==2.2.0\n")
    first = migrate.key(tmp_path, "3.13.0", "requirements.txt", None)
    os.utime(tmp_path / "wsgi.py", (1, 1))
    assert migrate.key(tmp_path, "3.13.0", "requirements.txt", None) == first
    assert migrate.key(tmp_path, "3.12.1", "requirements.txt", None) != first
    (tmp_path / "requirements.txt").write_text("itsdangerous==2.1.0\n")
    assert migrate.key(tmp_path, "3.13.0", "requirements.txt", None) != first
    (tmp_path / ".dotcloud").mkdir()
    (tmp_path / ".dotcloud" / "migration.txt").write_text("the slug's own output is not part of the app\n")
    (tmp_path / "requirements.txt").write_text("itsdangerous==2.2.0\n")
    assert migrate.key(tmp_path, "3.13.0", "requirements.txt", None) == first
    # What the build installs (configs that name /home/dotcloud and DOTCLOUD_) and what hooks add
    # (collected static files) leave the key and the report alone; the app's own changes do not.
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "supervisord.conf").write_bytes((BP / "config" / "supervisord.conf").read_bytes())
    (tmp_path / "staticfiles").mkdir()
    (tmp_path / "staticfiles" / "site.css").write_text("body { color: #333; }\n")
    assert migrate.key(tmp_path, "3.13.0", "requirements.txt", None) == first
    assert migrate.walk(tmp_path).home == []
    (tmp_path / "config" / "supervisord.conf").write_text("[program:w]\ncommand=/home/dotcloud/env/bin/python w\n")
    assert migrate.walk(tmp_path).home == ["config/supervisord.conf:2: command=/home/dotcloud/env/bin/python w"]
    assert migrate.key(tmp_path, "3.13.0", "requirements.txt", None) != first


# --- failed installs (outputs as uv 0.13 and pip 24 print them) -------------------------------

UV_CHAIN = """\
error: Failed to build `distribute==0.7.3`
  cause: The build backend returned an error
  cause: Call to `setuptools.build_meta:__legacy__.prepare_metadata_for_build_wheel` failed (exit status: 1)
         error: invalid command 'dist_info'

hint: `distribute` (v0.7.3) was included because `top-app-lib` (v2.0) depends on `old-redis-cache==1.0` (v1.0) \
which depends on `distribute==0.7.3`
"""
PIP_CHAIN = """\
Collecting itsdangerous==2.2.0 (from -r requirements.txt (line 1))
Collecting distribute==0.7.3 (from old-redis-cache==1.0->top-app-lib==2.0->-r requirements.txt (line 2))
  Preparing metadata (pyproject.toml): finished with status 'error'
error: metadata-generation-failed
"""


@pytest.mark.parametrize("output", [UV_CHAIN, PIP_CHAIN], ids=["uv", "pip"])
def test_a_failing_dependency_of_a_dependency_is_named_with_its_chain(tmp_path, output):
    (tmp_path / "requirements.txt").write_text("itsdangerous==2.2.0\ntop-app-lib==2.0\n")
    assert diagnose.chain(output) == ["distribute==0.7.3", "old-redis-cache==1.0", "top-app-lib==2.0"]
    lines = diagnose.explain(output, "requirements.txt", tmp_path, "requirements.txt")
    assert lines[0] == ("Failed requirement: distribute==0.7.3, which requirements.txt does not name:"
                        " top-app-lib==2.0 (requirements.txt:2) requires it, through old-redis-cache==1.0.")
    assert lines[1].startswith("distribute was merged back into setuptools in 2013")
    assert lines[2].startswith("Pin a release of top-app-lib that does not need distribute==0.7.3")


def test_a_direct_requirement_is_left_to_the_installers_words(tmp_path):
    (tmp_path / "requirements.txt").write_text("dcbp-nowhere==1.0\n")
    output = "Collecting dcbp-nowhere==1.0 (from -r requirements.txt (line 1))\nERROR: No matching distribution\n"
    assert diagnose.chain(output) == []
    assert diagnose.explain(output, "requirements.txt", tmp_path, "requirements.txt") is None


def test_failed_build_paragraph_names_the_step_only_when_none_was_printed():
    make_line = "make: *** [Makefile:128: /c/python-dotcloud/layers/userreqs-3.13.0-abc] Error 1\n"
    assert failed.paragraph(" !     Error: uv could not install the packages.\n" + make_line) == []
    lines = failed.paragraph("cp: cannot stat 'x'\n" + make_line)
    assert lines[0] == "Error: the build failed while installing the app's requirements (exit status 1)."
    assert failed.paragraph("make: *** No rule to make target 'x'.  Stop.\n")[0] == (
        "Error: the build stopped: No rule to make target 'x'.  Stop.")
    for noise in (make_line.strip(), "make: *** Deleting file '/x/y'", "Makefile:72: *** Build stopped.  Stop."):
        assert failed.MAKE_NOISE.match(noise), noise
    assert not failed.MAKE_NOISE.match("make: *** No rule to make target 'x'.  Stop.")


def test_the_report_text_lists_every_section(tmp_path):
    report = migrate.Report("3.13.0", {"syntax": ["a.py:1: print statement -> print(...)"], "modules": [],
                                       "requirements": [], "home": [], "data": []})
    text = report.text()
    assert text.startswith("Migration report for Python 3.13.0")
    assert "Python 2 syntax (compiled by Python 3.13.0): 1\n  a.py:1: print statement" in text
    assert "Modules gone in Python 3.13.0: none" in text
    assert "2to3" in text
    json.dumps({"sections": report.sections})  # what the cache keeps
    assert Path(migrate.SCANNER).is_file()
