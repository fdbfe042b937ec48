"""The env files that ``up`` writes (``env`` and ``secure.env``) and the parsing that reads them back."""

from __future__ import annotations

import os
from pathlib import Path

from teststack.accounts import SCRAM_MECHANISM, SECURE_USER
from teststack.layout import HOST, Paths


def render_env(kafka_port: int, redis_port: int, cluster_port: int | None = None) -> str:
    """The shell-sourceable env file naming both services (and a seed node of the Redis Cluster when it runs)."""
    text = (
        "# Written by dev/stack up; source it: set -a; . .stack/env; set +a\n"
        f"KAFKA_BOOTSTRAP_SERVERS={HOST}:{kafka_port}\n"
        f"REDIS_URL=redis://{HOST}:{redis_port}/0\n"
    )
    if cluster_port is not None:
        text += f"REDIS_CLUSTER_URL=redis://{HOST}:{cluster_port}/0\n"
    return text


def parse_env(text: str) -> dict[str, str]:
    """Parse ``KEY=value`` lines (comments and blank lines ignored), the inverse of :func:`render_env`."""
    result: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        result[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return result


def render_secure_env(sasl_ssl_port: int, redis_tls_port: int, paths: Paths, cluster_port: int | None = None) -> str:
    """Settings of the service that reach the secured broker listener and the TLS Redis (passwords as files),
    and while the TLS cluster runs ``REDIS_CLUSTER_URL``, a seed node of it: the same user, password and
    certificates reach it with ``REDIS_URL=$REDIS_CLUSTER_URL REDIS_CLUSTER=true``."""
    tls, vault = paths.tls, paths.secrets
    values = {
        "KAFKA_BOOTSTRAP_SERVERS": f"{HOST}:{sasl_ssl_port}",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
        "KAFKA_SASL_USERNAME": SECURE_USER,
        "KAFKA_SASL_PASSWORD_FILE": str(vault / "kafka-password"),
        "KAFKA_SSL_CAFILE": str(tls / "ca.pem"),
        "KAFKA_SSL_CERTFILE": str(tls / "client.pem"),
        "KAFKA_SSL_KEYFILE": str(tls / "client-key.pem"),
        "REDIS_URL": f"rediss://{HOST}:{redis_tls_port}/0",
        "REDIS_USERNAME": SECURE_USER,
        "REDIS_PASSWORD_FILE": str(vault / "redis-password"),
        "REDIS_SSL_CA_FILE": str(tls / "ca.pem"),
        "REDIS_SSL_CERT_FILE": str(tls / "client.pem"),
        "REDIS_SSL_KEY_FILE": str(tls / "client-key.pem"),
    }
    if cluster_port is not None:
        values["REDIS_CLUSTER_URL"] = f"rediss://{HOST}:{cluster_port}/0"
    lines = ["# Written by dev/stack up --secure; source it: set -a; . .stack/secure.env; set +a"]
    lines += [f"{key}={value}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step: its readers never see a half-written file."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(text)
    partial.replace(path)
