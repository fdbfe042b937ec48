"""Each service's state (pid file, process, answer on its port) and the wait until it is ready."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

from teststack.kafkaprobe import kafka_ready
from teststack.layout import CLUSTERS, HOST, Paths
from teststack.output import StackError, progress, with_log_tail
from teststack.processes import process_alive, read_pid
from teststack.redisprobe import redis_ready


@dataclass
class ServiceState:
    """What ``status`` knows about one service."""

    name: str
    pid: int | None
    alive: bool
    port: int | None
    problem: str | None

    @property
    def running(self) -> bool:
        """Process alive and answering on its port."""
        return self.alive and self.problem is None


# Each cluster node's service name: its cluster and its index there (it listens that far above the first port).
CLUSTER_SERVICES = {name: (cluster, index) for cluster in CLUSTERS for index, name in enumerate(cluster.services)}
NEEDLES = {"redis": "redis-server", "redis-tls": "redis-server", "kafka": "kafka.Kafka"}
NEEDLES.update(dict.fromkeys(CLUSTER_SERVICES, "redis-server"))
PORT_KEYS = {"redis": "redis", "redis-tls": "redis_tls", "kafka": "kafka"}


def service_port(name: str, ports: dict[str, int]) -> int | None:
    """The port of service ``name``: cluster node ``i`` listens ``i`` above its cluster's first port."""
    if name in CLUSTER_SERVICES:
        cluster, index = CLUSTER_SERVICES[name]
        first = ports.get(cluster.port_key)
        return None if first is None else first + index
    return ports.get(PORT_KEYS[name])


def readiness(paths: Paths, name: str, port: int, timeout: float = 3.0) -> str | None:
    """``None`` when service ``name`` answers on ``port``, else why not."""
    if name == "kafka":
        return kafka_ready(port, timeout)
    tls = name == "redis-tls" or (name in CLUSTER_SERVICES and CLUSTER_SERVICES[name][0].tls)
    return redis_ready(port, timeout, paths if tls else None)


def service_state(paths: Paths, name: str, ports: dict[str, int], probe_timeout: float = 3.0) -> ServiceState:
    """Look at the pid file and the port of ``name``."""
    pid = read_pid(paths.pid_file(name))
    alive = pid is not None and process_alive(pid, NEEDLES[name])
    port = service_port(name, ports)
    problem: str | None = None
    if not alive:
        problem = "not running" if pid is None else f"pid {pid} is not running"
    elif port is None:
        problem = "port unknown"
    else:
        problem = readiness(paths, name, port, probe_timeout)
    return ServiceState(name, pid, alive, port, problem)


def wait_until_ready(
    paths: Paths, name: str, pid: int, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None
) -> float:
    """Wait until ``name`` answers on ``port``; fail with the log tail when it exits or times out.

    ``proc`` is given when this process started the service: its exit status is then exact (right after
    ``exec`` ``/proc/<pid>/cmdline`` can briefly read empty, so the pid check alone is only for reuse).
    """
    log = paths.log_file(name)
    started = time.monotonic()
    deadline = started + timeout
    last_report = started
    reason = "not started"
    while True:
        exited = proc.poll() is not None if proc is not None else not process_alive(pid, NEEDLES[name])
        if exited:
            code = f" with status {proc.returncode}" if proc is not None else ""
            raise StackError(with_log_tail(f"{name} (pid {pid}) exited during startup{code}", log))
        reason = readiness(paths, name, port) or ""
        if not reason:
            return time.monotonic() - started
        now = time.monotonic()
        if now > deadline:
            raise StackError(
                with_log_tail(
                    f"{name} (pid {pid}) did not become ready on {HOST}:{port} within {timeout:.0f}s "
                    f"(last check: {reason}); it is left running, stop it with dev/stack down",
                    log,
                )
            )
        if now - last_report >= 5:
            progress(f"waiting for {name} on {HOST}:{port} ({now - started:.0f}s; {reason})")
            last_report = now
        time.sleep(0.25)
