"""The Redis Clusters' nodes: their start, the cluster's creation and the wait until it serves every slot."""

from __future__ import annotations

import os
import shutil
import time

from teststack.accounts import secret
from teststack.layout import HOST, Cluster, Paths, cluster_ports
from teststack.output import StackError, with_log_tail
from teststack.processes import run_quiet, spawn
from teststack.rediscommands import cluster_create_command, redis_cluster_command
from teststack.redisprobe import cluster_problem
from teststack.services import service_state, wait_until_ready
from teststack.tools import ensure_redis_server


def start_cluster_node(paths: Paths, cluster: Cluster, index: int, port: int, timeout: float) -> None:
    """Start node ``index`` of ``cluster`` on ``port`` (in cluster mode, on its ``nodes.conf`` if it has one) and
    wait for PONG."""
    redis_bin = ensure_redis_server()
    name = cluster.services[index]
    node_dir = paths.cluster_node_dir(cluster, index)
    node_dir.mkdir(parents=True, exist_ok=True)
    log = paths.log_file(name)
    proc = spawn(redis_cluster_command(redis_bin, port, node_dir, log, paths if cluster.tls else None), log, node_dir)
    paths.pid_file(name).write_text(f"{proc.pid}\n")
    wait_until_ready(paths, name, proc.pid, port, timeout, proc)


def create_cluster(paths: Paths, cluster: Cluster, first: int) -> None:
    """Join the freshly started nodes into one cluster and assign them the slots (``redis-cli --cluster create``,
    on the TLS cluster as the stack's admin user, its password in ``REDISCLI_AUTH``, not on the command line)."""
    redis_cli = shutil.which("redis-cli")
    if redis_cli is None:
        raise StackError("redis-cli is not installed (Debian's redis-tools, installed with redis-server)")
    env = {**os.environ, "REDISCLI_AUTH": secret(paths, "redis-admin-password")} if cluster.tls else None
    result = run_quiet(cluster_create_command(redis_cli, first, paths if cluster.tls else None), env=env)
    if result.returncode != 0:
        raise StackError(
            f"{cluster.name}: redis-cli --cluster create failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )


def _cluster_problems(paths: Paths, cluster: Cluster, first: int) -> list[tuple[int, str]]:
    tls = paths if cluster.tls else None
    found = [(port, cluster_problem(port, tls=tls)) for port in cluster_ports(first)]
    return [(port, problem) for port, problem in found if problem is not None]


def wait_for_cluster(paths: Paths, cluster: Cluster, first: int, timeout: float) -> float:
    """Wait until every node reports ``cluster_state:ok`` with all slots served; fail with a node's log tail."""
    started = time.monotonic()
    while failing := _cluster_problems(paths, cluster, first):
        if time.monotonic() - started > timeout:
            port, problem = failing[0]
            raise StackError(
                with_log_tail(
                    f"{cluster.name} node {HOST}:{port} not ready within {timeout:.0f}s ({problem})",
                    paths.log_file(cluster.services[port - first]),
                )
            )
        time.sleep(0.25)
    return time.monotonic() - started


def cluster_running(paths: Paths, ports: dict[str, int], cluster: Cluster) -> bool:
    """Whether every node of ``cluster`` runs and the cluster serves every slot."""
    first = ports.get(cluster.port_key)
    if first is None or not all(service_state(paths, name, ports).running for name in cluster.services):
        return False
    return not _cluster_problems(paths, cluster, first)
