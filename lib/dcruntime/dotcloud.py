"""dotCloud's run-time environment: service.json, environment variables, environment.json.

At every start of the web process, before anything else runs:

- ``.dotcloud/service.json`` (written by compile from dotcloud.yml) is read; a slug without one
  is an app without dotcloud.yml;
- the environment every program gets is the process environment (the platform's config vars)
  plus, for names it does not set: dotcloud.yml's ``environment:``; ``DOTCLOUD_ENVIRONMENT``
  (``default``), ``DOTCLOUD_PROJECT`` (``APP_NAME``, ``HEROKU_APP_NAME`` or the app directory's
  name), ``DOTCLOUD_SERVICE_NAME`` (the service's name, ``www`` without dotcloud.yml),
  ``DOTCLOUD_SERVICE_ID`` (``0``; ``N-1`` on the platform's ``DYNO=web.N``); ``PORT_<NAME>`` for
  each of ``ports:``; and for each data service of dotcloud.yml,
  ``DOTCLOUD_<SVC>_<TYPE>_{HOST,PORT,LOGIN,PASSWORD,URL}`` taken from ``<SVC>_URL`` or the add-on
  variable of its type (``DATABASE_URL``, ``REDIS_URL``, ``MONGODB_URI``, ...). The platform's
  config vars always win;
- that environment is written to ``$HOME/environment.json`` (a flat JSON object of strings),
  ``environment.yml`` and ``environment.yaml`` (the same mapping as YAML, one ``"KEY": "value"``
  line each, readable by any YAML parser), mode 0600;
- ``$HOME/env`` becomes a relative link to ``.dotcloud/python`` (dotCloud's virtualenv was
  ``~/env``), unless something of that name exists.

``dcruntime.web`` does all this at each start of the web process. For processes started some
other way (one-off dynos, other Procfile entries), ``python3 -m dcruntime.dotcloud`` writes
the environment files and the link alone.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

SERVICE_JSON = ".dotcloud/service.json"
# dotCloud's home directory (/home/dotcloud) as the slug has it (bin/dcapproot.sh makes it):
# ``code`` (the whole tree), ``current`` (code/<approot>), ``env`` and the environment files,
# side by side. Inside ``.dotcloud/`` (a name Python cannot import), never in the app's own
# directory, which is on sys.path when the approot is ``.``.
DOTCLOUD_HOME = ".dotcloud/home"
ENV_FILES = ("environment.json", "environment.yml", "environment.yaml")
# Shell bookkeeping, not configuration: left out of the environment files.
NOT_WRITTEN = frozenset({"_", "SHLVL", "PWD", "OLDPWD"})
DEFAULT_SERVICE_NAME = "www"

# Data service type -> (environment.json type word, variables that may hold its URL, URL schemes).
DATA_TYPES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "mysql": ("MYSQL", ("DATABASE_URL", "JAWSDB_URL", "CLEARDB_DATABASE_URL"), ("mysql",)),
    "postgresql": ("SQL", ("DATABASE_URL",), ("postgres",)),
    "postgis": ("SQL", ("DATABASE_URL",), ("postgres", "postgis")),
    "redis": ("REDIS", ("REDIS_URL", "REDISCLOUD_URL", "REDISTOGO_URL"), ("redis",)),
    "mongodb": ("MONGODB", ("MONGODB_URI", "MONGO_URL", "MONGOLAB_URI"), ("mongodb",)),
}
DEFAULT_PORTS = {"mysql": "3306", "postgres": "5432", "postgis": "5432", "redis": "6379", "mongodb": "27017"}


LIB_DIR = str(Path(__file__).resolve().parents[1])


def dotcloud_home(home: Path) -> Path:
    """dotCloud's ``/home/dotcloud`` in this slug (``home`` is ``$HOME``, the app's directory)."""
    return home / DOTCLOUD_HOME


def current(home: Path) -> Path:
    """dotCloud's ``~/current``: the approot, through its link in the dotCloud home."""
    return home / DOTCLOUD_HOME / "current"


