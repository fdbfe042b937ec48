"""``dev/stack up``: start (or reuse) each service, then write the env files."""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Sequence

from teststack.accounts import SECURE_USER, acl_current, write_acl
from teststack.cluster import cluster_running, create_cluster, start_cluster_node, wait_for_cluster
from teststack.envfiles import render_env, render_secure_env, write_atomically
from teststack.kafka import start_kafka
from teststack.kafkaconfig import broker_listeners, secure_listener
from teststack.kafkajars import ensure_kafka_jars
from teststack.layout import (
    CLUSTER_BUS_OFFSET,
    CLUSTER_NODES,
    CLUSTERS,
    DEFAULT_CONTROLLER_PORT,
    DEFAULT_KAFKA_PORT,
    DEFAULT_REDIS_PORT,
    DEFAULT_REDIS_TLS_PORT,
    DEFAULT_SASL_SSL_PORT,
    HOST,
    PLAIN_CLUSTER,
    TLS_CLUSTER,
    Cluster,
    Paths,
    cluster_ports,
    stack_paths,
)
from teststack.output import StackError, progress
from teststack.ports import choose_port, env_port, free_port, load_ports, port_is_free, save_ports
from teststack.processes import locked, stop_pid
from teststack.redis import start_redis, start_redis_tls
from teststack.redisprobe import redis_call
from teststack.services import NEEDLES, service_state, wait_until_ready
from teststack.tls import ensure_certificates
from teststack.tools import ensure_java


def cmd_up(args: argparse.Namespace) -> int:
    """Start (or reuse) Redis and Kafka (the secured services with ``--secure``, the Redis Cluster with
    ``--cluster``), then write the env files."""
    paths = stack_paths()
    for folder in (paths.root, paths.logs, paths.kafka_data, paths.redis_data):
        folder.mkdir(parents=True, exist_ok=True)
    with locked(paths):
        try:
            text = _up_locked(args, paths)
        except BaseException:
            paths.env_file.unlink(missing_ok=True)  # no env file while a service is not up
            paths.secure_env_file.unlink(missing_ok=True)
            raise
    print(text, end="")
    return 0


def _up_locked(args: argparse.Namespace, paths: Paths) -> str:
    """The body of ``up`` (the state lock is held); returns the env file's text."""
    ports = load_ports(paths)
    if not service_state(paths, "kafka", ports).alive:
        # Fail early (before starting Redis) when the broker cannot be started at all.
        ensure_java()
        ensure_kafka_jars()
    if args.secure:
        ensure_certificates(paths)
    _up_redis(args, paths, ports)
    _up_kafka(args, paths, ports)
    if args.secure:
        _up_redis_tls(args, paths, ports)
    if args.cluster:
        _up_redis_cluster(args, paths, ports, PLAIN_CLUSTER)
        if args.secure:
            _up_redis_cluster(args, paths, ports, TLS_CLUSTER)

    # A cluster started by an earlier `up --cluster` stays in the env files while it serves every slot.
    running = {cluster: ports[cluster.port_key] for cluster in CLUSTERS if cluster_running(paths, ports, cluster)}
    text = render_env(ports["kafka"], ports["redis"], running.get(PLAIN_CLUSTER))
    write_atomically(paths.env_file, text)
    secure_port = ports.get("sasl_ssl")
    if (
        secure_port is not None
        and f"SASL_SSL://{HOST}:{secure_port}" in broker_listeners(paths)
        and service_state(paths, "redis-tls", ports).running
    ):
        secure = render_secure_env(secure_port, ports["redis_tls"], paths, running.get(TLS_CLUSTER))
        write_atomically(paths.secure_env_file, secure)
        progress(f"secured services: set -a; . {paths.secure_env_file}; set +a")
    else:
        paths.secure_env_file.unlink(missing_ok=True)
    return text


