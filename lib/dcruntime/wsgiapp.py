"""The WSGI entry point uWSGI loads (``--wsgi-file``): the app's ``application`` from
``current/wsgi.py``, wrapped to catch a Python 2 habit.

Under Python 3 a WSGI body is bytes. An app written for Python 2 (dotCloud's own hello world
among them) returns ``str`` chunks; uWSGI then sends a 200 with an empty body and logs
``Unhandled object from iterator``. The wrapper notices the first ``str`` chunk in each worker
and logs one line naming the fix. With ``DC_ENCODE_STR_BODY=1`` it encodes ``str`` chunks as
UTF-8 instead (and says nothing).

The wrapper costs one type check per chunk: a list or tuple (the usual return) is checked and
returned as it is; a bytes body too; a file-like result (``wsgi.file_wrapper``, which uWSGI sends
with sendfile only when it gets the very same object back) is never touched; any other iterable
is wrapped in an iterator that checks each chunk and keeps its ``close()``.

This file is loaded by path, not imported from ``dcruntime``: the app's ``sys.path`` stays its own.
"""

from __future__ import annotations

import os
import sys

import wsgi as _app_module  # current/wsgi.py (uWSGI's --pythonpath), as dotCloud loaded it

ENCODE = os.environ.get("DC_ENCODE_STR_BODY", "").strip().lower() in ("1", "true", "yes", "on")
_warned = False

try:
    _app = _app_module.application
except AttributeError:
    raise RuntimeError(
        f"{_app_module.__file__} defines no 'application': the WSGI callable must be called application"
        " (dotCloud's name for it; e.g. add `application = app` at the end of wsgi.py)"
    ) from None


def _titles() -> None:
    """``uwsgi master`` and ``uwsgi worker N`` in ps and top (dcruntime/proctitle.py, loaded by path
    like this file). After the app's import: a post-fork hook the app set (uwsgidecorators) still runs."""
    try:
        import importlib.util

        import uwsgi
    except ImportError:  # not under uWSGI
        return
    spec = importlib.util.spec_from_file_location("_dcweb_proctitle", os.path.join(os.path.dirname(__file__),
                                                                                  "proctitle.py"))
    if spec is None or spec.loader is None:
        return
    titles = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(titles)
    if uwsgi.worker_id() > 0:  # lazy-apps: loaded in each worker
        titles.set_title(f"uwsgi worker {uwsgi.worker_id()}")
        return
    titles.set_title("uwsgi master")
    previous = getattr(uwsgi, "post_fork_hook", None)

    def post_fork() -> None:
        if uwsgi.worker_id() > 0:
            titles.set_title(f"uwsgi worker {uwsgi.worker_id()}")
        if previous is not None:
            previous()

    uwsgi.post_fork_hook = post_fork


_titles()


def _hint(environ) -> None:
    global _warned
    _warned = True
    where = f"{environ.get('REQUEST_METHOD', '?')} {environ.get('PATH_INFO', '?')}"
    sys.stderr.write(
        f"dcweb: worker {os.getpid()}: the app returned str body chunks for {where} (Python 2 style): Python 3"
        " sends only bytes, so the response body is empty. Fix: return [body.encode('utf-8')]"
        " (or set DC_ENCODE_STR_BODY=1 to have str chunks encoded as UTF-8)\n"
    )
    sys.stderr.flush()


def _encode(chunk, environ):
    if ENCODE:
        return chunk.encode("utf-8")
    if not _warned:
        _hint(environ)
    return chunk


class _Checked:
    """An iterable body whose chunks are checked one by one; keeps the original's close().

    uWSGI asks for the iterator once, then resumes a generator per chunk (cheaper than a
    Python ``__next__`` method); it calls ``close()`` on this object, i.e. the original's.
    """

    __slots__ = ("_environ", "_result", "close")

    def __init__(self, result, environ) -> None:
        self._result = result
        self._environ = environ
        close = getattr(result, "close", None)
        if close is not None:
            self.close = close

    def __iter__(self):
        environ = self._environ
        for chunk in self._result:
            if type(chunk) is not bytes and isinstance(chunk, str):
                chunk = _encode(chunk, environ)
            yield chunk


def application(environ, start_response):
    result = _app(environ, start_response)
    kind = type(result)
    if kind is list or kind is tuple:
        for chunk in result:
            if type(chunk) is not bytes and isinstance(chunk, str):
                if ENCODE:
                    return [c.encode("utf-8") if isinstance(c, str) else c for c in result]
                if not _warned:
                    _hint(environ)
                break
        return result
    if kind is bytes:
        return result
    if isinstance(result, str):
        return [_encode(result, environ)]
    if hasattr(result, "read"):
        return result
    return _Checked(result, environ)