def app_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment without our own PYTHONPATH entry (bin/dcweb's: not the app's)."""
    env = dict(os.environ if environ is None else environ)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != LIB_DIR]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    else:
        env.pop("PYTHONPATH", None)
    return env


class BootError(Exception):
    """The app cannot start as configured: one line saying what to change."""


def load_service(home: Path) -> dict[str, object]:
    """``.dotcloud/service.json``; ``{}`` when the slug has none (an app without dotcloud.yml)."""
    path = home / SERVICE_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise BootError(f"{path} cannot be read ({exc}): build the app again") from None
    if not isinstance(data, dict):
        raise BootError(f"{path} is not a JSON object: build the app again")
    return data


def select(service: Mapping[str, object], name: str | None) -> dict[str, object]:
    """The service this process runs: service.json's own, or (``bin/dcweb NAME``) its worker
    service NAME (dcbuild.dotcloud's ``workers``), which shares the data services."""
    if not name or name == service.get("name"):
        return dict(service)
    workers = service.get("workers") if isinstance(service.get("workers"), dict) else {}
    if name not in workers:
        known = ", ".join(sorted(workers)) or "none"
        raise BootError(f"dotcloud.yml has no worker service {name!r} (bin/dcweb {name}); its worker services: {known}."
                        " The Procfile names it: build the app again after changing dotcloud.yml")
    worker = dict(workers[name])
    worker["data_services"] = service.get("data_services") or {}
    return worker


def workers_in_web(service: Mapping[str, object], environ: Mapping[str, str]) -> dict[str, dict[str, object]]:
    """The worker services the web process runs too: all of them when ``DC_WORKERS_IN_WEB`` is
    set (to anything but empty or 0), as dotCloud's single container did; else none."""
    if environ.get("DC_WORKERS_IN_WEB", "").strip().lower() in ("", "0", "false", "no", "off"):
        return {}
    if is_worker(service):
        return {}
    found = service.get("workers")
    return {str(k): v for k, v in found.items() if isinstance(v, dict)} if isinstance(found, dict) else {}


def mapping(service: Mapping[str, object], key: str) -> dict[str, str]:
    value = service.get(key) or {}
    return {str(k): "" if v is None else str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def is_worker(service: Mapping[str, object]) -> bool:
    return service.get("type") == "python-worker"


def _env_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name).upper()


def _first_host(netloc: str) -> tuple[str, str]:
    """(host, port) of a URL's first host: ``mongodb://u:p@h1:1,h2:2/db`` has several."""
    hostport = netloc.rpartition("@")[2].split(",")[0]
    if hostport.startswith("["):  # [::1]:5432
        host, _, rest = hostport[1:].partition("]")
        return host, rest.removeprefix(":")
    host, _, port = hostport.partition(":")
    return host, port


def data_service_keys(services: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """``DOTCLOUD_<SVC>_<TYPE>_*`` for each data service whose URL the environment holds."""
    keys: dict[str, str] = {}
    if not services:
        return keys
    from urllib.parse import unquote, urlsplit  # here: 5 ms to import, and most apps have no data service

    for name, kind in services.items():
        word, sources, schemes = DATA_TYPES.get(kind, (_env_name(kind), (), ()))
        url = environ.get(f"{_env_name(name)}_URL")
        if not url:
            url = next(
                (environ[s] for s in sources if environ.get(s) and urlsplit(environ[s]).scheme.startswith(schemes)),
                None,
            )
        if not url:
            continue
        parts = urlsplit(url)
        host, port = _first_host(parts.netloc)
        userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
        login, _, password = userinfo.partition(":")
        scheme = parts.scheme.split("+")[0]
        prefix = f"DOTCLOUD_{_env_name(name)}_{word}_"
        keys[prefix + "HOST"] = host
        keys[prefix + "PORT"] = port or next((p for s, p in DEFAULT_PORTS.items() if scheme.startswith(s)), "")
        keys[prefix + "LOGIN"] = unquote(login)
        keys[prefix + "PASSWORD"] = unquote(password)
        keys[prefix + "URL"] = url
    return keys


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def port_keys(service: Mapping[str, object], environ: Mapping[str, str]) -> dict[str, str]:
    """``PORT_<NAME>`` for ``ports:``. Only ``$PORT`` is routed: a python-worker's first http
    port gets it; every other port gets a free local port (reachable from the dyno only)."""
    keys: dict[str, str] = {}
    routed = is_worker(service) and bool(environ.get("PORT"))
    for name, kind in mapping(service, "ports").items():
        key = f"PORT_{_env_name(name)}"
        if key in environ:
            continue
        if routed and kind.lower() == "http":
            keys[key] = environ["PORT"]
            routed = False
        else:
            keys[key] = _free_port()
    return keys


def service_id(environ: Mapping[str, str]) -> str:
    m = re.fullmatch(r"[A-Za-z0-9_-]+\.(\d+)", environ.get("DYNO", ""))
    return str(max(int(m.group(1)) - 1, 0)) if m else "0"


def environment(service: Mapping[str, object], environ: Mapping[str, str], home: Path) -> dict[str, str]:
    """The programs' environment: ``environ`` wins over dotcloud.yml's, which wins over defaults."""
    env = dict(environ)
    for key, value in mapping(service, "environment").items():
        env.setdefault(key, value)
    project = env.get("APP_NAME") or env.get("HEROKU_APP_NAME") or home.name
    defaults = {
        "DOTCLOUD_ENVIRONMENT": "default",
        "DOTCLOUD_PROJECT": project,
        "DOTCLOUD_SERVICE_NAME": str(service.get("name") or DEFAULT_SERVICE_NAME),
        "DOTCLOUD_SERVICE_ID": service_id(env),
    }
    defaults.update(port_keys(service, env))
    defaults.update(data_service_keys(mapping(service, "data_services"), env))
    for key, value in defaults.items():
        env.setdefault(key, value)
    return env


def _yaml_quote(text: str) -> str:
    """A YAML double-quoted scalar: printable ASCII as is, everything else escaped."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def env_file_texts(env: Mapping[str, str]) -> dict[str, str]:
    data = {k: v for k, v in sorted(env.items()) if k not in NOT_WRITTEN}
    yml = "".join(f"{_yaml_quote(k)}: {_yaml_quote(v)}\n" for k, v in data.items()) or "{}\n"
    return {
        "environment.json": json.dumps(data, indent=4, sort_keys=True) + "\n",
        "environment.yml": yml,
        "environment.yaml": yml,
    }


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, text.encode("utf-8", "surrogateescape"))
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_env_files(home: Path, env: Mapping[str, str]) -> str | None:
    """environment.json/.yml/.yaml in ``home``, mode 0600; why not, if they cannot be written."""
    for name, text in env_file_texts(env).items():
        try:
            _write_private(home / name, text)
        except OSError as exc:
            return f"cannot write {home / name} ({exc.strerror}): apps reading it will not find it"
    return None


def link_env(home: Path) -> str | None:
    """``$HOME/env`` -> ``.dotcloud/python`` (relative), unless ``env`` exists; why not, if not."""
    link = home / "env"
    if os.path.lexists(link) or not (home / ".dotcloud" / "python").is_dir():
        return None
    try:
        link.symlink_to(".dotcloud/python")
    except OSError as exc:
        return f"cannot link {link} to .dotcloud/python ({exc.strerror}): ~/env/bin/python will not exist"
    return None


def main() -> int:
    home = Path(os.environ.get("HOME") or os.getcwd())
    try:
        env = environment(load_service(home), app_environ(), home)
    except BootError as exc:
        sys.stderr.write(f"dcruntime.dotcloud: error: {exc}\n")
        return 1
    for problem in (write_env_files(home, env), link_env(home)):
        if problem:
            sys.stderr.write(f"dcruntime.dotcloud: warning: {problem}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
