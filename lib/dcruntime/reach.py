"""Who nginx's workers run as, and that they can reach what they serve: never a web process that only answers 502.

Unprivileged (the platform case) every program runs as one user, who made every directory
involved: nothing to decide. As root (a container's default, ``sudo make serve``), nginx's
workers, which parse untrusted HTTP, must not run as root: they run as ``nobody``. They need
to enter the private run directory (the uWSGI socket; as root it is 0710 with the workers'
group, the socket 0660 ``root:<that group>``) and the app's directory (``root
$HOME/current/``: static files, the maintenance check). A directory above either that they
cannot enter (``/root``, a ``mktemp -d`` TMPDIR) gives 502 or 403 to every request while
every process keeps running, so at start:

- the workers' user is ``NGINX_USER`` if set (an explicit choice, ``root`` included), else
  ``nobody``, else, when nobody cannot enter the app's directory but the app's owner (not
  root) can, that owner: the workers then have the rights of the app's files, as on a platform;
- the app's directory must be reachable by that user, or the web process stops at once with
  one message naming the closed directory and both fixes (``chmod o+x`` it, ``NGINX_USER=root``);
- the run directory goes under ``TMPDIR`` if the workers can enter it, else under the first of
  ``FALLBACKS`` they can (with a line saying so).

Whether a user can enter a directory is asked of the kernel itself: a forked child takes the
workers' user and groups (as nginx does: ``initgroups``) and calls ``access(X_OK)`` on each
directory of the path, so ACLs, groups and mount options count as they will for nginx.
"""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

FALLBACKS = ("/tmp", "/var/tmp", "/dev/shm")


class ReachError(Exception):
    pass


class Workers:
    """nginx's workers' user: name, group name, ids; why it was chosen (a line for the log, or '').

    A plain class: ``dataclasses`` would cost the web process's start ~10 ms of imports.
    """

    __slots__ = ("gid", "group", "name", "uid", "why")

    def __init__(self, name: str, group: str, uid: int, gid: int, why: str = "") -> None:
        self.name, self.group, self.uid, self.gid, self.why = name, group, uid, gid, why

    def __repr__(self) -> str:
        return f"Workers({self.name!r}, {self.group!r}, {self.uid}, {self.gid}, {self.why!r})"

    @property
    def directive(self) -> str:
        """The value of nginx's ``user`` directive."""
        return f"{self.name} {self.group}"


def named(name: str, why: str = "") -> Workers:
    """The user of that name (KeyError if there is none)."""
    return _workers(pwd.getpwnam(name), why)


def _workers(entry: pwd.struct_passwd, why: str = "") -> Workers:
    try:
        group = grp.getgrgid(entry.pw_gid).gr_name
    except KeyError:
        group = str(entry.pw_gid)
    return Workers(entry.pw_name, group, entry.pw_uid, entry.pw_gid, why)


def prefixes(path: Path) -> list[Path]:
    """``/a/b/c`` -> ``[/, /a, /a/b, /a/b/c]``: the directories a lookup of path enters."""
    path = Path(os.path.abspath(path))
    return [*reversed(path.parents), path]


def searchable(paths: list[Path], workers: Workers) -> list[bool]:
    """For each directory, whether the workers' user may enter it (and every directory above it)."""
    if workers.uid == 0 or not paths:
        return [True] * len(paths)
    read, write = os.pipe()
    try:
        pid = os.fork()
    except OSError:  # no process to spare: nothing can be told, nothing is refused
        os.close(read)
        os.close(write)
        return [True] * len(paths)
    if pid == 0:  # the child: only system calls, then _exit
        try:
            os.close(read)
            try:
                os.initgroups(workers.name, workers.gid)
            except OSError:
                os.setgroups([])
            os.setgid(workers.gid)
            os.setuid(workers.uid)
            os.write(write, bytes(49 if os.access(p, os.X_OK) else 48 for p in paths))
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as answer:
        data = answer.read()
    os.waitpid(pid, 0)
    return [char == 49 for char in data] if len(data) == len(paths) else [False] * len(paths)


def first_closed(path: Path, workers: Workers) -> Path | None:
    """The first directory on the way to path (path included) the workers cannot enter, or None."""
    return first_closed_of([path], workers)


def first_closed_of(paths: list[Path], workers: Workers) -> Path | None:
    """The same for several paths, in order, asked in one go (one child process)."""
    chain = list(dict.fromkeys(d for path in paths for d in prefixes(path)))
    for directory, ok in zip(chain, searchable(chain, workers)):
        if not ok:
            return directory
    return None


def app_dirs(home: Path) -> list[Path]:
    """What nginx's workers open files under: ``$HOME/current`` as written, and where it leads."""
    current = home / "current"
    return [current, Path(os.path.realpath(current))]


def app_closed(home: Path, workers: Workers) -> Path | None:
    # A target that does not exist has nothing to serve: nginx answers 404.
    return first_closed_of([target for target in app_dirs(home) if target.exists()], workers)


def choose(home: Path, environ: dict[str, str]) -> Workers | None:
    """nginx's workers' user when running as root (None: not root, nothing to choose).

    ReachError when the app's directory is out of their reach, naming it and the fixes.
    """
    if os.geteuid() != 0:
        return None
    wanted = environ.get("NGINX_USER", "").strip()
    if wanted:
        try:
            chosen = named(wanted, f"nginx's workers run as {wanted} (NGINX_USER)")
        except KeyError:
            raise ReachError(f"NGINX_USER={wanted}: there is no such user") from None
    else:
        try:
            chosen = named("nobody")
        except KeyError:
            return Workers("root", "root", 0, 0, "warning: there is no user nobody: nginx's workers run as root")
    closed = app_closed(home, chosen)
    if closed is None:
        return chosen
    if not wanted:
        owner = _owner(home)
        if owner is not None and owner.pw_uid != 0:
            candidate = _workers(owner, f"nginx's workers run as {owner.pw_name}, the app's owner: {chosen.name}"
                                        f" cannot enter {closed}")
            if app_closed(home, candidate) is None:
                return candidate
    raise ReachError(
        f"nginx's workers run as {chosen.name} and cannot enter {closed}, on the way to the app ({home}/current):"
        f" every request would fail. Either let them through: chmod o+x {closed} (they can then enter it,"
        " not list it), or run them as root: set NGINX_USER=root"
    )


def _owner(home: Path) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwuid(home.stat().st_uid)
    except (OSError, KeyError):
        return None


def run_parent(tmpdir: str, workers: Workers | None) -> tuple[str, str]:
    """Where to make the run directory: TMPDIR, or the first fallback the workers can enter.

    Returns (directory, a line for the log or ''); ReachError when none of them will do.
    """
    if workers is None or workers.uid == 0:
        return tmpdir, ""
    closed = first_closed(Path(tmpdir), workers)
    if closed is None:
        return tmpdir, ""
    candidates = [d for d in FALLBACKS if Path(d).is_dir() and os.path.abspath(d) != os.path.abspath(tmpdir)]
    for directory, ok in zip(candidates, searchable([Path(d) for d in candidates], workers)):
        if ok:
            return directory, (
                f"TMPDIR={tmpdir}: nginx's workers ({workers.name}) cannot enter {closed};"
                f" the run directory is under {directory} instead"
            )
    raise ReachError(
        f"TMPDIR={tmpdir}: nginx's workers ({workers.name}) cannot enter {closed}, nor any of"
        f" {', '.join(FALLBACKS)}: set TMPDIR to a directory they can enter (chmod o+x {closed})"
    )
