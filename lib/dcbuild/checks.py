"""The app's run-time configuration, checked at build time: a broken app fails its build, not its boot.

What the web process would refuse at start (dcruntime), refused here with an error naming the
file, the line and the fix:

- no ``wsgi.py`` in the approot when the web process is the buildpack's (``bin/dcweb``: no
  ``Procfile``, or one whose ``web:`` runs it) and the service is not a ``python-worker``;
- dotcloud.yml's ``config.uwsgi_*`` values, by the run time's own validator
  (``dcruntime.uwsgiconf.options``);
- ``supervisord.conf`` in the approot: parsed as supervisord parses it (an ini file, ``;`` and
  ``#`` comments, sections not strict), a ``[program:x]`` without ``command=``, and dotcloud.yml's
  ``processes:`` names against its programs (``dcruntime.programs.processes``);
- the app's nginx snippets (``*nginx.conf``, ``*uwsgi.conf`` in the approot): prepared as the web
  process prepares them (``dcruntime.appconf``), included by the nginx template rendered with
  placeholder values (``dcruntime.render``), and checked by the slug's own nginx (``nginx -t``).

A build in a fresh directory (every platform build) would run these every time. The inputs are
hashed (``key``) and a configuration that passed leaves a mark in the cache
(``checks/ok-KEY``), so an unchanged app is not checked again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path

from . import configvars, log

SNIPPETS = ("*nginx.conf", "*uwsgi.conf")
ERROR_PAGES = ("404.html", "500.html", "502.html", "503.html", "504.html", "50x.html")
# Placeholders for the names the nginx template may use (dcruntime.render's allow-list).
PLACEHOLDERS = {"PORT": "5000", "NGINX_WORKERS": "1", "DC_CLIENT_MAX_BODY_SIZE": "1m", "DC_UWSGI_READ_TIMEOUT": "60s"}
_SELF = Path(__file__).resolve()
# nginx -t messages about the build machine rather than the configuration (warned, not fatal).
ELSEWHERE = ("No such file or directory", "host not found", "could not be resolved", "Permission denied")
# nginx's "2026/01/02 03:04:05 [emerg] 12#12: " before its message (the level is kept).
_NGINX_PREFIX = re.compile(r"^(?:nginx: )?\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (\[\w+\]) \d+#\d+: ")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b"\0missing"


def _template(app: Path, bp: Path) -> tuple[Path, str]:
    """The nginx template the slug will have: the app's own, else the buildpack's (also when the
    app's copy is the one an earlier build in this directory installed: dcbuild.web's record)."""
    from .web import RECORD

    own = app / "config" / "nginx.conf.template"
    if own.is_file():
        try:
            installed = json.loads((app / RECORD).read_text(encoding="utf-8")).get("config/nginx.conf.template")
        except (OSError, ValueError, AttributeError):
            installed = None
        if installed != hashlib.sha256(_read(own)).hexdigest():
            return own, "config/nginx.conf.template (the app's)"
    return bp / "config" / "nginx.conf.template", "the buildpack's config/nginx.conf.template"


def _snippets(root: Path) -> list[Path]:
    found = {p for pattern in SNIPPETS for p in root.glob(pattern) if p.is_file()}
    return sorted(found)


def _template_vars(env_dir: Path | None) -> dict[str, str]:
    """DC_TEMPLATE_VARS and the variables it names: each a config var (dcbuild.configvars' rules:
    valid names only), else from the build's environment."""
    config = configvars.read(env_dir)

    def found(names: list[str]) -> dict[str, str]:
        values = {name: config[name].rstrip("\n") if name in config else os.environ.get(name) for name in names}
        return {name: value for name, value in values.items() if value is not None}

    listed = found(["DC_TEMPLATE_VARS"])
    return {**listed, **found([n for n in re.split(r"[\s,]+", listed.get("DC_TEMPLATE_VARS", "")) if n])}


