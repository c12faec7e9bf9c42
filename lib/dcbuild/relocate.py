"""Make a Python install tree path-independent, and bind it to where it lies.

A *python root* is laid out like python-build-standalone's ``install_only`` archives:
``ROOT/bin/python3.X``, ``ROOT/lib/python3.X/``, maybe ``ROOT/lib/libpython3.X.so*``,
``ROOT/include/``. The interpreter finds its standard library from its own location, but the
build configuration it reports (``sysconfig``, ``python3.X-config``, pkg-config) names the
prefix it was built for. In our archives that prefix is the placeholder ``/install``.

``bind`` writes the tree's real path over the placeholder in those files, so that compiling a
C extension (the ``uwsgi`` sdist, say) finds ``include/`` and ``LIBDIR``; ``unbind`` undoes
it byte for byte. ``make_scripts_relocatable`` turns the console scripts that pip wrote with
an absolute ``#!`` into the sh/Python polyglot that finds the interpreter beside itself.

Every rewrite writes a new file and renames it over the old one: these trees may be
hard-linked into other directories, and writing in place would change every copy.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from . import log

PLACEHOLDER = "/install"
MARKER = ".dcbuild-prefix"

# A prefix occurrence starts a path: it is not preceded by a path character or the end of a
# make/shell expansion (so /usr/bin/install and $(LIBPL)/install-sh are left alone), except
# after a compiler flag (-L/install/lib) or as ./PREFIX (WASM_ASSETS_DIR); it ends where the
# path goes on or the token ends (so /installation is left alone).
_BEFORE = r"(?:(?<![\w.~/+\-)}$])|(?<=[\s'\"=,:]-[LIR])|(?<=^-[LIR])|(?<=[\s'\"=,:]\.)|(?<=^\.))"
_AFTER = r"(?=[/\s'\"\\:;,)}\]]|$)"
# Characters a bound path must not hold: they would break the quoting of the files we edit.
_UNSAFE = re.compile(r"[\s'\"\\$`]")

_PYTHON_NAME = re.compile(r"python(?:\d+(?:\.\d+)?)?")
_EXEC_LINE = re.compile(rb"^'''exec' (?P<exe>'[^']*'|\"[^\"]*\"|\S+) \"\$0\" \"\$@\"$")
POLYGLOT = """\
#!/bin/sh
'''exec' "$(dirname -- "$(realpath -- "$0")")/{name}" "$0" "$@"
' '''
"""


def _pattern(prefix: str) -> re.Pattern[bytes]:
    return re.compile((_BEFORE + re.escape(prefix.rstrip("/") or "/") + _AFTER).encode(), re.M)


def _stdlib_dirs(root: Path) -> list[Path]:
    lib = root / "lib"
    try:
        entries = sorted(lib.iterdir())
    except OSError:
        return []
    return [p for p in entries if re.fullmatch(r"python3\.\d+t?", p.name) and p.is_dir() and not p.is_symlink()]


def sysconfig_files(root: Path) -> list[Path]:
    """The files of ``root`` that record its build prefix (regular files, no symlinks)."""
    found: list[Path] = []
    for std in _stdlib_dirs(root):
        found += std.glob("_sysconfigdata*.py")
        found += std.glob("_sysconfig_vars*.json")
        found += std.glob("build-details.json")
        for config in std.glob("config-3.*"):
            found += [config / "Makefile", config / "python-config.py"]
    found += (root / "bin").glob("python3*-config")
    found += (root / "lib" / "pkgconfig").glob("*.pc")
    unique = {p: None for p in found if p.is_file() and not p.is_symlink()}
    return sorted(unique)


def write_replacing(path: Path, data: bytes) -> None:
    """Put ``data`` at ``path`` as a new file renamed over the old one, keeping its mode."""
    try:
        mode = path.lstat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    tmp = path.with_name(f".{path.name}.dcbuild-tmp.{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise log.BuildError(f"Cannot rewrite {path}", str(exc)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def rewrite_prefix(root: Path, old: str, new: str) -> list[Path]:
    """Replace the prefix ``old`` by ``new`` in ``root``'s sysconfig files; return those changed."""
    if old.rstrip("/") == new.rstrip("/"):
        return []
    pattern = _pattern(old)
    replacement = new.rstrip("/").encode()
    changed = []
    for path in sysconfig_files(root):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise log.BuildError(f"Cannot read {path}", str(exc)) from None
        new_data = pattern.sub(lambda _m: replacement, data)
        if new_data != data:
            write_replacing(path, new_data)
            changed.append(path)
    return changed


