"""Process titles an operator recognises in ``ps`` and ``top``: ``dcweb``, ``uwsgi master``, ``uwsgi worker 1``.

Linux shows a process's command line from the memory that held its arguments at exec
(``/proc/PID/cmdline``: ``ps -f``, ``top -c``) and its name from ``comm`` (``ps -e``, ``top``;
15 bytes). uWSGI renames its processes itself (``procname-master``, ``auto-procname``) only
when it owns that memory; pyuwsgi, the wheel the buildpack installs, runs uWSGI inside Python,
and its processes stay ``python3 .../bin/uwsgi --master --socket ...``. So this writes the title
over that memory (its bounds are fields 48 and 49 of ``/proc/self/stat``), padded with NUL
bytes, and sets ``comm`` with ``prctl(PR_SET_NAME)``; a title longer than the area is cut.
Python keeps its own copy of its arguments (``sys.argv``), which nothing here changes.

Standard library only; loaded by path from ``dcruntime/wsgiapp.py`` too (the app's ``sys.path``
stays its own).
"""

from __future__ import annotations

import ctypes

PR_SET_NAME = 15


def set_title(title: str) -> bool:
    """Retitle this process; False where Linux's /proc or libc are not there (nothing changes)."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (fields 48, 49)
        libc = ctypes.CDLL(None, use_errno=True)
    except (OSError, ValueError, IndexError):
        return False
    size = end - start
    if size <= 1 or start <= 0:
        return False
    data = title.encode("utf-8", "replace")[: size - 1]
    ctypes.memmove(start, data + b"\0" * (size - len(data)), size)
    libc.prctl(PR_SET_NAME, ctypes.c_char_p(data[:15]), 0, 0, 0)
    return True
