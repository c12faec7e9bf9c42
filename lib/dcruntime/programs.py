"""supervisord programs beside nginx and uWSGI: the app's ``supervisord.conf`` and dotcloud.yml's
``processes:`` (or ``process:``), and the overlay that sends their output to the web log.

Each of ``processes:`` becomes ``[program:<name>]``, run as dotCloud ran it: ``/bin/sh``
executing ``exec <command>`` in ``current/`` (dotCloud used a login shell, ``sh -lc``; a login
shell here would read /etc/profile, which resets PATH and loses the slug's Python). The command
is written to ``$DC_RUN_DIR/processes/<name>`` and run as ``/bin/sh <that file>``: supervisord
reads `` ;`` and `` #`` in a ``command=`` line as the start of a comment, and ``%`` as an
expansion, which a file avoids. Programs restart when they exit; one that cannot stay up for 3
seconds, 4 times in a row, is given up (FATAL).

The overlay (included last) adds, for each app program that names no log file, or names one
under ``/var/log/supervisor/`` (dotCloud's log directory, which does not exist here), the
settings that send its output to its FIFO; ``user=root`` when run as root; and, for a
``python-worker`` service, ``autostart=false`` for nginx and uWSGI.
"""

from __future__ import annotations

import configparser
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from .dotcloud import BootError, current

SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
CORE = ("nginx", "uwsgi")
RESERVED = (*CORE, "dcweb")
DOTCLOUD_LOGS = "/var/log/supervisor/"
PROGRAM_SETTINGS = (
    "autostart=true",
    "autorestart=true",
    "startsecs=3",
    "startretries=3",
    "stopsignal=TERM",
    "stopwaitsecs=8",
    "stopasgroup=true",
    "killasgroup=true",
    "redirect_stderr=true",
    "stdout_logfile_maxbytes=0",
)


def _escape(text: str) -> str:
    """A value supervisord expands: ``%`` must be doubled."""
    return text.replace("%", "%%")


def app_programs(app_conf: Path) -> tuple[list[tuple[str, dict[str, str]]], str | None]:
    """The ``[program:x]`` sections of a supervisord file with their options, or why they can't be read."""
    if not app_conf.exists():
        return [], None
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
    try:
        parser.read(app_conf, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return [], f"{app_conf} does not parse: supervisord will say why"
    programs = []
    for section in parser.sections():
        if section.startswith("program:"):
            programs.append((section.removeprefix("program:"), dict(parser.items(section))))
    return programs, None


def processes(service: Mapping[str, object], taken: list[str]) -> dict[str, str]:
    """dotcloud.yml's processes (name -> command), checked against the names already taken."""
    found = service.get("processes") or {}
    if not isinstance(found, dict):
        return {}
    result = {}
    for name, command in found.items():
        name, command = str(name), str(command or "").strip()
        where = f"dotcloud.yml processes: '{name}'"
        if not SAFE_NAME.match(name):
            raise BootError(f"{where} is not a usable program name: use letters, digits, '_', '-' or '.'")
        if name in RESERVED or name in taken:
            owner = "the buildpack's" if name in RESERVED else "current/supervisord.conf's"
            raise BootError(f"{where} has the name of {owner} program {name}: rename it")
        if not command:
            raise BootError(f"{where} has no command")
        result[name] = command
    return result


def from_dir(commands: Mapping[str, str], path: Path) -> dict[str, str]:
    """The commands, each run from ``path`` (a worker service whose approot is not the build's)."""
    prefix = f"cd {shlex.quote(str(path))} || exit 1\n"
    return {name: prefix + (command if "\n" in command else f"exec {command}") for name, command in commands.items()}


def worker_commands(
    workers: Mapping[str, Mapping[str, object]], home: Path, environ: Mapping[str, str], taken: list[str]
) -> dict[str, str]:
    """The processes of worker services run by the web process (``DC_WORKERS_IN_WEB``), named
    ``<service>_<process>``: each from its service's approot, with ``DOTCLOUD_SERVICE_NAME`` and
    its service's ``environment:`` (where the platform's config vars do not set the name)."""
    out: dict[str, str] = {}
    for service, settings in workers.items():
        commands = processes(settings, [])
        if not commands:
            raise BootError(f"DC_WORKERS_IN_WEB: the worker service {service} has no processes: in dotcloud.yml;"
                            f" run it as its own process type (bin/dcweb {service}) instead")
        approot = home / str(settings.get("approot") or ".")
        env = {"DOTCLOUD_SERVICE_NAME": service}
        values = settings.get("environment")
        for key, value in (values.items() if isinstance(values, dict) else ()):
            if key not in environ and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(key)):
                env[str(key)] = str(value)
        exports = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items())
        for name, command in from_dir(commands, approot).items():
            program = f"{service}_{name}"
            if program in RESERVED or program in taken or program in out:
                raise BootError(f"DC_WORKERS_IN_WEB: the program name {program} is taken: rename process {name}"
                                f" of service {service} in dotcloud.yml")
            out[program] = exports + command
    return out


def process_sections(commands: Mapping[str, str], home: Path, run_dir: Path, log_dir: Path) -> str:
    """supervisord sections for ``processes:``; each command into run_dir/processes/<name>."""
    scripts = run_dir / "processes"
    scripts.mkdir(exist_ok=True)
    lines = []
    for name, command in commands.items():
        script = scripts / name
        # One line: exec it (signals reach the program itself). Several: a shell script.
        body = command if "\n" in command else f"exec {command}"
        script.write_text(f"# dotcloud.yml processes: {name}\n{body}\n", encoding="utf-8")
        lines += [
            "",
            f"[program:{name}]",
            f"command={_escape(shlex.join(['/bin/sh', str(script)]))}",
            f"directory={_escape(str(current(home)))}",
            *PROGRAM_SETTINGS,
            f"stdout_logfile={_escape(str(log_dir / name))}",
        ]
    return "\n".join(lines) + "\n" if lines else ""


def overlay(
    programs: list[tuple[str, Mapping[str, str]]],
    log_dir: Path,
    root: bool,
    note: str | None = None,
    worker: bool = False,
) -> str:
    """supervisord settings merged over config/supervisord.conf and the app's programs."""
    lines = ["; written by dcruntime.web at start"]
    if note:
        lines.append(f"; {note}")
    if root:
        lines += ["[supervisord]", "user=root"]
    if worker:
        for name in CORE:
            lines += ["", f"[program:{name}]", "autostart=false"]
    for name, options in programs:
        if not SAFE_NAME.match(name):
            continue
        added = []
        redirected = str(options.get("redirect_stderr", "false")).lower() in ("true", "yes", "on", "1")
        for channel in ("stdout",) if redirected else ("stdout", "stderr"):
            named = f"{channel}_logfile" in options
            if not named or str(options[f"{channel}_logfile"]).startswith(DOTCLOUD_LOGS):
                added += [f"{channel}_logfile={_escape(str(log_dir / name))}", f"{channel}_logfile_maxbytes=0"]
        if added:
            lines += ["", f"[program:{name}]", *added]
    return "\n".join(lines) + "\n"


def watched(programs: list[tuple[str, Mapping[str, str]]], commands: Mapping[str, str]) -> list[str]:
    """The programs a python-worker service runs (the ones whose FATAL state counts)."""
    names = [
        name for name, opts in programs
        if SAFE_NAME.match(name) and str(opts.get("autostart", "true")).lower() not in ("false", "no", "off", "0")
    ]
    return [*names, *commands]
