"""relocate: binding a Python tree's build configuration to its path, and relocatable scripts.

The trees here are small fakes laid out like python-build-standalone's ``install_only``
archives; the scripts are run for real with this machine's Python as the interpreter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dcbuild import log, relocate

BP = Path(__file__).resolve().parents[1]
HOST_PYTHON = os.path.realpath(sys.executable)

SYSCONFIGDATA = """\
build_time_vars = {'BINDIR': '/install/bin',
 'BLDSHARED': 'gcc -shared -L/install/lib -Wl,-rpath,/install/lib',
 'CONFIG_ARGS': "'--prefix=/install' 'CPPFLAGS=-I/install/include'",
 'INSTALL': '/usr/bin/install -c',
 'INSTALL_SCRIPT': '$(LIBPL)/install-sh',
 'LIBDIR': '/install/lib',
 'OTHER': '/installation/x /opt/install /install',
 'WASM': './install',
 'prefix': '/install'}
"""
MAKEFILE = """\
prefix=\t\t/install
LIBDIR=\t\t/install/lib
INSTALL=\t/usr/bin/install -c
LDFLAGS=\t-L/install/lib
\t$(INSTALL_SCRIPT) $(srcdir)/install-sh $(DESTDIR)$(LIBPL)/install-sh
"""
CONFIG_SH = """\
#!/bin/sh
# Keep this script in sync with python-config.in
prefix_build="/install"
prefix_real=$(installed_prefix "$0")
"""
PKGCONFIG = """\
prefix=/install
libdir=/install/lib
Libs.private: -ldl -L/install/lib -Wl,-rpath,/install/lib
Cflags: -I${includedir}/python3.12
"""


def make_root(base: Path) -> Path:
    root = base / "python"
    std = root / "lib" / "python3.12"
    (std / "config-3.12-x86_64-linux-gnu").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "lib" / "pkgconfig").mkdir()
    (std / "os.py").write_text("")
    (std / "_sysconfigdata__linux_x86_64-linux-gnu.py").write_text(SYSCONFIGDATA)
    (std / "config-3.12-x86_64-linux-gnu" / "Makefile").write_text(MAKEFILE)
    config = root / "bin" / "python3.12-config"
    config.write_text(CONFIG_SH)
    config.chmod(0o755)
    (root / "bin" / "python3-config").symlink_to("python3.12-config")
    (root / "lib" / "pkgconfig" / "python-3.12.pc").write_text(PKGCONFIG)
    (root / "lib" / "pkgconfig" / "python3.pc").symlink_to("python-3.12.pc")
    (root / "bin" / "python3.12").symlink_to(HOST_PYTHON)
    (root / "bin" / "python3").symlink_to("python3.12")
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()
    }


def test_bind_rewrites_only_the_placeholder_prefix(tmp_path):
    root = make_root(tmp_path)
    relocate.bind(root)
    real = str(root.resolve())
    data = (root / "lib" / "python3.12" / "_sysconfigdata__linux_x86_64-linux-gnu.py").read_text()
    assert f"'BINDIR': '{real}/bin'" in data
    assert f"'BLDSHARED': 'gcc -shared -L{real}/lib -Wl,-rpath,{real}/lib'" in data
    assert f"'--prefix={real}' 'CPPFLAGS=-I{real}/include'" in data
    assert f"'prefix': '{real}'" in data
    # Not a prefix: other paths that merely contain "/install".
    assert "'INSTALL': '/usr/bin/install -c'" in data
    assert "'$(LIBPL)/install-sh'" in data
    assert f"'/installation/x /opt/install {real}'" in data
    assert f"'.{real}'" in data  # WASM_ASSETS_DIR: the prefix, relative
    makefile = (root / "lib" / "python3.12" / "config-3.12-x86_64-linux-gnu" / "Makefile").read_text()
    assert f"prefix=\t\t{real}\n" in makefile
    assert f"LDFLAGS=\t-L{real}/lib\n" in makefile
    assert "INSTALL=\t/usr/bin/install -c\n" in makefile
    assert "$(srcdir)/install-sh $(DESTDIR)$(LIBPL)/install-sh" in makefile
    assert f'prefix_build="{real}"' in (root / "bin" / "python3.12-config").read_text()
    pc = (root / "lib" / "pkgconfig" / "python-3.12.pc").read_text()
    assert f"-L{real}/lib -Wl,-rpath,{real}/lib" in pc and "/install" not in pc
    assert (root / relocate.MARKER).read_text() == real + "\n"
    assert os.access(root / "bin" / "python3.12-config", os.X_OK)


def test_bind_is_idempotent_and_unbind_restores_bytes(tmp_path):
    root = make_root(tmp_path)
    before = snapshot(root)
    relocate.bind(root)
    bound = snapshot(root)
    inodes = {p: p.stat().st_ino for p in root.rglob("*") if p.is_file()}
    relocate.bind(root)
    assert snapshot(root) == bound
    assert {p: p.stat().st_ino for p in root.rglob("*") if p.is_file()} == inodes  # nothing rewritten
    relocate.unbind(root)
    assert snapshot(root) == before
    assert not (root / relocate.MARKER).exists()
    relocate.unbind(root)
    assert snapshot(root) == before


def test_moved_tree_rebinds_from_its_old_path(tmp_path):
    root = make_root(tmp_path / "a")
    before = snapshot(root)
    relocate.bind(root)
    moved = tmp_path / "b" / "somewhere-else"
    moved.parent.mkdir()
    os.rename(root.parent, moved)
    root = moved / "python"
    relocate.bind(root)
    real = str(root.resolve())
    data = (root / "lib" / "python3.12" / "_sysconfigdata__linux_x86_64-linux-gnu.py").read_text()
    assert f"'LIBDIR': '{real}/lib'" in data
    assert str(tmp_path / "a") not in "".join(v.decode() for v in snapshot(root).values())
    relocate.unbind(root)
    assert snapshot(root) == before


def test_bind_through_a_symlink_uses_the_given_path_when_it_is_safe(tmp_path):
    """bin/compile reaches a directory with spaces through a link with a plain name."""
    root = make_root(tmp_path / "real dir é")
    (tmp_path / "link").symlink_to(tmp_path / "real dir é")
    relocate.bind(tmp_path / "link" / "python")
    assert (root / relocate.MARKER).read_text().strip() == str(tmp_path / "link" / "python")
    relocate.unbind(tmp_path / "link" / "python")
    safe = make_root(tmp_path / "real")
    (tmp_path / "link with space").symlink_to(tmp_path / "real")
    relocate.bind(tmp_path / "link with space" / "python")
    assert (safe / relocate.MARKER).read_text().strip() == str(safe.resolve())


def test_bind_never_writes_in_place(tmp_path):
    """A hard-linked copy of the tree (another build's cache) keeps its bytes."""
    root = make_root(tmp_path / "a")
    before = snapshot(root)
    twin = tmp_path / "twin"
    shutil.copytree(root, twin, symlinks=True, copy_function=os.link)
    relocate.bind(root)
    assert snapshot(twin) == before
    assert snapshot(root) != before
    relocate.unbind(root)
    assert snapshot(twin) == before


def test_bind_refuses_a_path_the_config_files_cannot_hold(tmp_path):
    root = make_root(tmp_path / "with space")
    with pytest.raises(log.BuildError, match="Cannot use a Python installed at"):
        relocate.bind(root)
    assert not (root / relocate.MARKER).exists()


def test_bind_refuses_what_is_not_a_python_tree(tmp_path):
    with pytest.raises(log.BuildError, match="is not a Python installation"):
        relocate.bind(tmp_path)


# --- scripts -------------------------------------------------------------------------------

PIP_BODY = """\
# -*- coding: utf-8 -*-
import re
import sys
print("ran", sys.argv[1:], sys.executable.endswith("python3.12") or sys.executable)
"""


def polyglot(name: str) -> str:
    return relocate.POLYGLOT.format(name=name)


def write_script(path: Path, text: str | bytes, mode: int = 0o755) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    "head",
    [
        "#!/tmp/x/python/bin/python3.12\n",
        "#!/bin/sh\n'''exec' '/a/very/long/path/python/bin/python3.12' \"$0\" \"$@\"\n' '''\n",
        "#!/bin/sh\n'''exec' \"/a path/with spaces/bin/python3.12\" \"$0\" \"$@\"\n' '''\n",
        "#!/bin/sh\n'''exec' /unquoted/bin/python3.12 \"$0\" \"$@\"\n' '''\n",
    ],
    ids=["shebang", "pip-long-single-quoted", "pip-long-double-quoted", "pip-long-unquoted"],
)
def test_scripts_get_the_polyglot_and_run_from_anywhere(tmp_path, head):
    root = make_root(tmp_path)
    script = write_script(root / "bin" / "tool", head + PIP_BODY)
    assert relocate.make_scripts_relocatable(root) == 1
    assert script.read_text() == polyglot("python3.12") + PIP_BODY
    assert script.stat().st_mode & 0o777 == 0o755
    # It runs, finds the interpreter beside itself, and keeps its arguments.
    res = subprocess.run([str(script), "a b", "c"], capture_output=True, text=True, cwd="/")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "ran ['a b', 'c'] True\n"
    # Also through a symlink from elsewhere (as a PATH entry would be), and once moved.
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "tool").symlink_to(script)
    moved = tmp_path / "moved"
    os.rename(root.parent / "python", moved)
    (tmp_path / "elsewhere" / "tool").unlink()
    (tmp_path / "elsewhere" / "tool").symlink_to(moved / "bin" / "tool")
    res = subprocess.run([str(tmp_path / "elsewhere" / "tool"), "x"], capture_output=True, text=True, cwd="/")
    assert res.stdout == "ran ['x'] True\n", res.stderr
    # Idempotent.
    assert relocate.make_scripts_relocatable(moved) == 0