def _up_redis(args: argparse.Namespace, paths: Paths, ports: dict[str, int]) -> None:
    redis = service_state(paths, "redis", ports)
    if redis.alive and redis.pid is not None and redis.port is not None:
        if redis.problem:
            wait_until_ready(paths, "redis", redis.pid, redis.port, args.timeout)
        mode_file = paths.root / "redis.mode"
        if args.redis_aof and (mode_file.read_text().strip() if mode_file.exists() else "") != "aof":
            # Switch the running server to AOF in place (no restart, no data lost).
            for command in (("appendfsync", "everysec"), ("appendonly", "yes")):
                reply = redis_call(redis.port, "CONFIG", "SET", *command)
                if not reply.startswith(b"+OK"):
                    raise StackError(f"redis: CONFIG SET {' '.join(command)} failed: {reply!r}")
            mode_file.write_text("aof\n")
            progress("redis: switched the running server to appendonly yes, appendfsync everysec")
        progress(f"redis: reused pid {redis.pid} on {HOST}:{redis.port}")
        return
    explicit = args.redis_port or env_port("STACK_REDIS_PORT")
    avoid = [ports[key] for key in ("kafka", "controller", "sasl_ssl", "redis_tls") if key in ports]
    port = choose_port("redis", explicit, ports.get("redis"), DEFAULT_REDIS_PORT, avoid)
    ports["redis"] = port
    save_ports(paths, ports)
    # A server that crashed in AOF mode comes back in AOF mode (and reloads its data).
    mode_file = paths.root / "redis.mode"
    was_aof = mode_file.exists() and mode_file.read_text().strip() == "aof"
    start_redis(paths, port, args.redis_aof or was_aof, args.timeout)


def _up_kafka(args: argparse.Namespace, paths: Paths, ports: dict[str, int]) -> None:
    kafka = service_state(paths, "kafka", ports)
    explicit_s = (args.sasl_ssl_port or env_port("STACK_SASL_SSL_PORT")) if args.secure else None
    if kafka.alive and kafka.pid is not None and kafka.port is not None:
        listeners = broker_listeners(paths)
        has_secure = "SASL_SSL://" in listeners and (
            explicit_s is None or f"SASL_SSL://{HOST}:{explicit_s}" in listeners
        )
        if not args.secure or has_secure:
            if kafka.problem:
                progress(f"kafka: pid {kafka.pid} is running but not ready yet ({kafka.problem}), waiting")
                wait_until_ready(paths, "kafka", kafka.pid, kafka.port, args.timeout)
            progress(f"kafka: reused pid {kafka.pid} on {HOST}:{kafka.port}")
            return
        # The listener set is fixed at start: --secure on a broker without the SASL_SSL listener restarts it
        # (on the same data when that has the SCRAM credential).
        progress("kafka: restarting the broker to add its SASL_SSL listener (--secure)")
        stop_pid(kafka.pid, NEEDLES["kafka"], "kafka", 60.0)
    elif kafka.pid is not None:
        progress(f"kafka: previous broker (pid {kafka.pid}) is gone, starting it again on the same data")
    avoid = [ports["redis"], *([ports["redis_tls"]] if "redis_tls" in ports else [])]
    explicit_k = args.kafka_port or env_port("STACK_KAFKA_PORT")
    kport = choose_port("kafka", explicit_k, ports.get("kafka"), DEFAULT_KAFKA_PORT, avoid)
    explicit_c = args.controller_port or env_port("STACK_CONTROLLER_PORT")
    cport = choose_port(
        "kafka controller", explicit_c, ports.get("controller"), DEFAULT_CONTROLLER_PORT, [*avoid, kport]
    )
    ports.update(kafka=kport, controller=cport)
    secure = None
    if args.secure:
        sport = choose_port(
            "kafka SASL_SSL", explicit_s, ports.get("sasl_ssl"), DEFAULT_SASL_SSL_PORT, [*avoid, kport, cport]
        )
        ports["sasl_ssl"] = sport
        secure = secure_listener(paths, sport)
    save_ports(paths, ports)
    start_kafka(paths, kport, cport, args.timeout, secure)


def _up_redis_tls(args: argparse.Namespace, paths: Paths, ports: dict[str, int]) -> None:
    state = service_state(paths, "redis-tls", ports)
    explicit = args.redis_tls_port or env_port("STACK_REDIS_TLS_PORT")
    if state.alive and state.pid is not None and state.port is not None:
        current = acl_current(paths, paths.redis_tls_data)
        if (explicit is None or explicit == state.port) and current:
            if state.problem:
                wait_until_ready(paths, "redis-tls", state.pid, state.port, args.timeout)
            progress(f"redis-tls: reused pid {state.pid} on {HOST}:{state.port}")
            return
        if not current:
            progress("redis-tls: restarting it with this dev/stack's ACL users")
        stop_pid(state.pid, NEEDLES["redis-tls"], "redis-tls", 15.0)
    avoid = [ports[key] for key in ("redis", "kafka", "controller", "sasl_ssl") if key in ports]
    port = choose_port("redis-tls", explicit, ports.get("redis_tls"), DEFAULT_REDIS_TLS_PORT, avoid)
    ports["redis_tls"] = port
    save_ports(paths, ports)
    start_redis_tls(paths, port, args.timeout)


