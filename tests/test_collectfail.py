"""dcbuild.collectfail: what a failed collectstatic is blamed on (tracebacks as Python prints them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcbuild import collectfail


def slug_django(app: Path, version: str, python: str = "3.13") -> None:
    pkg = app / ".dotcloud/python/lib" / f"python{python}" / "site-packages/django"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"from x import y\n\nVERSION = ({version}, 'final', 0)\n")


def test_a_python_2_django_is_named_with_the_release_to_pin(tmp_path):
    slug_django(tmp_path, "1, 5, 12")
    site = tmp_path / ".dotcloud/python/lib/python3.13/site-packages"
    lines = [
        "Traceback (most recent call last):",
        f'  File "{tmp_path}/manage.py", line 10, in <module>',
        "    execute_from_command_line(sys.argv)",
        f'  File "{site}/django/utils/six.py", line 12',
        '    print "x"',
        "    ^^^^^^^^^",
        "SyntaxError: Missing parentheses in call to 'print'. Did you mean print(...)?",
    ]
    out = collectfail.cause(lines, tmp_path)
    assert out[0] == "Cause: Django 1.5 cannot run on Python 3.13: pin Django>=5.1.3 in requirements.txt."
    assert out[1] == ("Python said: SyntaxError: Missing parentheses in call to 'print'. Did you mean print(...)?"
                      " (in six.py:12)")


@pytest.mark.parametrize(("version", "python", "expected"), [
    ((1, 3, 7), "3.14", "Django 1.3 cannot run on Python 3.14: pin Django>=5.2.8 in requirements.txt"),
    ((4, 2, 7), "3.12", "Django 4.2 cannot run on Python 3.12: pin Django>=4.2.8 in requirements.txt"),
    ((4, 2, 8), "3.12", None),
    ((5, 2, 8), "3.15", None),
    ((4, 2, 30), "3.15", "Django 4.2 cannot run on Python 3.15: pin a Django release that supports Python 3.15"
                         " (Django's FAQ lists them) in requirements.txt"),
])
def test_too_old(version, python, expected):
    assert collectfail.too_old(version, python) == expected


def test_an_old_django_is_blamed_even_when_the_app_fails_first(tmp_path):
    slug_django(tmp_path, "1, 3, 7", "3.12")
    lines = ["Traceback (most recent call last):", f'  File "{tmp_path}/settings.py", line 3, in <module>',
             "    import urlparse", "ModuleNotFoundError: No module named 'urlparse'"]
    assert collectfail.cause(lines, tmp_path)[0].startswith("Cause: Django 1.3 cannot run on Python 3.12")


def test_django_1_3_manage_py_under_a_current_django(tmp_path):
    slug_django(tmp_path, "5, 2, 19")
    lines = ["Traceback (most recent call last):", f'  File "{tmp_path}/manage.py", line 2, in <module>',
             "    from django.core.management import execute_manager",
             "ImportError: cannot import name 'execute_manager' from 'django.core.management'"
             " (/x/site-packages/django/core/management/__init__.py)"]
    out = collectfail.cause(lines, tmp_path)
    assert out[0] == "Cause: manage.py is Django 1.3's: it imports execute_manager, removed in Django 1.6."


def test_the_last_frame_in_the_apps_own_code(tmp_path):
    slug_django(tmp_path, "5, 2, 19")
    site = tmp_path / ".dotcloud/python/lib/python3.13/site-packages"
    lines = [
        "Traceback (most recent call last):",
        f'  File "{tmp_path}/manage.py", line 9, in <module>',
        "    execute_from_command_line(sys.argv)",
        f'  File "{site}/django/conf/__init__.py", line 81, in __getattr__',
        "    self._setup(name)",
        f'  File "{tmp_path}/proj/settings.py", line 7, in <module>',
        "    with open('/home/dotcloud/environment.json') as f:",
        f'  File "{site}/django/x.py", line 1, in f',
        "    pass",
        "FileNotFoundError: [Errno 2] No such file or directory: '/home/dotcloud/environment.json'",
    ]
    assert collectfail.cause(lines, tmp_path) == [
        "Cause: FileNotFoundError: [Errno 2] No such file or directory: '/home/dotcloud/environment.json'",
        "In the app's code: proj/settings.py:7 (in <module>)",
        "    with open('/home/dotcloud/environment.json') as f:",
        "Fix proj/settings.py, or skip this step: set the config var DISABLE_COLLECTSTATIC=1.",
    ]


def test_nothing_to_say_without_a_traceback_of_the_app(tmp_path):
    assert collectfail.cause(["CommandError: something"], tmp_path) is None
    assert collectfail.exception(["  noise", "django.core.exceptions.ImproperlyConfigured: no", ""]) == \
        "django.core.exceptions.ImproperlyConfigured: no"