def key(app: Path, approot: str, env_dir: Path | None, runtime_hash: str, bp: Path) -> str:
    """Everything the checks read, hashed (the nginx layer's key is added by the Makefile)."""
    root = app / approot
    h = hashlib.sha256()

    def add(*parts: str | bytes) -> None:
        for part in parts:
            h.update(part.encode() if isinstance(part, str) else part)
            h.update(b"\0")

    add(_read(_SELF), runtime_hash, approot, _read(_template(app, bp)[0]))
    for path in _snippets(root):
        add(path.name, _read(path))
    service_json = _read(app / ".dotcloud" / "service.json")
    try:
        service = json.loads(service_json)
    except ValueError:
        service = {}
    # Not the Procfile itself: the configs step writes one when the app has none (same answer).
    expected = web_expected(app, service if isinstance(service, dict) else {})
    add(_read(root / "supervisord.conf"), service_json, str(expected))
    add(str((root / "wsgi.py").is_file()), *(n for n in ERROR_PAGES if (root / "static" / n).is_file()))
    add(json.dumps(_template_vars(env_dir), sort_keys=True))
    return h.hexdigest()[:16]


# --- the checks ---------------------------------------------------------------------------


def _line_of(text: str, pattern: str, after: str | None = None) -> int | None:
    lines = text.splitlines()
    start = 0
    if after is not None:
        start = next((i + 1 for i, line in enumerate(lines) if re.match(after, line)), 0)
    return next((i + 1 for i, line in enumerate(lines[start:], start) if re.match(pattern, line)), None)


def _dotcloud_yml(app: Path) -> str:
    try:
        return (app / "dotcloud.yml").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _shown(approot: str, name: str) -> str:
    return name if approot == "." else f"{approot}/{name}"


def web_expected(app: Path, service: dict) -> bool:
    """Will the platform run bin/dcweb (which serves current/wsgi.py)?"""
    if service.get("type") == "python-worker":
        return False
    try:
        procfile = (app / "Procfile").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True  # compile writes `web: bin/dcweb`
    for line in procfile.splitlines():
        name, _, command = line.partition(":")
        if name.strip() == "web":
            return "bin/dcweb" in command
    return False


def check_wsgi(app: Path, approot: str, service: dict) -> None:
    if not web_expected(app, service) or (app / approot / "wsgi.py").is_file():
        return
    where = "the app's top directory" if approot == "." else f"the approot, {approot}/"
    raise log.BuildError(
        f"No wsgi.py in {where}",
        "The web process (bin/dcweb) runs uWSGI with `application` from current/wsgi.py, as dotCloud did;",
        "without it every request would fail. Add wsgi.py there"
        + (", or point approot in dotcloud.yml at the directory that has it" if approot != "." else "")
        + ",",
        "or declare a web process of your own in a Procfile (web: ...), or make the service a python-worker.",
    )


def check_uwsgi_config(app: Path, service: dict) -> None:
    from dcruntime import uwsgiconf
    from dcruntime.dotcloud import BootError

    config = service.get("config") if isinstance(service.get("config"), dict) else {}
    try:
        uwsgiconf.options(config, {})
    except BootError as exc:
        message = str(exc)
        setting = re.search(r"config\.(\w+)", message)
        line = _line_of(_dotcloud_yml(app), rf"\s*{setting.group(1)}\s*:") if setting else None
        where = f"dotcloud.yml:{line}" if line else "dotcloud.yml"
        raise log.BuildError(
            f"{where}: {message.removeprefix('dotcloud.yml ')}",
            "uWSGI takes this setting at every start of the web process, which would stop there.",
            "Fix the value in dotcloud.yml (or remove it for the default) and deploy again.",
        ) from None


def _parse_error(shown: str, lineno: int, line: str) -> log.BuildError:
    return log.BuildError(
        f"{shown}:{lineno}: supervisord cannot parse this line: {line}",
        "supervisord reads this file at every start of the web process, which would stop there.",
        "It is an ini file: [program:name] section headers, then name=value lines; ; and # start comments,",
        "and a line that starts with spaces continues the value above. Fix the line and deploy again.",
    )


