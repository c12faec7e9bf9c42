"""dotcloud.yml: find the Python service and read what the build needs from it.

dotCloud's build file maps service names to settings (``type``, ``approot``, ``config``, ...).
Parsing uses a real YAML library (PyYAML); a syntax error names the file and line.

The service built is the web one (``python``; ``DOTCLOUD_SERVICE`` picks among several). The
other services that are code, ``python-worker`` ones and ``custom`` ones with ``processes:`` or
``process:``, are the same build's workers: each becomes a Procfile process type of its own name
(``workers: bin/dcweb workers``, dcbuild.web), listed in service.json's ``workers`` and named in
the build log. Data services get a warning naming the add-on to provision.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import log, tools, versions
from .versions import Request

PYTHON_TYPES = ("python", "python-worker")
# Code that runs as a worker beside the web service: its processes (processes:, process:, ./run).
WORKER_TYPES = ("python-worker", "custom")
# Procfile process type names (Heroku's rule); dotCloud's service names are [a-z0-9_], <= 16.
PROCESS_TYPE = re.compile(r"[A-Za-z0-9_-]{1,63}")
# Data services: what to provision instead, and the environment.json type word dotCloud used.
DATA_SERVICES = {
    "mysql": ("a MySQL database add-on (DATABASE_URL)", "MYSQL"),
    "postgresql": ("a PostgreSQL add-on (DATABASE_URL)", "SQL"),
    "postgis": ("a PostgreSQL add-on with PostGIS (DATABASE_URL)", "SQL"),
    "redis": ("a Redis add-on (REDIS_URL)", "REDIS"),
    "mongodb": ("a MongoDB add-on (MONGODB_URI)", "MONGODB"),
    "solr": ("a Solr or search add-on", "SOLR"),
    "smtp": ("an email-sending add-on (SMTP settings)", "SMTP"),
    "rabbitmq": ("a RabbitMQ/AMQP add-on (CLOUDAMQP_URL)", "RABBITMQ"),
    "memcached": ("a Memcached add-on (MEMCACHIER_SERVERS)", "MEMCACHED"),
    "elasticsearch": ("an Elasticsearch add-on", "ELASTICSEARCH"),
}
SERVICE_KEYS = {
    "type", "approot", "requirements", "environment", "process", "processes", "ports",
    "systempackages", "prebuild", "postbuild", "postinstall", "instances", "config",
}
CONFIG_KEYS = {
    "python_version", "uwsgi_processes", "uwsgi_buffer_size", "uwsgi_harakiri", "uwsgi_enable_threads",
    "uwsgi_single_interpreter", "uwsgi_memory_report", "enable_newrelic", "static",
}
# Keys dotCloud honoured that a buildpack cannot: what to do instead.
NOT_APPLIED = {
    "systempackages": "install system packages with the platform's apt buildpack (an Aptfile) before this one.",
    "instances": "scale with the platform (e.g. `heroku ps:scale web=2`, `dokku ps:scale`).",
}
NOT_APPLIED_CONFIG = {
    "enable_newrelic": "add New Relic's agent (newrelic) to requirements.txt and its config vars instead.",
    "static": "serve extra static paths with a location in the app's nginx.conf.",
}
_SAFE_PATH = re.compile(r"[A-Za-z0-9._/@+-]+")


@dataclass
class Service:
    name: str
    type: str
    approot: str = "."
    config: dict[str, Any] = field(default_factory=dict)
    requirements: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    line_of: dict[str, int] = field(default_factory=dict)
    data_services: dict[str, str] = field(default_factory=dict)  # name -> type (mysql, redis, ...)
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> its settings

    def to_json(self, approot: str) -> dict[str, Any]:
        """What the slug needs at run time (``.dotcloud/service.json``), plain JSON types only."""
        raw = self.raw
        processes = raw.get("processes") or {}
        if not processes and raw.get("process"):
            processes = {"process": raw["process"]}
        return {
            "name": self.name,
            "type": self.type,
            "approot": approot,
            "config": {str(k): v for k, v in self.config.items()},
            "environment": {str(k): "" if v is None else str(v) for k, v in (raw.get("environment") or {}).items()},
            "processes": {str(k): str(v) for k, v in processes.items()} if isinstance(processes, dict) else {},
            "postinstall": raw.get("postinstall"),
            "prebuild": raw.get("prebuild"),
            "postbuild": raw.get("postbuild"),
            "ports": {str(k): str(v) for k, v in (raw.get("ports") or {}).items()},
            "data_services": dict(self.data_services),
            "workers": {name: worker_json(name, settings) for name, settings in self.workers.items()},
        }


def _processes(settings: dict[str, Any]) -> dict[str, str]:
    processes = settings.get("processes") or {}
    if not processes and settings.get("process"):
        processes = {"process": settings["process"]}
    return {str(k): str(v) for k, v in processes.items()} if isinstance(processes, dict) else {}


def worker_json(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """A worker service's run-time settings (service.json's ``workers``): what the web process
    (bin/dcweb NAME) needs to run it as a python-worker service."""
    return {
        "name": name,
        "type": "python-worker",
        "dotcloud_type": str(settings.get("type")),
        "approot": str(settings.get("approot") or ".").strip().strip("/") or ".",
        "environment": {str(k): "" if v is None else str(v) for k, v in (settings.get("environment") or {}).items()},
        "processes": _processes(settings),
        "ports": {str(k): str(v) for k, v in (settings.get("ports") or {}).items()},
    }


def is_worker_service(settings: dict[str, Any]) -> bool:
    """python-worker, or custom with processes: or process: (a custom buildscript is not run)."""
    kind = settings.get("type")
    return kind == "python-worker" or (kind == "custom" and bool(settings.get("processes") or settings.get("process")))


def _line_numbers(text: str) -> dict[str, int]:
    """First line of each ``key:`` in the file (for messages that point at a setting)."""
    out: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        m = re.match(r"\s*([A-Za-z0-9_-]+)\s*:", line)
        if m:
            out.setdefault(m.group(1), number)
    return out


def load(app: Path, cache: Path | None, wanted: str | None = None, quiet: bool = False) -> Service | None:
    """The Python service of ``app/dotcloud.yml``, or None when there is no such file.

    ``quiet``: no warnings (the file is read twice per build; the plan is the one that warns)."""
    path = app / "dotcloud.yml"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    yaml = tools.yaml(cache)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"dotcloud.yml:{mark.line + 1}" if mark else "dotcloud.yml"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise log.BuildError(
            f"{where}: dotcloud.yml is not valid YAML ({problem})",
            "Fix the line (indentation with spaces, a space after each ':'), then deploy again.",
        ) from None
    if not isinstance(data, dict) or not data:
        raise log.BuildError(
            "dotcloud.yml: expected a mapping of service names to their settings",
            "For example:  www: {type: python}",
        )
    lines = _line_numbers(text)
    python, others = {}, {}
    for name, settings in data.items():
        if not isinstance(settings, dict) or "type" not in settings:
            raise log.BuildError(
                f"dotcloud.yml:{lines.get(str(name), 1)}: service '{name}' has no type",
                "Each service needs a 'type:', e.g. 'type: python'.",
            )
        (python if settings["type"] in PYTHON_TYPES else others)[str(name)] = settings
    for name, settings in ({} if quiet else others).items():
        kind = str(settings["type"])
        if is_worker_service(settings):
            continue  # below, once the web service is known
        if kind in DATA_SERVICES:
            what, word = DATA_SERVICES[kind]
            upper = name.upper()
            log.warn(
                f"dotcloud.yml: service '{name}' ({kind}) is not run by this buildpack: provision {what};"
                f" the app will expect DOTCLOUD_{upper}_{word}_HOST/_PORT/_LOGIN/_PASSWORD/_URL in environment.json."
            )
        else:
            log.warn(f"dotcloud.yml: service '{name}' of type '{kind}' is not built by this (Python) buildpack.")
    wanted = wanted or os.environ.get("DOTCLOUD_SERVICE") or None
    if wanted:
        if wanted not in python:
            raise log.BuildError(
                f"DOTCLOUD_SERVICE={wanted} names no Python service in dotcloud.yml",
                f"Python services there: {', '.join(python) or 'none'}.",
            )
        name = wanted
    elif len(python) == 1:
        name = next(iter(python))
    else:
        plain = [n for n, s in python.items() if s["type"] == "python"]
        if len(plain) == 1:
            name = plain[0]
        else:
            raise log.BuildError(
                "dotcloud.yml has " + ("no Python service" if not python else "several Python services"),
                f"Python services: {', '.join(python) or 'none'} (types python, python-worker).",
                "Set the config var DOTCLOUD_SERVICE to the one this app runs.",
            )
    settings = python[name]
    workers = {n: s for n, s in {**python, **others}.items() if n != name and is_worker_service(s)}
    for other in python:
        if other != name and other not in workers and not quiet:
            log.warn(f"dotcloud.yml:{lines.get(other, 1)}: service '{other}' (python) is not run: this build is"
                     f" service '{name}'. Deploy '{other}' as an app of its own with the config var"
                     f" DOTCLOUD_SERVICE={other}.")
    for worker, worker_settings in workers.items():
        if not PROCESS_TYPE.fullmatch(worker) or worker == "web":
            raise log.BuildError(
                f"dotcloud.yml:{lines.get(worker, 1)}: service '{worker}' cannot be a Procfile process type",
                "Its processes run as the process type named after the service, and 'web' is the web process"
                if worker == "web" else "Process type names are letters, digits, '_' and '-'.",
                "Rename the service in dotcloud.yml.",
            )
        if not quiet:
            kind = worker_settings["type"]
            log.warn(
                f"dotcloud.yml: service '{worker}' ({kind}) runs as the process type '{worker}'"
                f" (bin/dcweb {worker}): scale it to 1 on the platform (e.g. `heroku ps:scale {worker}=1`),"
                " or set the config var DC_WORKERS_IN_WEB=1 to run it inside the web process, as one dotCloud"
                " container did."
            )
            worker_root = str(worker_settings.get("approot") or ".").strip().strip("/") or "."
            own_root = str(settings.get("approot") or ".").strip().strip("/") or "."
            if worker_root != own_root and (app / worker_root / "requirements.txt").is_file():
                log.warn(f"dotcloud.yml: service '{worker}' has its own {worker_root}/requirements.txt, which is not"
                         f" installed (the build installs service '{name}''s): add its packages to that one.")
    for key in () if quiet else settings:
        if key not in SERVICE_KEYS:
            log.warn(f"dotcloud.yml:{lines.get(str(key), 1)}: unknown key '{key}' in service '{name}' is ignored.")
    for key, advice in NOT_APPLIED.items():
        if not quiet and key in settings:
            log.warn(f"dotcloud.yml:{lines.get(key, 1)}: '{key}' is not applied here: {advice}")
    config = settings.get("config") or {}
    if not isinstance(config, dict):
        raise log.BuildError(f"dotcloud.yml:{lines.get('config', 1)}: 'config' must be a mapping")
    for key in () if quiet else config:
        if key in NOT_APPLIED_CONFIG:
            log.warn(f"dotcloud.yml:{lines.get(str(key), 1)}: config '{key}' is not applied here:"
                     f" {NOT_APPLIED_CONFIG[key]}")
        elif key not in CONFIG_KEYS:
            log.warn(f"dotcloud.yml:{lines.get(str(key), 1)}: unknown config key '{key}' is ignored.")
    approot = str(settings.get("approot") or ".").strip().strip("/") or "."
    requirements = settings.get("requirements") or []
    if isinstance(requirements, str):
        requirements = [requirements]
    data = {n: str(s["type"]) for n, s in others.items() if str(s["type"]) in DATA_SERVICES}
    return Service(name, str(settings["type"]), approot, config, [str(r) for r in requirements], settings, lines, data,
                   workers)


def python_request(service: Service) -> Request | None:
    """``config.python_version`` (``v3.12``, ``3.12``) as a version request."""
    raw = service.config.get("python_version")
    if raw is None:
        return None
    origin = f"dotcloud.yml:{service.line_of.get('python_version', 1)}"
    text = str(raw).strip()
    m = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        raise log.BuildError(
            f"{origin}: python_version '{text}' is not a Python version",
            "Use a line such as 'v3.13' or '3.13', or put 'python-3.13' in runtime.txt.",
        )
    line = (int(m.group(1)), int(m.group(2)))
    if line not in versions.SUPPORTED_LINES:
        raise log.BuildError(
            f"{origin}: python_version '{text}' is not supported",
            f"Python {line[0]}.{line[1]} cannot be installed; supported lines: {versions.supported_text()}."
            + (" Python 2 code needs porting to Python 3 first." if line[0] == 2 else ""),
            "Set a supported line there, or put e.g. 'python-3.14' in runtime.txt (which takes precedence).",
        )
    return Request(line, None if m.group(3) is None else int(m.group(3)), origin)


def check_approot(app: Path, approot: str, origin: str) -> str:
    if approot == ".":
        return approot
    if not _SAFE_PATH.fullmatch(approot) or ".." in approot.split("/"):
        raise log.BuildError(
            f"{origin}: approot '{approot}' is not a plain relative path inside the app",
            "Use a subdirectory name such as 'src' (letters, digits, . _ - / only).",
        )
    if not (app / approot).is_dir():
        raise log.BuildError(
            f"{origin}: approot '{approot}' does not exist",
            f"There is no directory {approot}/ in the app. Fix approot, or add the directory.",
        )
    return approot
