"""Which exact Python runtime the build uses, and getting its archive into the cache.

Sources, in order: the cache (verified by sha256), a mirror (``PYTHON_MIRROR``: a directory,
``file://`` or ``http(s)://`` URL holding the manifest's file names), upstream (the manifest's
URL), and last a local CPython of the same version packaged into the same kind of archive.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import log, manifest, versions
from .versions import Request, Version

PROBE_TIMEOUT = float(os.environ.get("DC_PROBE_TIMEOUT", "5"))
DOWNLOAD_TIMEOUT = 60


def archive_name(version: Version, platform: str) -> str:
    return f"cpython-{version}-{platform}.tar.gz"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Store:
    """The runtime archives in ``CACHE/runtimes``, each with a ``.sha256`` sidecar."""

    root: Path

    def path(self, version: Version, platform: str) -> Path:
        return self.root / archive_name(version, platform)

    def expected_sha(self, version: Version, platform: str, rows: dict[Version, manifest.Row]) -> str | None:
        """The sidecar written when the archive was verified (or packaged here), else the manifest's."""
        side = self.path(version, platform).with_name(archive_name(version, platform) + ".sha256")
        try:
            return side.read_text().split()[0]
        except (OSError, IndexError):
            return rows[version].sha256 if version in rows else None

    def valid(self, version: Version, platform: str, rows: dict[Version, manifest.Row]) -> bool:
        path = self.path(version, platform)
        want = self.expected_sha(version, platform, rows)
        return path.is_file() and want is not None and sha256_file(path) == want

    def cached_versions(self, platform: str) -> list[Version]:
        out = []
        suffix = f"-{platform}.tar.gz"
        if self.root.is_dir():
            for p in self.root.iterdir():
                if p.name.startswith("cpython-") and p.name.endswith(suffix):
                    with contextlib.suppress(ValueError):
                        out.append(Version.parse(p.name[len("cpython-") : -len(suffix)]))
        return sorted(out, reverse=True)


def mirror_url(mirror: str, filename: str) -> str:
    if "://" not in mirror:
        return Path(mirror).resolve().as_uri() + "/" + filename
    return mirror.rstrip("/") + "/" + filename


def reachable(url: str) -> bool:
    """Whether upstream answers at all (any HTTP status counts); DNS failure returns at once."""
    if os.environ.get("PYTHON_OFFLINE"):
        return False
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, method="HEAD")
    try:
        urllib.request.urlopen(req, timeout=PROBE_TIMEOUT).close()
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return True


_MEMO: list[Path] = []


def _local_pythons():
    from . import localpython

    return localpython.find_local(_MEMO[0] if _MEMO else None)


def resolve(app: Path, store: Store, platform: str, fallback: Request | None = None) -> tuple[Version, str]:
    """The exact version to use and a note on how it was chosen (for the log)."""
    req = versions.requested(app, fallback)
    rows = manifest.rows_for(platform)
    known = sorted((v for v in rows if req.matches(v)), reverse=True)
    if req.micro is not None:
        exact = Version(req.line[0], req.line[1], req.micro)
        if exact in rows or exact in store.cached_versions(platform):
            return exact, req.origin
        if any(lp.version == exact for lp in _local_pythons()):
            return exact, req.origin
        newest = max((v for v in rows if v.line == req.line), default=None)
        prefix = "python-" if req.origin.startswith("runtime.txt") else ""
        raise log.BuildError(
            f"{req.origin}: Python {exact} is not a known release",
            f"No runtime archive for {exact} on {platform} is listed in {manifest.manifest_path()},"
            " and no local interpreter has that version.",
            f"Use '{prefix}{newest}' (the newest {req.line[0]}.{req.line[1]} release), or just"
            f" '{prefix}{req.line[0]}.{req.line[1]}'." if newest else f"Supported lines: {versions.supported_text()}.",
        )
    if known:
        target = known[0]
        # An archive in the cache is enough to choose it: fetch() verifies its sha256 before use
        # (hashing ~30 MB here would cost every warm build).
        if store.path(target, platform).is_file() or os.environ.get("PYTHON_MIRROR") or reachable(rows[target].url):
            return target, req.origin
    upstream = rows[known[0]].url.split("/")[2] if known else "upstream"
    return _offline_choice(req, store, platform, known[0] if known else None, upstream)


