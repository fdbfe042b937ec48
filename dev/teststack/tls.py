"""The stack's certificates (a CA, a server and a client certificate, the broker's keystore) and its TLS
client."""

from __future__ import annotations

import shutil
import socket
import ssl
import time
from pathlib import Path

from teststack.accounts import SECURE_USER, secret
from teststack.layout import HOST, Paths
from teststack.output import StackError, progress
from teststack.processes import run_quiet

CERT_DAYS = 825


def _openssl(*args: str) -> None:
    result = run_quiet(["openssl", *args])
    if result.returncode != 0:
        raise StackError(f"openssl {args[0]} failed ({result.returncode}):\n{result.stdout}{result.stderr}")


def _signed_cert(tls: Path, name: str, subject: str, extensions: str) -> None:
    """``<name>.pem`` and ``<name>-key.pem``: a fresh RSA key and a certificate for it signed by the stack's CA."""
    (tls / f"{name}.ext").write_text(extensions)
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
        "-keyout", str(tls / f"{name}-key.pem"), "-out", str(tls / f"{name}.csr"),
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(tls / f"{name}.csr"), "-CA", str(tls / "ca.pem"), "-CAkey", str(tls / "ca-key.pem"),
        "-CAcreateserial", "-days", str(CERT_DAYS), "-sha256", "-extfile", str(tls / f"{name}.ext"),
        "-out", str(tls / f"{name}.pem"),
    )  # fmt: skip
    (tls / f"{name}.csr").unlink()
    (tls / f"{name}.ext").unlink()


def ensure_certificates(paths: Paths) -> None:
    """A CA, a server certificate (SAN IP:127.0.0.1 and DNS:localhost) in PEM and as the broker's PKCS12 keystore,
    and a client certificate, all under ``tls/``; generated with ``openssl`` once and reused afterwards."""
    tls = paths.tls
    wanted = ["ca.pem", "server.pem", "server-key.pem", "server.p12", "client.pem", "client-key.pem"]
    if all((tls / name).exists() for name in wanted):
        return
    if shutil.which("openssl") is None:
        raise StackError("openssl is needed for --secure (apt-get install openssl)")
    started = time.monotonic()
    secret(paths, "keystore-password")
    shutil.rmtree(tls, ignore_errors=True)
    tls.mkdir(mode=0o700, parents=True)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", str(CERT_DAYS), "-sha256",
        "-subj", "/CN=active-users dev-stack CA", "-keyout", str(tls / "ca-key.pem"), "-out", str(tls / "ca.pem"),
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    leaf = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
    _signed_cert(
        tls,
        "server",
        "/CN=localhost",
        leaf + "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    _signed_cert(tls, "client", f"/CN={SECURE_USER}", leaf + "extendedKeyUsage=clientAuth\n")
    _openssl(
        "pkcs12", "-export", "-name", "kafka", "-in", str(tls / "server.pem"), "-inkey", str(tls / "server-key.pem"),
        "-certfile", str(tls / "ca.pem"), "-out", str(tls / "server.p12"),
        "-passout", f"file:{paths.secrets / 'keystore-password'}",
    )  # fmt: skip
    progress(f"tls: generated a CA, server and client certificates in {tls} ({time.monotonic() - started:.1f}s)")


def tls_client_context(paths: Paths) -> ssl.SSLContext:
    """A client context trusting the stack's CA and presenting its client certificate."""
    context = ssl.create_default_context(cafile=str(paths.tls / "ca.pem"))
    context.load_cert_chain(str(paths.tls / "client.pem"), str(paths.tls / "client-key.pem"))
    return context


def tls_ready(port: int, paths: Paths, timeout: float = 3.0) -> str | None:
    """``None`` when a TLS handshake with ``127.0.0.1:port`` succeeds (the broker's SASL_SSL listener)."""
    try:
        with (
            socket.create_connection((HOST, port), timeout=timeout) as raw,
            tls_client_context(paths).wrap_socket(raw, server_hostname=HOST),
        ):
            return None
    except (OSError, ssl.SSLError) as exc:
        return f"{type(exc).__name__}: {exc}"
