"""``dev/stack down``: stop what ``up`` started, and with ``--purge`` delete its state."""

from __future__ import annotations

import argparse
import shutil

from teststack.layout import CLUSTERS, stack_paths
from teststack.output import progress
from teststack.processes import locked, process_alive, read_pid, stop_pid
from teststack.services import CLUSTER_SERVICES, NEEDLES


def cmd_down(args: argparse.Namespace) -> int:
    """Stop the services that ``up`` started; ``--purge`` also deletes their data, logs, certificates and
    passwords."""
    paths = stack_paths()
    if not paths.root.exists():
        progress(f"nothing to stop ({paths.root} does not exist)")
        return 0
    with locked(paths):
        paths.env_file.unlink(missing_ok=True)
        paths.secure_env_file.unlink(missing_ok=True)
        services = [("kafka", 60.0), ("redis-tls", 15.0), ("redis", 15.0), *((n, 15.0) for n in CLUSTER_SERVICES)]
        for name, grace in services:
            pid = read_pid(paths.pid_file(name))
            if pid is None:
                if name in ("kafka", "redis"):
                    progress(f"{name}: not running")
            elif process_alive(pid, NEEDLES[name]):
                stop_pid(pid, NEEDLES[name], name, grace)
                progress(f"{name}: stopped")
            else:
                progress(f"{name}: pid {pid} was not running")
            paths.pid_file(name).unlink(missing_ok=True)
        (paths.root / "redis.mode").unlink(missing_ok=True)  # the next up starts without AOF unless asked
        if args.purge:
            for folder in (
                paths.kafka_data,
                paths.redis_data,
                paths.redis_tls_data,
                *(paths.cluster_data(cluster) for cluster in CLUSTERS),
                paths.logs,
                paths.tls,
                paths.secrets,
            ):
                shutil.rmtree(folder, ignore_errors=True)
            for leftover in (paths.ports_file, paths.server_properties):
                leftover.unlink(missing_ok=True)
            progress(f"purged data, logs, certificates and passwords under {paths.root}")
    return 0
