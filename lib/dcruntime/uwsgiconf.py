"""uWSGI's tunables: dotcloud.yml's ``config:`` and the platform's variables, as an ini file.

``bin/uwsgi_start`` gives uWSGI the fixed options (socket, app, signals) on its command line and
this file with ``--ini``. uWSGI also reads any option from ``UWSGI_<OPTION>`` environment
variables (``UWSGI_HARAKIRI=30``; pyuwsgi does too), but a command-line or ini option beats the
environment. So an option the environment sets is left out of the file, and the precedence is:

    UWSGI_<OPTION>  >  WEB_CONCURRENCY (processes only)  >  dotcloud.yml config  >  default

The default process count comes from the container's CPUs and memory limit
(``dcruntime.concurrency``); ``processes_note`` says at start which one is used and why.
With more than one process, accept() is serialized (``thunder-lock``).
uWSGI's per-request log is off (``disable-logging``): nginx logs every request already, and a
second line per request through supervisord costs throughput. ``UWSGI_DISABLE_LOGGING=false``
turns it back on; dotcloud.yml's ``uwsgi_memory_report`` does too (its line is part of it).

The platform's config vars win over dotcloud.yml, as they do for ``environment:``. The options
uwsgi_start fixes (socket, app, working directory, logging) are not tunable: a ``UWSGI_*``
variable for one of them gets a warning at start (``conflicts``).
"""

from __future__ import annotations

from collections.abc import Mapping

from . import concurrency
from .dotcloud import BootError

DEFAULT_BUFFER_SIZE = 8192  # dotCloud's was 4096; 8192 (what most apps set) takes larger cookies
# A request still running after this many seconds has its worker killed and replaced; nginx
# answers 504 half a second before (dcruntime.limits). dotCloud's gateway gave up at 60 s.
# 0 (dotcloud.yml uwsgi_harakiri: 0, or UWSGI_HARAKIRI=0) turns it off.
DEFAULT_HARAKIRI = 60
MAX_BUFFER_SIZE = 65535  # the uwsgi protocol's packet size is 16 bits

# dotcloud.yml config key -> (uWSGI option, kind)
SETTINGS = {
    "uwsgi_processes": ("processes", "count"),
    "uwsgi_buffer_size": ("buffer-size", "size"),
    "uwsgi_harakiri": ("harakiri", "seconds"),
    "uwsgi_enable_threads": ("enable-threads", "flag"),
    "uwsgi_single_interpreter": ("single-interpreter", "flag"),
    "uwsgi_memory_report": ("memory-report", "flag"),
}
# UWSGI_* variables that fight the fixed options of bin/uwsgi_start, and what they would do.
CONFLICTS = {
    "UWSGI_MODULE": "a second app, which uWSGI skips: current/wsgi.py's application is loaded already",
    "UWSGI_WSGI": "a second app, which uWSGI skips: current/wsgi.py's application is loaded already",
    "UWSGI_WSGI_FILE": "ignored: the command line names the buildpack's WSGI entry point",
    "UWSGI_FILE": "ignored: the command line names the buildpack's WSGI entry point",
    "UWSGI_CALLABLE": "the buildpack's entry point is `application`; name yours application in wsgi.py",
    "UWSGI_SOCKET": "a second socket; nginx talks to the one in the run directory",
    "UWSGI_CHDIR": "ignored: uWSGI runs in current/",
    "UWSGI_DAEMONIZE": "uWSGI would leave supervisord's watch and the web log",
    "UWSGI_LOGTO": "uWSGI's log would leave the web log",
}
TRUE = {"true", "yes", "on", "1"}
FALSE = {"false", "no", "off", "0", ""}


def env_name(option: str) -> str:
    return "UWSGI_" + option.upper().replace("-", "_")


def _number(value: object, origin: str, low: int, high: int | None = None) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < low or (high is not None and int(text) > high):
        limit = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise BootError(f"{origin} is {value!r}: it must be a whole number {limit}")
    return int(text)


