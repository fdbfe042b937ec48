"""The cluster client's metrics: what a scrape shows for given counts, under each service's namespace."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from activeusers.clusterstats import ClusterCollector, ClusterCounts


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
