"""Libraries the buildpack's own Python needs beyond the standard library (only PyYAML).

The build image's ``python3`` may have ``yaml`` already (Debian's python3-yaml). If not, a
pinned wheel from ``vendor/tools/manifest.tsv`` is fetched into the cache, checked by sha256
and imported from the zip: PyYAML's pure-Python part runs on any Python 3, so one wheel serves
every build image (its C accelerator, which would need a matching interpreter, is not used).
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
    lines = [line.split("\t") for line in MANIFEST.read_text().splitlines() if line.strip()]
    header, rows = lines[0], lines[1:]
    for row in rows:
        entry = dict(zip(header, row))
        if entry["name"] == name:
            return entry
    raise log.BuildError(f"{MANIFEST}: no row for {name}")


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
             "--python-version", "3.12", "--platform", "manylinux_2_17_x86_64", "-d", str(tmp_dir),
             f"{entry['name']}=={entry['version']}"],
            capture_output=True, text=True, env=env,
        )
        if res.returncode != 0 or not got.exists():
            import urllib.request

            name = entry["name"].lower()
            url = f"https://files.pythonhosted.org/packages/cp312/{name[0]}/{name}/{entry['filename']}"
            try:
                with urllib.request.urlopen(url, timeout=60) as resp:
                    got.write_bytes(resp.read())
            except OSError as exc:
                raise log.BuildError(
                    f"dotcloud.yml needs a YAML parser, and {entry['name']} {entry['version']} could not be fetched",
                    f"pip said: {(res.stderr or res.stdout).strip().splitlines()[-1:] or ['nothing']};"
                    f" {url}: {exc}",
                    "Install python3-yaml in the build image, or let the build reach PyPI.",
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


def yaml(cache: Path | None):
    """The ``yaml`` module: the build image's own, else the pinned wheel from the cache."""
    try:
        import yaml as found

        return found
    except ImportError:
        pass
    entry = _row("PyYAML")
    tools = (cache / "tools") if cache else Path(os.environ.get("TMPDIR", "/tmp"))
    tools.mkdir(parents=True, exist_ok=True)
    wheel = tools / entry["filename"]
    if not wheel.exists() or _sha256(wheel) != entry["sha256"]:
        wheel.unlink(missing_ok=True)
        _fetch(entry, wheel)
    sys.path.insert(0, str(wheel))
    import yaml as fetched

    return fetched
