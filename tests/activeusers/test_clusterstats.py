"""The cluster client's counts and metrics: what a scrape shows for given counts, under each service's namespace;
a failed slot-map reload counted on the real cluster."""

from __future__ import annotations

import socket

import pytest
import redis
import redis.cluster
from prometheus_client import CollectorRegistry, generate_latest

from activeusers.clusterstats import ClusterCollector, ClusterCounts, cluster_counts
from activeusers.connections import pack_command, redis_client
from activeusers.settings import Settings
from activeusers.transport import send_commands


def _exposition(counts: ClusterCounts | None, namespace: str) -> list[str]:
    registry = CollectorRegistry()
    registry.register(ClusterCollector(lambda: counts, namespace))
    return [line for line in generate_latest(registry).decode().splitlines() if not line.startswith("#")]


def test_the_counts_as_scraped() -> None:
    counts = ClusterCounts(3, 1, (("moved", 4), ("ask", 2), ("tryagain", 1)), 5, 6)
    assert _exposition(counts, "activeusers_api_") == [
        'activeusers_api_redis_cluster_nodes{role="primary"} 3.0',
        'activeusers_api_redis_cluster_nodes{role="replica"} 1.0',
        'activeusers_api_redis_cluster_redirects_total{reply="moved"} 4.0',
        'activeusers_api_redis_cluster_redirects_total{reply="ask"} 2.0',
        'activeusers_api_redis_cluster_redirects_total{reply="tryagain"} 1.0',
        'activeusers_api_redis_cluster_slot_map_reloads_total{result="ok"} 5.0',
        'activeusers_api_redis_cluster_slot_map_reloads_total{result="failed"} 6.0',
    ]


def test_counts_read_at_each_scrape_and_none_for_a_single_server() -> None:
    current: list[ClusterCounts | None] = [None]
    registry = CollectorRegistry()
    registry.register(ClusterCollector(lambda: current[0], "activeusers_"))
    assert "redis_cluster" not in generate_latest(registry).decode()
    current[0] = ClusterCounts(2, 0, (("moved", 0), ("ask", 0), ("tryagain", 0)), 0, 0)
    assert 'activeusers_redis_cluster_nodes{role="primary"} 2.0' in generate_latest(registry).decode()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _cluster_settings(url: str) -> Settings:
    return Settings(redis_url=url, redis_cluster=True, redis_timeout_s=5)


def cmd(*args: str | int) -> tuple[str, bytes]:
    """A packed command routed by its first key (``args[1]``)."""
    return str(args[1]), pack_command(args)


def test_a_cluster_whose_seed_is_down_is_counted_as_a_failed_reload(redis_cluster: str, cluster_prefix: str) -> None:
    client = redis_client(_cluster_settings(redis_cluster))
    assert cluster_counts(redis_client(Settings(redis_url=redis_cluster))) is None  # a single server's client
    assert cluster_counts(client) == ClusterCounts(3, 0, (("moved", 0), ("ask", 0), ("tryagain", 0)), 0, 0)
    dead = closed_port()
    for node in client.get_primaries():  # every node gone at once: the send fails, and so does the reload
        pool = node.redis_connection.connection_pool
        pool.disconnect()
        pool.connection_kwargs["port"] = dead
        pool.reset()  # no connection object kept: each new one is made with the dead port
    client.nodes_manager.startup_nodes = {f"127.0.0.1:{dead}": redis.cluster.ClusterNode("127.0.0.1", dead)}
    with pytest.raises(redis.ConnectionError):
        send_commands(client, [cmd("SET", f"{cluster_prefix}k", "1")])
    counts = cluster_counts(client)
    assert counts is not None and (counts.reloads, counts.failed_reloads) == (0, 1)
    client.close()
