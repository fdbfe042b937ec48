"""The command lines of the stack's Redis servers (plain, TLS-only, cluster nodes) and of ``redis-cli``."""

from __future__ import annotations

from pathlib import Path

from teststack.accounts import STACK_ADMIN
from teststack.layout import HOST, Paths, cluster_ports

CLUSTER_NODE_TIMEOUT_MS = 5000


def redis_command(redis_bin: str, port: int, paths: Paths, aof: bool) -> list[str]:
    """Command line of the private Redis server (foreground; ``dev/stack`` detaches it)."""
    cmd = [
        redis_bin,
        "--port", str(port),
        "--bind", HOST,
        "--save", "",
        "--daemonize", "no",
        "--logfile", str(paths.log_file("redis")),
        "--dir", str(paths.redis_data),
    ]  # fmt: skip
    if aof:
        cmd += ["--appendonly", "yes", "--appendfsync", "everysec"]
    else:
        cmd += ["--appendonly", "no"]
    return cmd


def redis_tls_options(port: int, paths: Paths) -> list[str]:
    """What makes a Redis server TLS-only: no plaintext port, the stack's server certificate (and its client
    certificate for the connections the server opens itself: the cluster bus, replication), client
    certificates required, the users of the ACL file (``default`` off)."""
    tls = paths.tls
    return [
        "--port", "0",
        "--tls-port", str(port),
        "--tls-cert-file", str(tls / "server.pem"),
        "--tls-key-file", str(tls / "server-key.pem"),
        "--tls-client-cert-file", str(tls / "client.pem"),
        "--tls-client-key-file", str(tls / "client-key.pem"),
        "--tls-ca-cert-file", str(tls / "ca.pem"),
        "--tls-auth-clients", "yes",
        "--aclfile", str(paths.acl_file),
    ]  # fmt: skip


def redis_cli_tls_options(paths: Paths) -> list[str]:
    """``redis-cli``'s options to reach a TLS server of the stack (its password goes in ``REDISCLI_AUTH``)."""
    tls = paths.tls
    return [
        "--tls", "--cacert", str(tls / "ca.pem"), "--cert", str(tls / "client.pem"),
        "--key", str(tls / "client-key.pem"), "--user", STACK_ADMIN,
    ]  # fmt: skip


def redis_tls_command(redis_bin: str, port: int, paths: Paths) -> list[str]:
    """Command line of the TLS-only Redis (:func:`redis_tls_options`), without persistence."""
    return [
        redis_bin,
        *redis_tls_options(port, paths),
        "--bind", HOST,
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--logfile", str(paths.log_file("redis-tls")),
        "--dir", str(paths.redis_tls_data),
    ]  # fmt: skip


def redis_cluster_command(redis_bin: str, port: int, node_dir: Path, log: Path, tls: Paths | None = None) -> list[str]:
    """Command line of one cluster node: cluster mode with its own ``nodes.conf`` in ``node_dir``, no
    persistence of data (the slot assignment in ``nodes.conf`` survives a restart, the keys do not). With
    ``tls``: TLS-only (:func:`redis_tls_options`), the cluster bus and replication over TLS too, so the nodes
    announce their TLS ports (in ``CLUSTER SLOTS`` and ``MOVED``) and the bus listens 10000 above them."""
    listen = ["--port", str(port)]
    if tls is not None:
        listen = [*redis_tls_options(port, tls), "--tls-cluster", "yes", "--tls-replication", "yes"]
    return [
        redis_bin,
        *listen,
        "--bind", HOST,
        "--cluster-enabled", "yes",
        "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS),
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--logfile", str(log),
        "--dir", str(node_dir),
    ]  # fmt: skip


def cluster_create_command(redis_cli: str, first: int, tls: Paths | None = None) -> list[str]:
    """``redis-cli --cluster create``: every node a master, the slots split evenly, no questions asked (with
    ``tls``: over TLS as the stack's admin user)."""
    nodes = [f"{HOST}:{port}" for port in cluster_ports(first)]
    secure = redis_cli_tls_options(tls) if tls is not None else []
    return [redis_cli, *secure, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"]
