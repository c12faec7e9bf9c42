"""Requirement files: nesting, loops, and the content key of the userreqs layer."""

from __future__ import annotations

import pytest

from dcbuild import log, reqs


def write(root, **files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "requirements.txt"


def test_collects_nested_files_once(tmp_path):
    top = write(tmp_path, **{
        "requirements.txt": "-r req/base.txt\n--requirement=req/extra.txt\n-c req/pins.txt\nflask\n",
        "req/base.txt": "-r extra.txt\nsix\n",
        "req/extra.txt": "-rpins.txt  # joined form\n",
        "req/pins.txt": "six==1.16.0\n",
    })
    names = [p.relative_to(tmp_path).as_posix() for p in reqs.collect(top)]
    assert names == ["requirements.txt", "req/base.txt", "req/extra.txt", "req/pins.txt"]


def test_digest_changes_with_a_nested_file_only(tmp_path):
    top = write(tmp_path, **{"requirements.txt": "-r base.txt\n", "base.txt": "six==1.16.0\n"})
    before = reqs.digest(top, tmp_path)
    assert reqs.digest(top, tmp_path) == before
    (tmp_path / "base.txt").write_text("six==1.17.0\n")
    assert reqs.digest(top, tmp_path) != before


def test_loop_is_a_clear_error(tmp_path):
    top = write(tmp_path, **{"requirements.txt": "-r a.txt\n", "a.txt": "six\n-r requirements.txt\n"})
    with pytest.raises(log.BuildError) as exc:
        reqs.collect(top)
    assert exc.value.summary == "a.txt:2: requirement files include each other in a loop"
    assert "requirements.txt -> a.txt -> requirements.txt" in exc.value.details


def test_missing_nested_file_names_the_line(tmp_path):
    top = write(tmp_path, **{"requirements.txt": "six\n-r nope.txt\n"})
    with pytest.raises(log.BuildError) as exc:
        reqs.collect(top)
    assert exc.value.summary == "requirements.txt:2: requirement file nope.txt does not exist"


def test_urls_and_comments_are_not_files(tmp_path):
    top = write(tmp_path, **{"requirements.txt": "# -r commented.txt\n-r https://example.invalid/r.txt\nsix\n"})
    assert reqs.collect(top) == [top.resolve()]


# --- the installer: uv (default) or pip -----------------------------------------------------

from conftest import copy_fixture, make_wheel, run_compile  # noqa: E402
from dcbuild import pip, slug, tools  # noqa: E402
from dcbuild.cache import tree_size  # noqa: E402


def test_installer_from_config_var_wins_over_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("DC_INSTALLER", raising=False)
    assert pip.installer(None) == "uv"
    monkeypatch.setenv("DC_INSTALLER", "pip")
    assert pip.installer(None) == "pip"
    (tmp_path / "DC_INSTALLER").write_text("uv\n")
    assert pip.installer(tmp_path) == "uv"
    (tmp_path / "DC_INSTALLER").write_text("poetry\n")
    with pytest.raises(log.BuildError) as exc:
        pip.installer(tmp_path)
    assert exc.value.summary == "The config var DC_INSTALLER is 'poetry', which is not an installer this buildpack has"


def test_uv_env_maps_pips_index_settings_and_ignores_host_config(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple")
    monkeypatch.setenv("UV_INDEX_URL", "https://host-setting.example/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    (tmp_path / "PIP_EXTRA_INDEX_URL").write_text("https://private.example/simple\n")
    env = pip.uv_env(tmp_path / "uv", tmp_path)
    assert env["UV_INDEX_URL"] == "https://mirror.example/simple"
    assert env["UV_EXTRA_INDEX_URL"] == "https://private.example/simple"
    assert env["UV_NO_CONFIG"] == "1" and env["UV_CACHE_DIR"] == str(tmp_path / "uv")
    assert env["UV_INDEX_STRATEGY"] == "unsafe-best-match"
    assert not [k for k in env if k.startswith("PIP_")]


def test_uv_parse_error_names_file_and_line(tmp_path):
    (tmp_path / "requirements.txt").write_text("six==1.16.0\nfoo bar baz!!\n")
    output = "error: Couldn't parse requirement in `requirements.txt` at position 12\n  cause: Expected ..."
    assert pip.uv_culprit(output, tmp_path) == ("foo bar baz!!", "requirements.txt:2")
    missing = ("error: No solution found when resolving dependencies\n  cause: Because this-package-does-not-exist"
               "-dcbp was not found in the package registry and you require this-package-does-not-exist-dcbp==1.0, we"
               " can conclude that your requirements are unsatisfiable.")
    assert pip.uv_culprit(missing, tmp_path) == ("this-package-does-not-exist-dcbp==1.0", None)


def freeze(app) -> list[str]:
    """``name==version`` of every distribution in the slug's Python, as pip freeze lists them."""
    import subprocess

    code = ("import importlib.metadata as m\n"
            "for d in m.distributions(): print(f\"{d.metadata['Name'].lower().replace('_', '-')}=={d.version}\")")
    res = subprocess.run([str(app / ".dotcloud/python/bin/python3"), "-I", "-c", code], capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert res.returncode == 0, res.stderr
    return sorted(set(res.stdout.split()) - {line for line in res.stdout.split() if line.startswith("pip==")})


@pytest.mark.slow
def test_uv_and_pip_resolve_the_same_set(tmp_path, runtimes, py312):
    """Ranges, not pins: both engines take the highest versions that fit; switching engines
    on one cache builds a layer of the other's own, saying why."""
    cache = runtimes.seed(tmp_path / "cache", py312)
    apps = {}
    for engine in ("uv", "pip"):
        app = copy_fixture("sample", tmp_path / engine)
        (app / "runtime.txt").write_text(f"python-{py312}\n")
        (app / "requirements.txt").write_text("flask>=2.2,<3.1\nsix<1.17\nrequests[socks]<2.32\n")
        build = run_compile(app, cache, DC_INSTALLER=engine)
        assert build.returncode == 0, build
        assert f"-----> Installing requirements with {engine} (requirements.txt)" in build.stdout
        apps[engine] = app
    assert f"-----> Discarding cached dotCloud requirements: installer uv {tools.version('uv')} -> pip" in build.stdout
    uv_set, pip_set = freeze(apps["uv"]), freeze(apps["pip"])
    assert uv_set == pip_set
    assert "six==1.16.0" in uv_set and any(line.startswith("pysocks==") for line in uv_set)
    layers = sorted(p.name.split(f"-f{slug.LAYER_FORMAT}-")[1].split("-")[0]
                    for p in (cache / "python-dotcloud/layers").glob("*reqs-*"))
    assert layers == ["pip", "pip", f"uv{tools.version('uv')}", f"uv{tools.version('uv')}"]


@pytest.mark.slow
def test_uv_failure_names_the_requirement(tmp_path, runtimes, py312):
    app = copy_fixture("requirements_invalid", tmp_path / "app")
    (app / "runtime.txt").write_text(f"python-{py312}\n")
    build = run_compile(app, runtimes.seed(tmp_path / "cache", py312))
    assert build.returncode != 0 and "Traceback" not in build.output, build
    assert "was not found in the package registry" in build.stdout  # uv's own, indented
    assert " !     Error: uv could not install the packages in requirements.txt" in build.stderr
    assert "Failed requirement: this-package-does-not-exist-dcbp==1.0 (requirements.txt:2)" in build.stderr


@pytest.mark.slow
def test_pip_failure_names_the_requirement(tmp_path, runtimes, py312):
    app = copy_fixture("requirements_invalid", tmp_path / "app")
    (app / "runtime.txt").write_text(f"python-{py312}\n")
    build = run_compile(app, runtimes.seed(tmp_path / "cache", py312), DC_INSTALLER="pip")
    assert build.returncode != 0 and "Traceback" not in build.output, build
    assert "No matching distribution found for this-package-does-not-exist-dcbp" in build.stdout  # pip's own
    assert " !     Error: pip could not install the packages in requirements.txt" in build.stderr
    assert "Failed requirement: this-package-does-not-exist-dcbp==1.0 (requirements.txt:2)" in build.stderr


@pytest.mark.slow
def test_uv_cache_is_kept_under_its_limit(tmp_path, runtimes, py312):
    """Past DC_UV_CACHE_MAX_MB, uv's cache is pruned, then emptied; the slug keeps its packages."""
    cache = runtimes.seed(tmp_path / "cache", py312)
    app = copy_fixture("sample", tmp_path / "app")
    (app / "runtime.txt").write_text(f"python-{py312}\n")
    build = run_compile(app, cache, DC_UV_CACHE_MAX_MB="0")
    assert build.returncode == 0, build
    assert "       uv's cache held " in build.stdout and "over DC_UV_CACHE_MAX_MB=0: emptied, 0 MB now" in build.stdout
    uv_cache = cache / "python-dotcloud" / "uv"
    assert not uv_cache.exists() or tree_size(uv_cache) == 0
    import subprocess

    res = subprocess.run([str(app / ".dotcloud/python/bin/python3"), "-I", "-c", "import itsdangerous, supervisor"],
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert res.returncode == 0, res.stderr


def slug_python(app, code: str):
    import subprocess

    return subprocess.run([str(app / ".dotcloud/python/bin/python3"), "-I", "-c", code], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin"}, timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_path_and_file_url_requirements_survive_a_changed_requirement(tmp_path, runtimes, py312, installer):
    """The second build starts from the first one's packages and removes what is no longer
    required: a wheel named by its path or by a file:// URL, an editable directory, are still required."""
    cache = runtimes.seed(tmp_path / "cache", py312)
    app = copy_fixture("sample", tmp_path / "app")
    (app / "runtime.txt").write_text(f"python-{py312}\n")
    by_path = make_wheel(app / "wheels", "dcbp-by-path", "1.0")
    by_url = make_wheel(app / "wheels", "dcbp-by-url", "2.0")
    (app / "proj" / "dcbp_editable.py").parent.mkdir()
    (app / "proj" / "dcbp_editable.py").write_text("VERSION = '3.0'\n")
    (app / "proj" / "pyproject.toml").write_text(
        '[project]\nname = "dcbp-editable"\nversion = "3.0"\n[tool.setuptools]\npy-modules = ["dcbp_editable"]\n'
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n')
    rest = f"./wheels/{by_path.name}\ndcbp-by-url @ {by_url.as_uri()}\n-e ./proj\n"
    check = ("import dcbp_by_path, dcbp_by_url, dcbp_editable, itsdangerous, importlib.metadata as m\n"
             "print(dcbp_by_path.VERSION, dcbp_by_url.VERSION, dcbp_editable.VERSION, m.version('itsdangerous'))")
    for pin in ("2.2.0", "2.1.2"):
        (app / "requirements.txt").write_text(f"itsdangerous=={pin}\n{rest}")
        build = run_compile(app, cache, DC_INSTALLER=installer)
        assert build.returncode == 0, build
        res = slug_python(app, check)
        assert res.returncode == 0, f"{res.stderr}\n{build}"
        assert res.stdout.split() == ["1.0", "2.0", "3.0", pin]
        removed = [line for line in build.stdout.splitlines() if "Removing packages no longer required" in line]
        assert not [line for line in removed if "dcbp" in line], build


def test_uv_conflicting_pins_name_each_requirement_and_line(tmp_path):
    (tmp_path / "requirements.txt").write_text("six==1.16.0\ndcbp-pin==1.0\ndcbp_pin == 2.0  # newer\nflask>=2,<3\n")
    # uv 0.13's own words for two pins of one project, and for a range with a comma.
    conflict = ("error: No solution found when resolving dependencies\n  cause: Because you require dcbp-pin==1.0 and"
                " dcbp-pin==2.0, we can conclude that your requirements are unsatisfiable.\n")
    err = pip._uv_fail(conflict, "requirements.txt", tmp_path, "requirements.txt")
    assert err.details[0] == ("Failed requirement: dcbp-pin==1.0 (requirements.txt:2)"
                              " and dcbp-pin==2.0 (requirements.txt:3)")
    ranged = "  cause: Because there is no version of flask-x==9 and you require flask>=2,<3, we can conclude ...\n"
    assert pip.uv_culprit(ranged, tmp_path) == ("flask-x==9", None)
    assert pip.uv_culprit("  cause: Because you require flask>=2,<3.\n", tmp_path) == ("flask>=2,<3", None)
    assert pip.where("dcbp-pin==2.0", [tmp_path / "requirements.txt"], tmp_path) == "requirements.txt:3"


def test_out_of_disk_space_does_not_blame_the_requirements(tmp_path):
    (tmp_path / "requirements.txt").write_text("six==1.16.0\n")
    outputs = {
        "uv": "error: Failed to install: six-1.16.0-py2.py3-none-any.whl (six==1.16.0)\n  Caused by: failed to"
              " write to file `/app/.dotcloud/python/lib/python3.12/site-packages/six.py`: No space left on device"
              " (os error 28)\n",
        "pip": "ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device\n",
    }
    for engine, output in outputs.items():
        fail = pip._uv_fail if engine == "uv" else pip._fail
        err = fail(output, "requirements.txt", tmp_path, "requirements.txt")
        assert err.summary == f"{engine} ran out of disk space while installing the packages in requirements.txt"
        assert "No space left on device" in err.details[0]  # what bin/compile looks for, to say which disk
        assert not [d for d in err.details if d.startswith("Fix ") or "Failed requirement" in d]
