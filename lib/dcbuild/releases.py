"""Whether a pinned requirement has a release for the target Python, and the nearest that has.

Three sources, cheapest first; none needs the network to be there:

1. Django's own table of supported Python versions (its FAQ), built in: most dotCloud apps pin
   an old Django, which installs on any Python 3 (an sdist with no ``Requires-Python``) and
   fails only when imported.
2. Packages of that era known to be Python 2 only, and what replaced them (``PY2_ONLY``).
3. PyPI's JSON API (``https://pypi.org/pypi/NAME/json``: every release's files, each with its
   ``requires_python`` and wheel tag), asked only when the index is PyPI (no ``PIP_INDEX_URL``
   of the app's own), with a short timeout, once per report; ``DC_PYPI_LOOKUP=0`` turns it off.
   Unreachable, slow or unknown: nothing is said, never a guess.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time

PYPI = "https://pypi.org/pypi/{}/json"
TIMEOUT = 4.0

# Django X.Y -> (oldest, newest Python line it supports, the release that added the newest),
# from Django's FAQ "What Python version can I use with Django?".
DJANGO = {
    (1, 0): ((2, 3), (2, 6), ""), (1, 1): ((2, 3), (2, 6), ""), (1, 2): ((2, 4), (2, 7), ""),
    (1, 3): ((2, 4), (2, 7), ""), (1, 4): ((2, 5), (2, 7), ""), (1, 5): ((2, 6), (3, 3), ""),
    (1, 6): ((2, 6), (3, 3), ""), (1, 7): ((2, 7), (3, 4), ""), (1, 8): ((2, 7), (3, 5), ""),
    (1, 9): ((2, 7), (3, 5), ""), (1, 10): ((2, 7), (3, 5), ""), (1, 11): ((2, 7), (3, 7), "1.11.17"),
    (2, 0): ((3, 4), (3, 7), ""), (2, 1): ((3, 5), (3, 7), ""), (2, 2): ((3, 5), (3, 9), "2.2.17"),
    (3, 0): ((3, 6), (3, 9), "3.0.11"), (3, 1): ((3, 6), (3, 9), "3.1.3"), (3, 2): ((3, 6), (3, 10), "3.2.9"),
    (4, 0): ((3, 8), (3, 10), ""), (4, 1): ((3, 8), (3, 11), "4.1.3"), (4, 2): ((3, 8), (3, 12), "4.2.8"),
    (5, 0): ((3, 10), (3, 12), ""), (5, 1): ((3, 10), (3, 13), "5.1.3"), (5, 2): ((3, 10), (3, 14), "5.2.8"),
    (6, 0): ((3, 12), (3, 14), ""),
}

# Python 2-only packages of the dotCloud era (2012-2014), normalised names -> (what replaces
# them, "" when the line can just go; why).
PY2_ONLY = {
    "mysql-python": ("mysqlclient", "the same MySQLdb module, for Python 3"),
    "pil": ("Pillow", "the same PIL package, for Python 3"),
    "south": ("", "Django 1.7 and later have their own migrations (manage.py makemigrations)"),
    "distribute": ("", "distribute was merged back into setuptools in 2013"),
    "wsgiref": ("", "wsgiref is in the standard library"),
    "uuid": ("", "uuid is in the standard library"),
    "ordereddict": ("", "collections.OrderedDict is in the standard library"),
    "pysqlite": ("", "sqlite3 is in the standard library"),
    "beautifulsoup": ("beautifulsoup4", "BeautifulSoup 4, imported as bs4"),
    "python-openid": ("python3-openid", "the same openid package, for Python 3"),
    "pycrypto": ("pycryptodome", "the same Crypto package, maintained"),
    "django-celery": ("celery", "celery 4 and later have their own Django support"),
}


def replacement(name: str) -> str:
    """What to do about a Python 2-only package: ``use X (why)`` or ``remove the line (why)``."""
    use, why = PY2_ONLY[normal(name)]
    return f"use {use} ({why})" if use else f"remove the line ({why})"



def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _release_key(version: str) -> tuple[int, ...] | None:
    """A final release's numbers, None for pre-releases, dev and local versions."""
    m = re.fullmatch(r"v?(\d+(?:\.\d+)*)(?:\.post\d+)?", version.strip())
    return tuple(int(part) for part in m.group(1).split(".")) if m else None


