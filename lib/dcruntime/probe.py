"""The start's health probe: ``GET /`` through nginx on 127.0.0.1:$PORT, as a client would.

The first HTTP answer (whatever its status: the app's ``/`` may well be a 404 or a redirect)
means nginx listens and reaches uWSGI, which has loaded the app; ``dcruntime.web`` then logs
``ready in N ms (GET / answered 200)``, N counted from the start of the web process (its pid
was bin/dcweb's). The probe retries every 20 ms while nothing listens, and gives up silently
after ``DEADLINE`` seconds or when the web process stops. Its request is in nginx's access log
with the user agent ``dcweb-probe``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

DEADLINE = 120.0
RETRY = 0.02
REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: dcweb-probe\r\nConnection: close\r\n\r\n"


def started() -> float:
    """When this process started, on the CLOCK_BOOTTIME scale (its /proc start time, in clock ticks)."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            ticks = int(stat.read().rsplit(b")", 1)[1].split()[19])
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.clock_gettime(time.CLOCK_BOOTTIME)


def since(start: float) -> int:
    return max(0, round((time.clock_gettime(time.CLOCK_BOOTTIME) - start) * 1000))


def get(port: int, timeout: float = 60.0) -> int | None:
    """The status of ``GET /`` on 127.0.0.1:port; None if nothing answered."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(REQUEST)
            data = b""
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            while sock.recv(65536):  # the whole answer: nginx logs what it sent
                pass
    except OSError:
        return None
    fields = data.split(b"\r\n", 1)[0].split()
    if len(fields) >= 2 and fields[0].startswith(b"HTTP/") and fields[1].isdigit():
        return int(fields[1])
    return None


def wait(port: int, alive: Callable[[], bool], deadline: float = DEADLINE) -> int | None:
    """The first status ``GET /`` gets while ``alive()``, within deadline seconds; None otherwise."""
    end = time.monotonic() + deadline
    while alive() and time.monotonic() < end:
        status = get(port)
        if status is not None:
            return status
        time.sleep(RETRY)
    return None