def _offline_choice(req: Request, store: Store, platform: str, wanted: Version | None,
                    upstream: str) -> tuple[Version, str]:
    """No route to upstream and no mirror: the newest cached or local interpreter that fits."""
    pool = {v: "cache" for v in store.cached_versions(platform)}
    for lp in _local_pythons():
        pool.setdefault(lp.version, f"local {lp.prefix}")
    if req.origin == "default":
        fits = [v for v in pool if v.line in versions.SUPPORTED_LINES]
    else:
        fits = [v for v in pool if v.line == req.line]
    if not fits:
        raise log.BuildError(
            f"No Python {req} runtime is available",
            f"Upstream ({upstream}) is unreachable,"
            " PYTHON_MIRROR is not set, and no cached or local interpreter fits.",
            "Set PYTHON_MIRROR to a directory or URL holding the manifest's archives, or install a"
            f" CPython {req} locally (pyenv, or name it in DC_LOCAL_PYTHONS).",
        )
    choice = max(fits)
    what = "the default line" if req.origin == "default" else f"{req} ({req.origin})"
    log.warn(
        f"Upstream is unreachable and PYTHON_MIRROR is not set: using Python {choice} ({pool[choice]})"
        f" for {what}" + (f"; the newest release is {wanted}." if wanted and wanted != choice else "."),
    )
    return choice, req.origin


def _download(url: str, dest: Path) -> None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as resp, dest.open("wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        dest.unlink(missing_ok=True)
        raise log.BuildError(f"Could not download {url}", str(getattr(exc, "reason", exc))) from None


def fetch(version: Version, platform: str, store: Store) -> Path:
    """Make sure a verified archive of ``version`` is in the store; return its path."""
    rows = manifest.rows_for(platform)
    out = store.path(version, platform)
    if store.valid(version, platform, rows):
        log.detail(f"Using cached {out.name}")
        return out
    if out.exists():
        log.detail(f"Discarding cached {out.name}: its sha256 does not match")
        out.unlink()
    store.root.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp.{os.getpid()}")
    sidecar = out.with_name(out.name + ".sha256")
    try:
        row = rows.get(version)
        mirror = os.environ.get("PYTHON_MIRROR")
        if row and (mirror or reachable(row.url)):
            url = mirror_url(mirror, row.filename) if mirror else row.url
            log.detail(f"Downloading {url}")
            _download(url, tmp)
            got = sha256_file(tmp)
            if got != row.sha256:
                raise log.BuildError(
                    f"Checksum mismatch for {row.filename}",
                    f"Downloaded from {url}",
                    f"expected sha256 {row.sha256}",
                    f"     got sha256 {got}",
                    "The archive is corrupt or not the one the manifest names; nothing was cached."
                    " Check the mirror's copy.",
                )
            sha = got
        else:
            local = next((lp for lp in _local_pythons() if lp.version == version), None)
            if local is None:
                raise log.BuildError(
                    f"Python {version} is not available",
                    "Upstream is unreachable, PYTHON_MIRROR is not set and no local interpreter has"
                    " this version.",
                )
            from . import localpython

            log.detail(f"Packaging local CPython {version} from {local.prefix}")
            sha = localpython.package(local, tmp, store.root.parent)
        tmp_side = sidecar.with_name(sidecar.name + f".tmp.{os.getpid()}")
        tmp_side.write_text(f"{sha}  {out.name}\n")
        os.replace(tmp, out)
        os.replace(tmp_side, sidecar)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def extract(archive: Path, dest: Path) -> None:
    """Unpack the archive's ``python/`` tree into ``dest`` (a new directory), atomically."""
    tmp = dest.with_name(f"{dest.name}.tmp.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        # GNU tar: several times faster than tarfile here, and it refuses absolute and ".." names.
        subprocess.run(["tar", "-xzf", str(archive), "-C", str(tmp)], check=True, capture_output=True, text=True)
        if not (tmp / "python" / "bin" / "python3").exists():
            raise log.BuildError(f"{archive.name} is not a Python runtime archive", "It has no python/bin/python3.")
        os.replace(tmp, dest)
    except subprocess.CalledProcessError as exc:
        raise log.BuildError(f"Cannot unpack {archive.name}", exc.stderr.strip()) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dcbuild.runtime")
    parser.add_argument("--cache", type=Path, required=True, help="the buildpack's cache directory")
    parser.add_argument("--platform", default=manifest.current_platform())
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("resolve", help="print the exact version for an app, and where it was asked for")
    r.add_argument("app", type=Path)
    f = sub.add_parser("fetch", help="get a verified archive into the cache")
    f.add_argument("version")
    x = sub.add_parser("install", help="fetch, then unpack into DEST (a new directory)")
    x.add_argument("version")
    x.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    store = Store(args.cache / "runtimes")
    if args.cache.is_dir():
        _MEMO.append(args.cache / "local-pythons.json")
    if args.cmd == "resolve":
        version, origin = resolve(args.app, store, args.platform)
        print(version, origin)
        return 0
    try:
        version = Version.parse(args.version)
    except ValueError:
        raise log.BuildError(f"{args.version!r} is not a full Python version", "Use X.Y.Z, e.g. 3.14.1.") from None
    archive = fetch(version, args.platform, store)
    if args.cmd == "install":
        extract(archive, args.dest)
    return 0


if __name__ == "__main__":
    log.main(_main)
