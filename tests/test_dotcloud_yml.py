"""dotcloud.yml: service selection, python_version, approot, requirements, warnings, errors."""

from __future__ import annotations

import pytest

from conftest import copy_fixture, run_compile
from dcbuild import dotcloud, log, plan


def app_with(tmp_path, text, **files):
    app = tmp_path / "app"
    app.mkdir(exist_ok=True)
    (app / "dotcloud.yml").write_text(text)
    for name, content in files.items():
        path = app / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return app


def test_single_python_service(tmp_path, capsys):
    app = app_with(tmp_path, "www:\n  type: python\n  approot: src\n  config:\n    python_version: v3.12\n",
                   **{"src/wsgi.py": ""})
    service = dotcloud.load(app, tmp_path / "cache")
    assert (service.name, service.type, service.approot) == ("www", "python", "src")
    req = dotcloud.python_request(service)
    assert (req.line, req.micro, req.origin) == ((3, 12), None, "dotcloud.yml:5")


def test_data_services_and_unknown_keys_warn(tmp_path, capsys):
    app = app_with(tmp_path, "www:\n  type: python\n  colour: blue\n  config:\n    shiny: true\n"
                             "db:\n  type: postgresql\ncache:\n  type: redis\n")
    assert dotcloud.load(app, tmp_path / "cache").name == "www"
    err = capsys.readouterr().err
    assert "service 'db' (postgresql)" in err and "DOTCLOUD_DB_SQL_HOST" in err
    assert "DOTCLOUD_CACHE_REDIS_HOST" in err
    assert "dotcloud.yml:3: unknown key 'colour'" in err
    assert "dotcloud.yml:5: unknown config key 'shiny'" in err


def test_several_python_services_need_a_choice(tmp_path, monkeypatch):
    app = app_with(tmp_path, "api:\n  type: python\nweb:\n  type: python\n")
    with pytest.raises(log.BuildError) as exc:
        dotcloud.load(app, tmp_path / "cache")
    assert "several Python services" in exc.value.summary
    assert "DOTCLOUD_SERVICE" in " ".join(exc.value.details)
    monkeypatch.setenv("DOTCLOUD_SERVICE", "web")
    assert dotcloud.load(app, tmp_path / "cache").name == "web"


def test_python_and_worker_pick_the_python_one(tmp_path):
    app = app_with(tmp_path, "www:\n  type: python\nworkers:\n  type: python-worker\n")
    assert dotcloud.load(app, tmp_path / "cache").name == "www"


def test_code_services_become_workers_named_in_the_log(tmp_path, capsys, monkeypatch):
    app = app_with(tmp_path, "www:\n  type: python\nworkers:\n  type: python-worker\n  environment:\n    Q: jobs\n"
                             "  processes:\n    consumer: python3 consumer.py\n"
                             "cron:\n  type: custom\n  approot: jobs\n  process: ./tick\n"
                             "builder:\n  type: custom\n  buildscript: build.sh\n"
                             "db:\n  type: redis\n", **{"jobs/requirements.txt": "six\n"})
    service = dotcloud.load(app, tmp_path / "cache")
    assert sorted(service.workers) == ["cron", "workers"]
    data = service.to_json(".")
    assert data["workers"]["workers"] == {
        "name": "workers", "type": "python-worker", "dotcloud_type": "python-worker", "approot": ".",
        "environment": {"Q": "jobs"}, "processes": {"consumer": "python3 consumer.py"}, "ports": {}}
    assert data["workers"]["cron"]["processes"] == {"process": "./tick"}
    assert data["workers"]["cron"]["approot"] == "jobs"
    err = capsys.readouterr().err
    assert "service 'workers' (python-worker) runs as the process type 'workers' (bin/dcweb workers)" in err
    assert "service 'cron' (custom) runs as the process type 'cron'" in err
    assert "DC_WORKERS_IN_WEB=1" in err
    assert "service 'cron' has its own jobs/requirements.txt, which is not installed" in err
    assert "service 'builder' of type 'custom' is not built" in err  # no processes: nothing to run
    assert "service 'db' (redis) is not run by this buildpack" in err
    # Another python service is not run, and the log says how to run it.
    app = app_with(tmp_path, "www:\n  type: python\napi:\n  type: python\n")
    monkeypatch.setenv("DOTCLOUD_SERVICE", "www")
    assert dotcloud.load(app, tmp_path / "cache").workers == {}
    assert "service 'api' (python) is not run: this build is service 'www'" in capsys.readouterr().err


def test_a_worker_service_named_web_is_an_error(tmp_path):
    app = app_with(tmp_path, "www:\n  type: python\nweb:\n  type: python-worker\n")
    with pytest.raises(log.BuildError) as exc:
        dotcloud.load(app, tmp_path / "cache")
    assert exc.value.summary == "dotcloud.yml:3: service 'web' cannot be a Procfile process type"