def check_supervisord(app: Path, approot: str, service: dict) -> None:
    import configparser

    from dcruntime import programs
    from dcruntime.dotcloud import BootError

    path = app / approot / "supervisord.conf"
    shown = _shown(approot, "supervisord.conf")
    taken: list[str] = []
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise log.BuildError(f"{shown} is not UTF-8 text", str(exc), "Save it as UTF-8 and deploy again.") from None
        # As supervisord's own parser (supervisor.options.UnhosedConfigParser) is set up.
        parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
        try:
            parser.read_string(text, source=shown)
        except configparser.MissingSectionHeaderError as exc:
            raise _parse_error(shown, exc.lineno, repr(exc.line.strip())) from None
        except configparser.ParsingError as exc:
            lineno, line = exc.errors[0]  # the line as repr() shows it
            raise _parse_error(shown, lineno, repr(str(line).strip("'\"").removesuffix("\\n").strip())) from None
        except configparser.Error as exc:
            raise log.BuildError(f"{shown}: supervisord cannot parse it", str(exc)) from None
        for section in parser.sections():
            if not section.startswith("program:"):
                continue
            name = section.removeprefix("program:")
            taken.append(name)
            if not parser.get(section, "command", fallback="").strip():
                line = _line_of(text, rf"\s*\[{re.escape(section)}\]")
                raise log.BuildError(
                    f"{shown}:{line or 1}: [{section}] has no command=",
                    "supervisord refuses a program without a command, and the web process would not start.",
                    f"Add command=... to [{section}] (run from current/, as on dotCloud), or remove the section.",
                )
    workers = service.get("workers") if isinstance(service.get("workers"), dict) else {}
    try:
        programs.processes(service, taken)
        for worker in workers.values():  # worker services (bin/dcweb NAME) check their processes alike
            programs.processes(worker if isinstance(worker, dict) else {}, taken)
    except BootError as exc:
        message = str(exc)
        name = re.search(r"processes: '([^']*)'", message)
        pattern = rf"\s*['\"]?{re.escape(name.group(1))}['\"]?\s*:" if name else ""
        line = _line_of(_dotcloud_yml(app), pattern, after=r"\s*processes\s*:") if name else None
        raise log.BuildError(
            f"{'dotcloud.yml:' + str(line) if line else 'dotcloud.yml'}: {message.removeprefix('dotcloud.yml ')}",
            "Each of processes: becomes a supervisord program of that name at every start of the web process,",
            "which would stop there. Fix it in dotcloud.yml and deploy again.",
        ) from None


def _nginx_user() -> list[str]:
    """As bin/nginx_start: as root, nginx's workers run as nobody (dcruntime.web.privileges)."""
    if os.geteuid() != 0:
        return []
    import grp
    import pwd

    try:
        nobody = pwd.getpwnam("nobody")
        return ["-g", f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};"]
    except KeyError:
        return ["-g", "user root;"]


