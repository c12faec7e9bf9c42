"""A private package index over HTTPS, signed by a CA that only the system's certificate store
knows (a company CA, a TLS-intercepting proxy): both installers must trust it as pip does.

The CA is added to the system store in a private mount namespace (``unshare -m``: the bundle
with the CA is bind-mounted over /etc/ssl/certs/ca-certificates.crt for that build only), the
index is a real HTTPS server on 127.0.0.1, and no PIP_CERT / SSL_CERT_FILE names the CA. Without
the CA in the store the same build fails with the certificate error: the test can fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BP, Build, build_env, copy_fixture, local_index, local_line, make_wheel

pytestmark = pytest.mark.slow

SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
SERVER = """
import functools, http.server, ssl, sys
root, cert, key = sys.argv[1:4]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
handler.log_message = lambda *a: None
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"""


def _can_bind_mount() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not SYSTEM_BUNDLE.is_file():
        return False
    res = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {SYSTEM_BUNDLE} {SYSTEM_BUNDLE}"],
                         capture_output=True, timeout=30)
    return res.returncode == 0


def make_ca(work: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for localhost signed by it: (ca.crt, server.crt, server.key)."""
    def openssl(*args: str) -> None:
        res = subprocess.run(["openssl", *args], cwd=work, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=dcbp test company CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost")
    (work / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                                  "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf")
    return work / "ca.crt", work / "server.crt", work / "server.key"


@pytest.fixture(scope="module")
def https_index(tmp_path_factory):
    if not _can_bind_mount():
        pytest.skip("needs root, unshare and a system CA bundle (a private mount namespace)")
    work = tmp_path_factory.mktemp("private-ca")
    ca, cert, key = make_ca(work)
    index = work / "index"
    local_index(index, [make_wheel(work / "wheels", "dcbp-private", "1.0")])
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(index), str(cert), str(key)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    bundle = work / "system-plus-ca.crt"
    bundle.write_bytes(SYSTEM_BUNDLE.read_bytes() + b"\n" + ca.read_bytes())
    # By name: pip's truststore (24.2) sends no server name for an IP address, and fails.
    yield f"https://localhost:{port}/", bundle
    proc.kill()
    proc.wait(10)


def compile_with_store(app: Path, cache: Path, bundle: Path | None, **env: str) -> Build:
    """bin/compile in a mount namespace whose system store is ``bundle`` (None: the real one);
    no certificate setting of the machine's own passes."""
    cmd = [str(BP / "bin" / "compile"), str(app), str(cache)]
    if bundle is not None:
        cmd = ["unshare", "-m", "sh", "-c", f'mount --bind "$0" {SYSTEM_BUNDLE} && exec "$@"', str(bundle), *cmd]
    full = build_env(STACK="", **env)
    for name in ("PIP_CERT", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "UV_SYSTEM_CERTS"):
        full.pop(name, None)
    res = subprocess.run(cmd, cwd=app, env=full, capture_output=True, text=True, timeout=900)
    return Build(res.returncode, res.stdout, res.stderr)


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_an_index_signed_by_a_ca_in_the_system_store(tmp_path, runtimes, https_index, installer):
    url, bundle = https_index
    version = local_line((3, 13)) or local_line((3, 12))
    if version is None:
        pytest.skip("no local CPython 3.13 or 3.12 (pip >= 24.2 trusts the system store)")
    cache = runtimes.seed(tmp_path / "cache", version)
    app = copy_fixture("sample", tmp_path / "app")
    (app / "runtime.txt").write_text(f"python-{version}\n")
    (app / "requirements.txt").write_text("dcbp-private==1.0\n")

    unknown = compile_with_store(app, cache, None, PIP_EXTRA_INDEX_URL=url, DC_INSTALLER=installer)
    assert unknown.returncode != 0, unknown  # the CA is in no store: the index is refused
    assert f"Error: {installer} could not verify the TLS certificate of a package index." in unknown.stderr, unknown
    assert "is not at fault" in unknown.stderr, unknown

    shutil.rmtree(app / ".dotcloud", ignore_errors=True)
    known = compile_with_store(app, cache, bundle, PIP_EXTRA_INDEX_URL=url, DC_INSTALLER=installer)
    assert known.returncode == 0, known
    res = subprocess.run([str(app / ".dotcloud/python/bin/python3"), "-c", "import dcbp_private; print('ok')"],
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert res.stdout.strip() == "ok", res.stderr
