"""The platform's config vars at build time: ENV_DIR, one file per variable.

    python3 -m dcbuild.configvars check ENV_DIR    warn once about what the build ignores

A value is a file's content, handed over as data: never evaluated by a shell. What the build
leaves out, each with a warning from ``check`` (bin/compile runs it once per build):

- names that are not shell variable names (``BAD-NAME``, ``a b``): no program could read them;
- values with a NUL byte: no environment can hold them;
- ``DENIED`` names: they would replace the build's own tools and libraries (``PATH``,
  ``LD_PRELOAD``, ``PYTHONHOME`` ...) or make the shell that runs a hook evaluate a value
  (``BASH_ENV``, ``SHELLOPTS`` with ``PS4``). They still reach the running app: the platform
  sets them there, not this buildpack.

Secrets never reach the build log: lines a hook prints go through ``redact``, which masks the
values of config vars whose names say they are secret (``SECRET``, ``PASSWORD``, ``TOKEN``,
``KEY``, ...) and the password of any ``scheme://user:password@host`` value.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from . import log

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Not exported to the build's hooks: the first group as Heroku's buildpacks keep them out;
# PYTHONHOME/PYTHONPATH would point the slug's Python at another library; the shell group
# would have bash (or sh) run code from a value when it starts a hook.
DENIED = frozenset({
    "PATH", "GIT_DIR", "CPATH", "CPPATH", "LD_PRELOAD", "LIBRARY_PATH", "LD_LIBRARY_PATH",
    "PYTHONHOME", "PYTHONPATH",
    "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "IFS", "CDPATH", "GLOBIGNORE",
})
SECRET_NAME = re.compile(
    r"SECRET|PASSWORD|PASSWD|PASSPHRASE|TOKEN|CREDENTIAL|PRIVATE|AUTH|SALT|SIGNATURE|(?:^|_)(?:API)?KEY(?:$|_)"
    r"|(?:^|_)DSN$|(?:^|_)PASS$|(?:^|_)PWD$",
    re.I,
)
MASK = "********"
MIN_SECRET = 4  # shorter values would mask ordinary words and digits everywhere


def _entries(env_dir: Path | None) -> list[Path]:
    if not env_dir or not env_dir.is_dir():
        return []
    try:
        return sorted(p for p in env_dir.iterdir() if p.is_file())
    except OSError:
        return []


def _value(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def read(env_dir: Path | None) -> dict[str, str]:
    """Every usable config var (valid name, readable, no NUL byte), DENIED ones included."""
    out: dict[str, str] = {}
    for path in _entries(env_dir):
        if NAME.fullmatch(path.name):
            value = _value(path)
            if value is not None and "\0" not in value:
                out[path.name] = value
    return out


def for_build(env_dir: Path | None) -> dict[str, str]:
    """The config vars a build step may export: ``read`` without the DENIED names."""
    return {k: v for k, v in read(env_dir).items() if k not in DENIED}


def problems(env_dir: Path | None) -> list[tuple[str, str]]:
    """(name, why it is ignored) for each config var the build leaves out."""
    out = []
    for path in _entries(env_dir):
        name = path.name
        if name.startswith("."):
            continue  # not a config var: a platform's or editor's file
        if not NAME.fullmatch(name):
            out.append((name, "not a valid variable name (letters, digits and _, not starting with a digit)"))
            continue
        value = _value(path)
        if value is None:
            out.append((name, "the file cannot be read"))
        elif "\0" in value:
            out.append((name, "the value holds a NUL byte, which no environment variable can"))
        elif name in DENIED:
            out.append((name, "it would replace the build's own tools or run code in its shells;"
                              " it still applies to the running app"))
    return out


def check(env_dir: Path | None) -> None:
    for name, why in problems(env_dir):
        log.warn(f"config var {name!r} is ignored during the build: {why}.")


def secrets(config: dict[str, str]) -> list[str]:
    """The strings to mask in the build log, longest first."""
    found = set()
    for name, value in config.items():
        value = value.strip()
        if SECRET_NAME.search(name) and len(value) >= MIN_SECRET:
            found.add(value)
        if "://" in value and "@" in value:
            try:
                password = urlsplit(value).password
            except ValueError:
                password = None
            if password and len(password) >= MIN_SECRET:
                found.add(password)
    return sorted(found, key=len, reverse=True)


def redact(text: str, masked: list[str]) -> str:
    for secret in masked:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "check":
        raise log.BuildError("usage: python3 -m dcbuild.configvars check ENV_DIR")
    check(Path(argv[1]) if argv[1] else None)
    return 0


if __name__ == "__main__":
    log.main(_main)