def test_script_interpreter_falls_back_to_python3(tmp_path):
    root = make_root(tmp_path)
    script = write_script(root / "bin" / "tool", "#!/somewhere/bin/python3.99\n" + PIP_BODY)
    plain = write_script(root / "bin" / "plain", "#!/somewhere/bin/python\nprint('plain')\n")
    assert relocate.make_scripts_relocatable(root) == 2
    assert script.read_text() == polyglot("python3") + PIP_BODY
    assert plain.read_text() == polyglot("python3") + "print('plain')\n"
    assert subprocess.run([str(plain)], capture_output=True, text=True).stdout == "plain\n"
    (root / "bin" / "python").symlink_to("python3.12")
    write_script(plain, "#!/somewhere/bin/python\nprint('plain')\n")
    relocate.make_scripts_relocatable(root)
    assert plain.read_text().startswith(polyglot("python"))


def test_other_files_are_left_alone(tmp_path):
    root = make_root(tmp_path)
    bindir = root / "bin"
    keep = {
        "env": "#!/usr/bin/env python3\nprint(1)\n",
        "args": "#!/x/bin/python3.12 -E\nprint(1)\n",
        "shell": "#!/bin/sh\necho hi\n",
        "bash": "#!/bin/bash\n'''exec' is not pip's form\n",
        "perl": "#!/usr/bin/perl\nprint 1;\n",
        "notscript": "python3.12 text\n",
        "empty": "",
        "relocatable": polyglot("python3.12") + "print(1)\n",
    }
    for name, text in keep.items():
        write_script(bindir / name, text)
    elf = bindir / "binary"
    shutil.copy2("/bin/true", elf)
    elf_bytes = elf.read_bytes()
    before = snapshot(root)
    assert relocate.make_scripts_relocatable(root) == 0
    assert snapshot(root) == before
    assert elf.read_bytes() == elf_bytes
    assert (bindir / "python3.12").is_symlink()