def _flag(value: object, origin: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE | FALSE:
        return text in TRUE
    raise BootError(f"{origin} is {value!r}: use true or false")


def options(config: Mapping[str, object], environ: Mapping[str, str]) -> dict[str, str]:
    """The ini file's options, validated; BootError names the setting at fault."""
    values: dict[str, str] = {}
    processes: tuple[object, str] = (0, "")  # 0: the default (dcruntime.concurrency)
    buffer_size: tuple[object, str] = (DEFAULT_BUFFER_SIZE, "")
    if config.get("uwsgi_harakiri") is None:
        values["harakiri"] = str(DEFAULT_HARAKIRI)
    for key, (option, kind) in SETTINGS.items():
        if config.get(key) is None:
            continue
        origin = f"dotcloud.yml config.{key}"
        value = config[key]
        if kind == "count":
            processes = (value, origin)
        elif kind == "size":
            buffer_size = (value, origin)
        elif kind == "seconds":
            seconds = _number(value, origin, 0)
            if seconds:
                values[option] = str(seconds)
        elif _flag(value, origin):
            values[option] = "true"
    if environ.get("WEB_CONCURRENCY", "").strip():
        processes = (environ["WEB_CONCURRENCY"], "WEB_CONCURRENCY")
    if processes[1] == "":
        processes = (concurrency.limits(environ).workers(), "")
    values["processes"] = str(_number(processes[0], processes[1] or "processes", 1))
    # One line per request from nginx is enough: uWSGI's own request log is off unless asked for
    # (UWSGI_DISABLE_LOGGING=false), or unless dotcloud.yml's uwsgi_memory_report wants its
    # per-request memory line (printed with the request log).
    if "memory-report" not in values:
        values["disable-logging"] = "true"
    values["buffer-size"] = str(_number(buffer_size[0], buffer_size[1] or "buffer-size", 1, MAX_BUFFER_SIZE))
    # Several workers share the socket: without a lock on accept(), every new connection wakes
    # all of them and all but one find nothing (one failed accept() and a context switch per
    # worker per request, counted with strace). uWSGI's docs advise it for this case.
    count = running(values, environ, "processes")
    if not count.isdigit() or int(count) > 1:
        values["thunder-lock"] = "true"
    return {k: v for k, v in values.items() if env_name(k) not in environ}


def running(values: Mapping[str, str], environ: Mapping[str, str], option: str) -> str:
    """An option's value as uWSGI will run it: the environment's UWSGI_<OPTION> beats the ini file's."""
    return environ.get(env_name(option), "").strip() or values.get(option, "")


def processes_note(config: Mapping[str, object], environ: Mapping[str, str], values: Mapping[str, str]) -> str:
    """Which uWSGI process count runs, and where it comes from (one line for the web log)."""
    if environ.get("UWSGI_PROCESSES", "").strip():
        return f"uWSGI processes: {environ['UWSGI_PROCESSES'].strip()} (UWSGI_PROCESSES)"
    count = values.get("processes", "?")
    if environ.get("WEB_CONCURRENCY", "").strip():
        return f"uWSGI processes: {count} (WEB_CONCURRENCY={count})"
    if config.get("uwsgi_processes") is not None:
        return f"uWSGI processes: {count} (dotcloud.yml config.uwsgi_processes)"
    found = concurrency.limits(environ)
    return f"uWSGI processes: {count} (WEB_CONCURRENCY={count} by default: {found.describe()})"


def ini_text(values: Mapping[str, str]) -> str:
    lines = ["; written by dcruntime.web at start (see dcruntime.uwsgiconf)", "[uwsgi]"]
    lines += [f"{key} = {value}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def conflicts(environ: Mapping[str, str]) -> list[str]:
    """Warnings for UWSGI_* variables that work against the buildpack's uWSGI command line."""
    return [f"{name} is set: {why}; unset it" for name, why in CONFLICTS.items() if environ.get(name)]
