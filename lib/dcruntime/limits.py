"""nginx's limits at the edge: the largest request body, and how long nginx waits for uWSGI.

dcruntime.web adds these to the environment of the web process's programs, and bin/nginx_start
renders them into config/nginx.conf.template (they are on dcruntime.render's allow-list):

``${DC_CLIENT_MAX_BODY_SIZE}``
    ``NGINX_CLIENT_MAX_BODY_SIZE`` (an nginx size: ``1m``, ``512k``, ``20m``; ``0`` means no
    limit), default ``1m`` as on dotCloud. A larger request body gets 413 from nginx; the app
    never sees it.
``${DC_UWSGI_READ_TIMEOUT}``
    half a second less than uWSGI's ``harakiri`` (``UWSGI_HARAKIRI``, else dotcloud.yml's
    ``config.uwsgi_harakiri``, else dcruntime.uwsgiconf's default, 60 s). uWSGI's master checks
    harakiri about once a second, so it kills a stuck worker between ``harakiri`` and
    ``harakiri`` + 2 s; nginx, having given up first, has already answered 504 (Gateway Timeout),
    never a hung connection or a 502. Without harakiri (0), 60 s.

An app's own ``nginx.conf`` (``client_max_body_size`` at server level) and ``uwsgi.conf``
(``uwsgi_read_timeout``) override both, as they are nearer the request than the http level.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .dotcloud import BootError

DEFAULT_BODY_SIZE = "1m"
NO_HARAKIRI_TIMEOUT = "60s"
MARGIN_MS = 500
_SIZE = re.compile(r"[0-9]{1,9}[kKmMgG]?")


def body_size(environ: Mapping[str, str]) -> str:
    value = environ.get("NGINX_CLIENT_MAX_BODY_SIZE", "").strip()
    if not value:
        return DEFAULT_BODY_SIZE
    if not _SIZE.fullmatch(value):
        raise BootError(
            f"NGINX_CLIENT_MAX_BODY_SIZE is {value!r}: use a size nginx understands, such as 512k, 1m or 20m"
            " (0 turns the limit off)"
        )
    return value


def harakiri(ini: Mapping[str, str], environ: Mapping[str, str]) -> int:
    """uWSGI's harakiri in seconds as it will run: the environment's beats the ini file's."""
    if "UWSGI_HARAKIRI" in environ:
        value = environ["UWSGI_HARAKIRI"].strip()
        if not value.isdigit():
            raise BootError(f"UWSGI_HARAKIRI is {value!r}: it must be a whole number of seconds (0 turns it off)")
        return int(value)
    return int(ini.get("harakiri") or 0)


def read_timeout(seconds: int) -> str:
    return f"{seconds * 1000 - MARGIN_MS}ms" if seconds > 0 else NO_HARAKIRI_TIMEOUT


def template_vars(ini: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """The template's variables; BootError names a setting that nginx would not take."""
    return {
        "DC_CLIENT_MAX_BODY_SIZE": body_size(environ),
        "DC_UWSGI_READ_TIMEOUT": read_timeout(harakiri(ini, environ)),
    }