def _line(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def admits(spec: str | None, target: tuple[int, int, int]) -> bool:
    """Whether a ``Requires-Python`` specifier admits ``target``; True when it cannot be read."""
    if not spec:
        return True
    for clause in spec.split(","):
        m = re.fullmatch(r"\s*(~=|===|==|!=|<=|>=|<|>)\s*v?([0-9][0-9.]*)(\.\*)?\s*", clause)
        if not m:
            continue
        op, raw, star = m.group(1), m.group(2).rstrip("."), m.group(3)
        want = tuple(int(x) for x in raw.split(".") if x)
        have = target[: len(want)] if star or op in ("==", "!=", "===") else target
        pad = want + (0,) * (len(have) - len(want))
        ok = {
            "==": have == pad, "===": have == pad, "!=": have != pad,
            ">=": have >= pad, "<=": have <= pad, ">": have > pad, "<": have < pad,
            "~=": have >= pad and target[: max(len(want) - 1, 1)] == want[: max(len(want) - 1, 1)],
        }[op]
        if not ok:
            return False
    return True


def _file_fits(item: dict, target: tuple[int, int, int]) -> bool:
    if not admits(item.get("requires_python"), target):
        return False
    if item.get("packagetype") != "bdist_wheel":
        return True  # an sdist builds wherever its Requires-Python allows
    tags = str(item.get("python_version") or "")
    minor = f"cp{target[0]}{target[1]}"
    return any(tag in ("py3", f"py{target[0]}{target[1]}", minor) or tag.startswith("py3")
               for tag in re.split(r"[.]", tags)) or "abi3" in str(item.get("filename") or "") \
        or minor in str(item.get("filename") or "")


def first_django(line: tuple[int, int]) -> tuple[int, ...] | None:
    """The first Django release that supports Python ``line``, from ``DJANGO``; None if none does."""
    for (a, b), (low, high, added) in sorted(DJANGO.items()):
        if low <= line <= high:
            return tuple(int(x) for x in added.split(".")) if line == high and added else (a, b, 0)
    return None


def django(version: str, target: tuple[int, int, int]) -> str | None:
    """Why a pinned Django cannot run on ``target``, and the first release that can; None if it can."""
    key = _release_key(version)
    if key is None or len(key) < 2 or (key[0], key[1]) not in DJANGO:
        return None
    low, high, added = DJANGO[(key[0], key[1])]
    line = target[:2]
    if low <= line <= high and not (line == high and added and key < _release_key(added)):
        return None
    first = next((add if line == hi and add else f"{a}.{b}" for (a, b), (lo, hi, add) in sorted(DJANGO.items())
                  if (a, b) > (key[0], key[1]) and lo <= line <= hi), None)
    supports = f"Python {_line(low)}-{_line(high)}"
    if line == high and added:
        return f"Django {_line(key[:2])} supports Python {_line(high)} from {added} on: pin Django>={added}"
    if first:
        return (f"Django {_line(key[:2])} supports {supports} only; the first Django for Python {_line(line)}"
                f" is {first}: pin Django>={first} (and port the app to it)")
    return f"Django {_line(key[:2])} supports {supports} only; no Django release known here supports {_line(line)}"


def enabled(env: dict[str, str]) -> bool:
    """PyPI is asked only when the packages come from it and the lookup is not turned off."""
    index = env.get("PIP_INDEX_URL", "").strip()
    return env.get("DC_PYPI_LOOKUP", "1").strip() != "0" and (not index or "pypi.org" in index)


def fetch(names: list[str], timeout: float = TIMEOUT) -> dict[str, dict]:
    """PyPI's JSON for each name, asked in parallel, ``timeout`` seconds in all (a name lookup
    that hangs included: the threads are left behind, as daemons); names it could not get are
    left out."""
    import urllib.request  # here: ~40 ms to import, and only a report made anew asks PyPI

    found: dict[str, dict] = {}

    def one(name: str) -> None:
        try:
            with urllib.request.urlopen(PYPI.format(name), timeout=timeout) as res:
                found[name] = json.load(res)
        except (OSError, ValueError):
            pass

    threads = [threading.Thread(target=one, args=(name,), daemon=True) for name in dict.fromkeys(names)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return {name: data for name, data in list(found.items()) if isinstance(data, dict)}


def from_pypi(data: dict, version: str, target: tuple[int, int, int]) -> str | None:
    """Why release ``version`` has nothing for ``target`` (and the nearest release that has)."""
    releases = data.get("releases") or {}
    files = releases.get(version)
    if not files or any(_file_fits(item, target) for item in files):
        return None
    specs = sorted({str(item.get("requires_python")) for item in files if item.get("requires_python")})
    why = f"requires Python {', '.join(specs)}" if specs else "has only wheels for other Pythons"
    pinned = _release_key(version) or ()
    later = sorted((k, v) for v, k in ((v, _release_key(v)) for v in releases) if k and k > pinned)
    nearest = next((v for _k, v in later if any(_file_fits(item, target) for item in releases[v])), None)
    line = _line(target[:2])
    return f"release {version} {why}: nothing for Python {line}" + (
        f"; the nearest release for {line} is {nearest}" if nearest else f"; no later release has one for {line}")


def check(pins: list[tuple[str, str]], target: tuple[int, int, int], env: dict[str, str]) -> dict[str, str]:
    """name -> why ``name==version`` will not run on ``target`` (and what to pin instead)."""
    out: dict[str, str] = {}
    ask = []
    for name, version in pins:
        key = normal(name)
        if key == "django":
            why = django(version, target)
            if why:
                out[name] = why
        elif key in PY2_ONLY:
            out[name] = f"Python 2 only: {replacement(name)}"
        else:
            ask.append((name, version))
    if ask and enabled(env):
        found = fetch([name for name, _ in ask])
        for name, version in ask:
            why = from_pypi(found[name], version, target) if name in found else None
            if why:
                out[name] = why
    return out


def env_for_lookup(config: dict[str, str]) -> dict[str, str]:
    """The settings that decide the lookup: config vars (ENV_DIR) over the environment."""
    return {k: config.get(k, os.environ.get(k, "")) for k in ("PIP_INDEX_URL", "DC_PYPI_LOOKUP")}