def _check_root(root: Path) -> Path:
    if not (root / "bin").is_dir() or not _stdlib_dirs(root):
        raise log.BuildError(
            f"{root} is not a Python installation",
            "Expected bin/ and lib/python3.X/ in it, as in a python-build-standalone archive.",
        )
    return root


def bound_prefix(root: Path) -> str:
    """The path the tree is bound to, or the placeholder if it is not bound."""
    try:
        text = (root / MARKER).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return PLACEHOLDER
    return text or PLACEHOLDER


def bind(root: Path) -> None:
    """Point the tree's build configuration at its location (idempotent).

    The path as given when it is safe to write there (bin/compile reaches a BUILD_DIR or
    CACHE_DIR with spaces through a directory of links), else its real path."""
    given = os.path.abspath(root)
    root = _check_root(Path(given if not _UNSAFE.search(given) else os.path.realpath(root)))
    target = str(root)
    if _UNSAFE.search(target):
        raise log.BuildError(
            f"Cannot use a Python installed at {target!r}",
            "Its path holds a space, quote, backslash, '$' or '`', which its build configuration cannot hold.",
            "Build the app in a directory whose path has none of them.",
        )
    current = bound_prefix(root)
    if current == target:
        return
    rewrite_prefix(root, current, target)
    write_replacing(root / MARKER, (target + "\n").encode())


def unbind(root: Path) -> None:
    """Put the placeholder prefix back and drop the marker (idempotent)."""
    root = _check_root(Path(os.path.realpath(root)))
    current = bound_prefix(root)
    if current != PLACEHOLDER:
        rewrite_prefix(root, current, PLACEHOLDER)
    (root / MARKER).unlink(missing_ok=True)


def _scripts(bindir: Path) -> Iterator[Path]:
    try:
        entries = sorted(bindir.iterdir())
    except OSError:
        return
    for path in entries:
        if path.is_file() and not path.is_symlink():
            yield path


def _interpreter_name(exe: bytes, bindir: Path) -> str | None:
    """The basename of a Python named by absolute path, or None if it names something else."""
    if not exe.startswith(b"/"):
        return None
    name = exe.rsplit(b"/", 1)[-1].decode("utf-8", "replace")
    if not _PYTHON_NAME.fullmatch(name):
        return None
    return name if (bindir / name).exists() else "python3"


def relocatable_script(data: bytes, bindir: Path) -> bytes | None:
    """``data`` with its absolute Python shebang made relative, or None to leave it alone."""
    if not data.startswith(b"#!"):
        return None
    lines = data.split(b"\n", 3)
    first = lines[0].rstrip(b"\r")
    body_from = 1
    shebang = first[2:].strip()
    if shebang == b"/bin/sh" and len(lines) >= 3:
        # pip's form for paths too long for #!: '''exec' /abs/python "$0" "$@" / ' '''
        m = _EXEC_LINE.match(lines[1].rstrip(b"\r"))
        if not m or lines[2].rstrip(b"\r") != b"' '''":
            return None
        exe = m.group("exe")
        if exe[:1] in (b"'", b'"'):
            exe = exe[1:-1]
        body_from = 3
    elif b" " in shebang or b"\t" in shebang:
        return None  # '#!/usr/bin/env python3', or an interpreter with arguments
    else:
        exe = shebang
    name = _interpreter_name(exe, bindir)
    if name is None:
        return None
    body = b"\n".join(lines[body_from:])
    return POLYGLOT.format(name=name).encode() + body


def make_scripts_relocatable(root: Path) -> int:
    """Rewrite ``root/bin`` scripts with an absolute Python shebang; return how many."""
    bindir = Path(root) / "bin"
    count = 0
    for path in _scripts(bindir):
        try:
            with path.open("rb") as fh:
                if fh.read(2) != b"#!":
                    continue
            data = path.read_bytes()
        except OSError as exc:
            raise log.BuildError(f"Cannot read {path}", str(exc)) from None
        new = relocatable_script(data, bindir)
        if new is not None and new != data:
            write_replacing(path, new)
            count += 1
    return count


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dcbuild.relocate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, text in (
        ("bind", "point the sysconfig files at ROOT's real path"),
        ("unbind", "put the /install placeholder back"),
        ("scripts", "make bin/ scripts find the interpreter beside them"),
    ):
        sub.add_parser(name, help=text).add_argument("root", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "bind":
        bind(args.root)
    elif args.cmd == "unbind":
        unbind(args.root)
    else:
        count = make_scripts_relocatable(_check_root(args.root))
        print(f"{count} scripts made relocatable", file=sys.stderr)
    return 0


if __name__ == "__main__":
    log.main(_main)
