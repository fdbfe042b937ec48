"""The Redis Cluster client's Prometheus metrics, shared by the API and the consumer: read at each scrape from
what the client already holds (:func:`activeusers.redisconn.cluster_counts`), so a scrape sends no command.

``<namespace>redis_cluster_nodes{role}`` (the nodes of the client's slot map), ``..._redirects_total{reply}``
(packed commands sent again after a ``MOVED``, ``ASK`` or ``TRYAGAIN`` reply) and
``..._slot_map_reloads_total{result}`` (slot-map reloads after a ``MOVED`` or a lost node, ``ok`` or ``failed``);
the namespace is the service's (``activeusers_`` for the consumer, ``activeusers_api_`` for the API). A single
server's client has none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from activeusers.redisconn import ClusterCounts


class ClusterCollector(Collector):
    """Yields the cluster metrics of whatever ``counts`` returns at scrape time (nothing for ``None``), their
    names starting with ``namespace``."""

    def __init__(self, counts: Callable[[], ClusterCounts | None], namespace: str) -> None:
        self._counts = counts
        self._name = namespace + "redis_cluster_"

    def collect(self) -> Iterator[Metric]:
        counts = self._counts()
        if counts is None:
            return
        nodes = GaugeMetricFamily(
            self._name + "nodes", "Nodes in the Redis Cluster client's slot map, by role.", labels=["role"]
        )
        nodes.add_metric(["primary"], counts.primaries)
        nodes.add_metric(["replica"], counts.replicas)
        yield nodes
        redirects = CounterMetricFamily(
            self._name + "redirects",
            "Packed commands sent again to another node or later, by the reply that asked for it (MOVED: the slot "
            "has a new owner; ASK: the slot is being migrated; TRYAGAIN: a multi-key command during a migration).",
            labels=["reply"],
        )
        for kind, count in counts.redirects:
            redirects.add_metric([kind], count)
        yield redirects
        reloads = CounterMetricFamily(
            self._name + "slot_map_reloads",
            "Times the client read the slot map again (after a MOVED reply or a lost node), by result.",
            labels=["result"],
        )
        reloads.add_metric(["ok"], counts.reloads)
        reloads.add_metric(["failed"], counts.failed_reloads)
        yield reloads