def check_nginx(app: Path, approot: str, env_dir: Path | None, bp: Path) -> None:
    import subprocess
    import tempfile

    from dcruntime import appconf, dotcloud, render

    root = app / approot
    snippets = _snippets(root)
    template, label = _template(app, bp)
    nginx = app / ".dotcloud" / "nginx" / "bin" / "nginx"
    conf_dir = app / ".dotcloud" / "nginx" / "conf"
    if not nginx.is_file() or (not snippets and label.startswith("the buildpack's")):
        return  # nothing of the app's to check (the buildpack's own template is tested)
    checked = [_shown(approot, p.name) for p in snippets] + ([] if label.startswith("the buildpack's") else [label])
    log.step(f"Checking {', '.join(checked)} with nginx -t")
    with tempfile.TemporaryDirectory(prefix="dccheck.") as tmp:
        home, run_dir = Path(tmp) / "home", Path(tmp) / "run"
        (home / "config").mkdir(parents=True)
        run_dir.mkdir()
        for name in ("mime.types", "uwsgi_params"):
            (home / "config" / name).write_bytes(_read(conf_dir / name))
        dotcloud.current(home).parent.mkdir(parents=True)
        dotcloud.current(home).symlink_to(root.resolve())
        appconf.prepare(home, run_dir, web=True)
        environ = {name: PLACEHOLDERS.get(name, "1") for name in render.DEFAULT_NAMES}
        environ.update(HOME=str(home), TMPDIR=tmp, DC_RUN_DIR=str(run_dir), **_template_vars(env_dir))
        try:
            text = render.render(template.read_text(encoding="utf-8"), environ, render.allowed_names(environ),
                                 source=label)
        except render.RenderError as exc:
            log.warn(f"nginx's configuration was not checked at build time: {exc}",
                     "Set the config var it names (DC_TEMPLATE_VARS lists the template's own variables).")
            return
        conf = run_dir / "nginx.conf"
        conf.write_text(text, encoding="utf-8")
        args = [str(nginx), "-t", "-q", "-p", f"{run_dir}/", "-e", "stderr", "-c", str(conf)]
        if not re.search(r"(?m)^\s*user\s", text):
            args += _nginx_user()
        res = subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=60)
        if res.returncode == 0:
            return
        names = {f"{run_dir}/app/{p.name}": _shown(approot, p.name) for p in snippets}
        names[str(conf)] = label
        names[f"{run_dir}/{appconf.NGINX_DEFAULTS}"] = "the error pages from static/"
        lines = []
        for line in res.stderr.splitlines():
            if "test failed" in line or "syntax is ok" in line or not line.strip():
                continue
            for path, shown in sorted(names.items(), key=lambda kv: -len(kv[0])):
                line = line.replace(path, shown)
            line = _NGINX_PREFIX.sub(r"\1 ", line.replace(str(run_dir), "$DC_RUN_DIR").replace(str(home), "$HOME"))
            lines.append(line.removeprefix("nginx: "))
    culprit = next((shown for shown in names.values() if any(f"{shown}:" in line for line in lines)), None)
    if lines and all(any(marker in line for marker in ELSEWHERE) for line in lines):
        # A file the boot may still create (postinstall), a host the build cannot resolve: not
        # the configuration's fault as far as the build can tell.
        log.warn(f"{culprit or 'The nginx configuration'}: nginx -t failed here on something only the dyno has",
                 *lines, "The build goes on; the web process checks it again at start.")
        return
    raise log.BuildError(
        f"{culprit or 'The nginx configuration'} is rejected by nginx",
        *(lines or [res.stdout.strip() or f"nginx -t exited with status {res.returncode}"]),
        "The web process checks nginx's configuration at every start, and would stop there.",
        "current/*nginx.conf is included at server level, inside `server { }`; current/*uwsgi.conf inside",
        "the `location /` that passes requests to uWSGI (uwsgi_* directives). Fix the line nginx names.",
    )


def run(app: Path, env_dir: Path | None, bp: Path) -> None:
    try:
        service = json.loads((app / ".dotcloud" / "service.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        service = {}
    service = service if isinstance(service, dict) else {}
    approot = str(service.get("approot") or ".")
    worker = service.get("type") == "python-worker"
    check_wsgi(app, approot, service)
    if not worker:
        check_uwsgi_config(app, service)
    check_supervisord(app, approot, service)
    if not worker:
        check_nginx(app, approot, env_dir, bp)


def run_cached(app: Path, cache: Path, key: str, env_dir: Path | None, bp: Path) -> None:
    """``run`` unless a configuration with this key passed before (its mark in the cache)."""
    mark = cache / "checks" / f"ok-{key}"
    if mark.exists():
        with contextlib.suppress(OSError):
            os.utime(mark)  # recency, for pruning (dcbuild.cache)
        return
    run(app, env_dir, bp)
    try:
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.touch()
    except OSError:
        pass
