"""Render a config template with envsubst semantics, restricted to an allow-list.

Only the braced form ``${NAME}`` of an allowed name is replaced; everything else (nginx's
``$uri``, ``$host``, ``$1``, ``${uri}``, an unlisted ``${FOO}``) is left exactly as written. An
allowed name that is unset is an error naming the variable and the template line, never an
empty string.

    python3 -m dcruntime.render [--sample] TEMPLATE OUTPUT

``--sample`` first fills in what the web process would set (``sample_environ``); ``make lint``
uses it to check config/nginx.conf.template with ``nginx -t``.

The allow-list is ``DEFAULT_NAMES`` plus any names listed (space or comma separated) in
``DC_TEMPLATE_VARS``, for apps that ship their own template with their own variables.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

# What dcruntime.web gives the web process when the platform sets none of these.
WEB_DEFAULTS = {"TMPDIR": "/tmp", "NGINX_WORKERS": "2"}
DEFAULT_NAMES = ("PORT", "HOME", "TMPDIR", "DC_RUN_DIR", "NGINX_WORKERS",
                 "DC_CLIENT_MAX_BODY_SIZE", "DC_UWSGI_READ_TIMEOUT")  # the last two: dcruntime.limits
_BRACED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class RenderError(Exception):
    pass


def allowed_names(environ: Mapping[str, str]) -> frozenset[str]:
    extra = re.split(r"[\s,]+", environ.get("DC_TEMPLATE_VARS", "").strip())
    return frozenset(DEFAULT_NAMES) | {name for name in extra if name}


def render(text: str, environ: Mapping[str, str], names: Iterable[str], source: str = "<template>") -> str:
    """Replace ``${NAME}`` for each allowed NAME; raise RenderError listing every unset one."""
    names = frozenset(names)
    missing: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            return match.group(0)
        value = environ.get(name)
        if value is None:
            line = text.count("\n", 0, match.start()) + 1
            missing.append(f"{source}:{line}: ${{{name}}} is not set")
            return match.group(0)
        return value

    result = _BRACED.sub(substitute, text)
    if missing:
        raise RenderError("\n".join(missing))
    return result


def render_file(template: Path, output: Path, environ: Mapping[str, str]) -> None:
    try:
        text = template.read_text(encoding="utf-8")
    except OSError as exc:
        raise RenderError(f"cannot read the template {template}: {exc.strerror}") from None
    result = render(text, environ, allowed_names(environ), source=str(template))
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(result, encoding="utf-8")
    tmp.replace(output)


def sample_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """environ plus the values the web process would give every default name it lacks.

    For ``make lint``, which checks the rendered template with ``nginx -t``: the caller sets
    HOME and DC_RUN_DIR; the rest is what dcruntime.web computes with no config vars set.
    """
    from . import limits, uwsgiconf  # only here: the runtime's render stays a small import

    env = {"PORT": "5000", **WEB_DEFAULTS, **environ}
    for name, value in limits.template_vars(uwsgiconf.options({}, env), env).items():
        env.setdefault(name, value)
    return env


def main(argv: list[str]) -> int:
    sample = argv[:1] == ["--sample"]
    if sample:
        argv = argv[1:]
    if len(argv) != 2:
        print("usage: python3 -m dcruntime.render [--sample] TEMPLATE OUTPUT", file=sys.stderr)
        return 2
    try:
        render_file(Path(argv[0]), Path(argv[1]), sample_environ(os.environ) if sample else os.environ)
    except RenderError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