def test_script_rewrite_never_writes_in_place(tmp_path):
    root = make_root(tmp_path)
    original = "#!/tmp/x/python/bin/python3.12\n" + PIP_BODY
    outside = write_script(tmp_path / "cache-copy", original, mode=0o750)
    os.link(outside, root / "bin" / "tool")
    assert relocate.make_scripts_relocatable(root) == 1
    assert outside.read_text() == original
    assert (root / "bin" / "tool").read_text() == polyglot("python3.12") + PIP_BODY
    assert (root / "bin" / "tool").stat().st_ino != outside.stat().st_ino
    assert (root / "bin" / "tool").stat().st_mode & 0o777 == 0o750
    assert not [p for p in (root / "bin").iterdir() if "dcbuild-tmp" in p.name]


def test_script_through_symlink_in_bin_is_not_followed(tmp_path):
    root = make_root(tmp_path)
    target = write_script(tmp_path / "outside-tool", "#!/x/bin/python3.12\nprint(1)\n")
    (root / "bin" / "linked").symlink_to(target)
    assert relocate.make_scripts_relocatable(root) == 0
    assert target.read_text() == "#!/x/bin/python3.12\nprint(1)\n"


# --- CLI -------------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(BP / "lib"))
    return subprocess.run([sys.executable, "-m", "dcbuild.relocate", *args], capture_output=True, text=True, env=env)


def test_cli_round_trip(tmp_path):
    root = make_root(tmp_path)
    write_script(root / "bin" / "tool", "#!/x/bin/python3.12\nprint(1)\n")
    before = snapshot(root)
    assert run_cli("bind", str(root)).returncode == 0
    assert (root / relocate.MARKER).exists()
    assert run_cli("unbind", str(root)).returncode == 0
    assert snapshot(root) == before
    res = run_cli("scripts", str(root))
    assert res.returncode == 0 and "1 scripts made relocatable" in res.stderr
    res = run_cli("bind", str(tmp_path / "nope"))
    assert res.returncode == 1
    assert res.stderr.startswith(" !     Error:") and "Traceback" not in res.stderr
