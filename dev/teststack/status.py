"""``dev/stack status``: each service's state and the env files."""

from __future__ import annotations

import argparse

from teststack.layout import CLUSTERS, HOST, stack_paths
from teststack.ports import load_ports
from teststack.redisprobe import cluster_problem
from teststack.services import service_state


def cmd_status(_args: argparse.Namespace) -> int:
    """Print each service's state and the env file; non-zero when a service is not running."""
    paths = stack_paths()
    ports = load_ports(paths)
    all_running = True
    names = ["redis", "kafka"]
    if "redis_tls" in ports or paths.pid_file("redis-tls").exists():
        names.append("redis-tls")
    clusters = [
        cluster
        for cluster in CLUSTERS
        if cluster.port_key in ports or any(paths.pid_file(name).exists() for name in cluster.services)
    ]
    for cluster in clusters:
        names += cluster.services
    for name in names:
        state = service_state(paths, name, ports)
        where = f"{HOST}:{state.port}" if state.port else "-"
        if state.running:
            print(f"{name}: running (pid {state.pid}, {where})")
        else:
            all_running = False
            print(f"{name}: NOT running ({state.problem}; {where}; log {paths.log_file(name)})")
    for cluster in clusters:
        first = ports.get(cluster.port_key)
        if first is not None:
            problem = cluster_problem(first, tls=paths if cluster.tls else None)
            all_running = all_running and problem is None
            print(f"{cluster.name}: {'cluster_state:ok' if problem is None else problem} (seed {HOST}:{first})")
    for env_file in (paths.env_file, paths.secure_env_file):
        if env_file.exists():
            print(f"# {env_file}")
            print(env_file.read_text(), end="")
    if not paths.env_file.exists():
        print(f"# no env file ({paths.env_file}): run dev/stack up")
    return 0 if all_running else 1