def _choose_cluster_port(cluster: Cluster, explicit: int | None, remembered: int | None, avoid: Sequence[int]) -> int:
    """The first node's port: every node's port and cluster bus port must be free (and not in ``avoid``)."""

    def usable(first: int) -> bool:
        wanted = [*cluster_ports(first), *(port + CLUSTER_BUS_OFFSET for port in cluster_ports(first))]
        return max(wanted) <= 65535 and not set(wanted) & set(avoid) and all(port_is_free(p) for p in wanted)

    if explicit is not None:
        if not usable(explicit):
            raise StackError(
                f"{cluster.name}: ports {HOST}:{explicit}-{explicit + CLUSTER_NODES - 1} or their cluster bus ports "
                f"(+{CLUSTER_BUS_OFFSET}) are taken"
            )
        return explicit
    for candidate in (remembered, cluster.default_port):
        if candidate is not None and usable(candidate):
            return candidate
    for _ in range(50):
        candidate = free_port(avoid)
        if candidate + CLUSTER_NODES - 1 + CLUSTER_BUS_OFFSET <= 65535 and usable(candidate):
            progress(f"{cluster.name}: port {remembered or cluster.default_port} is taken, using {candidate}")
            return candidate
    raise StackError(f"{cluster.name}: found no free run of loopback ports for the nodes")


def _up_redis_cluster(args: argparse.Namespace, paths: Paths, ports: dict[str, int], cluster: Cluster) -> None:
    states = [service_state(paths, name, ports) for name in cluster.services]
    explicit = getattr(args, f"{cluster.port_key}_port") or env_port(cluster.env_var)
    remembered = ports.get(cluster.port_key)
    current = not cluster.tls or acl_current(paths, paths.cluster_data(cluster))
    if remembered is not None and all(state.alive for state in states) and explicit in (None, remembered) and current:
        for state in states:
            if state.problem and state.pid is not None and state.port is not None:
                wait_until_ready(paths, state.name, state.pid, state.port, args.timeout)
        wait_for_cluster(paths, cluster, remembered, args.timeout)
        pids = ", ".join(str(state.pid) for state in states)
        progress(f"{cluster.name}: reused pids {pids} on {HOST}:{remembered}-{remembered + CLUSTER_NODES - 1}")
        return
    # A partial cluster (a node died), another port wanted or other ACL users: stop what is left, start all again.
    for state in states:
        if state.alive and state.pid is not None:
            stop_pid(state.pid, NEEDLES[state.name], state.name, 15.0)
    others = [other for other in CLUSTERS if other != cluster and other.port_key in ports]
    avoid = [ports[key] for key in ("redis", "redis_tls", "kafka", "controller", "sasl_ssl") if key in ports]
    avoid += [port for other in others for port in cluster_ports(ports[other.port_key])]
    first = _choose_cluster_port(cluster, explicit, None if explicit else remembered, avoid)
    ports[cluster.port_key] = first
    save_ports(paths, ports)
    folder = paths.cluster_data(cluster)
    marker = folder / ".stack-ports"
    formed = marker.exists() and marker.read_text().strip() == str(first)
    formed = formed and all((paths.cluster_node_dir(cluster, i) / "nodes.conf").exists() for i in range(CLUSTER_NODES))
    if not formed:
        # Node ids and slots live in nodes.conf, bound to the nodes' addresses: other ports need a new cluster.
        shutil.rmtree(folder, ignore_errors=True)
    if cluster.tls:
        write_acl(paths, folder)
    started = time.monotonic()
    for index, port in enumerate(cluster_ports(first)):
        start_cluster_node(paths, cluster, index, port, args.timeout)
    if not formed:
        create_cluster(paths, cluster, first)
        marker.write_text(f"{first}\n")
    wait_for_cluster(paths, cluster, first, args.timeout)
    how = "rejoined on their nodes.conf" if formed else "created"
    security = f", TLS only, ACL user {SECURE_USER}" if cluster.tls else ""
    progress(
        f"{cluster.name}: {CLUSTER_NODES} masters {how} on {HOST}:{first}-{first + CLUSTER_NODES - 1} "
        f"(cluster_state:ok{security}, {time.monotonic() - started:.1f}s)"
    )