def test_syntax_error_names_the_line(tmp_path):
    app = app_with(tmp_path, "www:\n  type: python\n  config:\n   python_version: [3.12\n")
    with pytest.raises(log.BuildError) as exc:
        dotcloud.load(app, tmp_path / "cache")
    assert exc.value.summary.startswith("dotcloud.yml:")
    assert "not valid YAML" in exc.value.summary


@pytest.mark.parametrize(("value", "fragment"), [("v2.7", "Python 2 code needs porting"),
                                                 ("v3.2", "not supported"), ("latest", "not a Python version")])
def test_bad_python_version(tmp_path, value, fragment):
    app = app_with(tmp_path, f"www:\n  type: python\n  config:\n    python_version: {value}\n")
    service = dotcloud.load(app, tmp_path / "cache")
    with pytest.raises(log.BuildError) as exc:
        dotcloud.python_request(service)
    assert fragment in " ".join([exc.value.summary, *exc.value.details])
    assert "runtime.txt" in " ".join(exc.value.details)


@pytest.mark.parametrize("approot", ["missing", "../outside", "with space"])
def test_bad_approot(tmp_path, approot):
    app = app_with(tmp_path, f"www:\n  type: python\n  approot: '{approot}'\n")
    service = dotcloud.load(app, tmp_path / "cache")
    with pytest.raises(log.BuildError) as exc:
        dotcloud.check_approot(app, service.approot, "dotcloud.yml:3")
    assert exc.value.summary.startswith("dotcloud.yml:3: approot")


def test_approot_requirements_win_and_extras_are_added(tmp_path):
    app = app_with(tmp_path, "www:\n  type: python\n  approot: src\n  requirements:\n    - six==1.16.0\n",
                   **{"src/requirements.txt": "itsdangerous\n", "requirements.txt": "flask\n", "src/wsgi.py": ""})
    notes: list[str] = []
    found, _, _, _ = plan._lock(app, "src")
    result = plan._requirements(app, "src", dotcloud.load(app, tmp_path / "cache"), notes, found)
    assert result == ".dotcloud/requirements-dotcloud.txt"
    assert (app / result).read_text().splitlines()[1:] == ["-r ../src/requirements.txt", "six==1.16.0"]
    assert notes == ["Using src/requirements.txt (the approot's, as on dotCloud), not requirements.txt"]


def test_compile_with_syntax_error_fails_cleanly(tmp_path):
    app = copy_fixture("sample", tmp_path / "app")
    (app / "dotcloud.yml").write_text("www:\n  type: python\n  approot: [\n")
    build = run_compile(app, tmp_path / "cache")
    assert build.returncode != 0
    assert " !     Error: dotcloud.yml:" in build.stderr
    assert "Traceback" not in build.output


def test_home_dotcloud_mentions_are_listed_with_file_and_line(tmp_path):
    app = copy_fixture("sample", tmp_path / "app")
    (app / "dotcloud.yml").write_text("www:\n  type: python\n")
    (app / "settings.py").write_text("import os\nMEDIA = '/home/dotcloud/data/media'\n")
    (app / "supervisord.conf").write_text("[program:w]\ncommand=/home/dotcloud/env/bin/python w.py\n")
    (app / "blob.bin").write_bytes(b"\0/home/dotcloud\0")
    build = run_compile(app, tmp_path / "cache")
    assert build.returncode == 0, build
    # In the migration report (issue 14): printed, and in .dotcloud/migration.txt.
    assert ": 2 home (all in .dotcloud/migration.txt)" in build.stdout, build
    report = (app / ".dotcloud" / "migration.txt").read_text()
    for line in ("settings.py:2: MEDIA = '/home/dotcloud/data/media'",
                 "supervisord.conf:2: command=/home/dotcloud/env/bin/python w.py"):
        assert line in build.stdout and f"  {line}\n" in report, build
    assert "blob.bin" not in build.output


def test_keys_that_cannot_be_applied_say_what_to_do(tmp_path, capsys):
    app = app_with(tmp_path, "www:\n  type: python\n  systempackages:\n    - libxml2-dev\n  instances: 2\n"
                             "  config:\n    enable_newrelic: true\n")
    dotcloud.load(app, tmp_path / "cache")
    err = capsys.readouterr().err
    assert "dotcloud.yml:3: 'systempackages' is not applied here: install system packages" in err
    assert "dotcloud.yml:5: 'instances' is not applied here: scale with the platform" in err
    assert "dotcloud.yml:7: config 'enable_newrelic' is not applied here" in err
    assert "unknown" not in err


def test_a_worker_services_bad_process_name_fails_the_build_check(tmp_path):
    from dcbuild import checks

    service = {"approot": ".", "processes": {}, "workers": {"workers": {"processes": {"bad name": "x"}}}}
    with pytest.raises(log.BuildError) as exc:
        checks.check_supervisord(tmp_path, ".", service)
    assert "processes: 'bad name' is not a usable program name" in exc.value.summary
