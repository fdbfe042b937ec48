"""What a Redis Cluster client met and holds, and its Prometheus metrics, shared by the API and the consumer.

On the packed-command path a cluster client counts the commands it sent again after ``MOVED``, ``ASK`` or
``TRYAGAIN`` and its slot-map reloads, ok and failed (:class:`ClusterStats`, one per client);
:func:`cluster_counts` reads those counts with the nodes of the client's slot map without sending anything, so a
scrape sends no command. :class:`ClusterCollector` yields them as ``<namespace>redis_cluster_nodes{role}``,
``..._redirects_total{reply}`` and ``..._slot_map_reloads_total{result}``; the namespace is the service's
(``activeusers_`` for the consumer, ``activeusers_api_`` for the API). A single server's client has none of them.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import PRIMARY, ClusterNode, RedisCluster
from redis.exceptions import AskError, MovedError

from activeusers.connections import AsyncClient, SyncClient

# The kinds of reply after which a packed command is sent again, as the metrics label them.
REDIRECTS: Final = ("moved", "ask", "tryagain")


@dataclass(frozen=True, slots=True)
class ClusterCounts:
    """What one Redis Cluster client knows and has met, for the metrics (small and picklable: the consumer's
    store worker sends it to the member): the nodes of its slot map by role and, on the packed-command path,
    the commands sent again per kind of reply (``REDIRECTS``) and the slot-map reloads, ok and failed."""

    primaries: int
    replicas: int
    redirects: tuple[tuple[str, int], ...]
    reloads: int
    failed_reloads: int


class ClusterStats:
    """The counters of one cluster client; threads may share the client, so the counters take a lock (only
    redirections and reloads count, which are rare)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, event: str, count: int = 1) -> None:
        """Count ``count`` more of ``event`` (a ``REDIRECTS`` kind, ``reload`` or ``failed_reload``)."""
        with self._lock:
            self._counts[event] += count

    def get(self, event: str) -> int:
        """How many times ``event`` was counted."""
        with self._lock:
            return self._counts[event]


_STATS: weakref.WeakKeyDictionary[RedisCluster | AsyncRedisCluster, ClusterStats] = weakref.WeakKeyDictionary()
_STATS_LOCK = threading.Lock()


def cluster_stats(client: RedisCluster | AsyncRedisCluster) -> ClusterStats:
    """The counters of ``client`` (made at its first use; they go with the client)."""
    with _STATS_LOCK:
        found = _STATS.get(client)
        if found is None:
            found = _STATS[client] = ClusterStats()
        return found


def cluster_counts(client: SyncClient | AsyncClient) -> ClusterCounts | None:
    """The counts of a cluster client and the nodes of its slot map as it holds them now (no command is sent;
    an asyncio client knows no node before its first command); ``None`` for a single server's client."""
    if not isinstance(client, RedisCluster | AsyncRedisCluster):
        return None
    nodes = list(cast(dict[str, ClusterNode | AsyncClusterNode], client.nodes_manager.nodes_cache).values())
    primaries = sum(node.server_type == PRIMARY for node in nodes)
    stats = cluster_stats(client)
    return ClusterCounts(
        primaries=primaries,
        replicas=len(nodes) - primaries,
        redirects=tuple((kind, stats.get(kind)) for kind in REDIRECTS),
        reloads=stats.get("reload"),
        failed_reloads=stats.get("failed_reload"),
    )


def count_redirects(stats: ClusterStats, replies: Sequence[Any], again: Sequence[int]) -> None:
    """Count the commands at positions ``again`` as sent again, each by the kind of its reply in ``replies``."""
    for position in again:
        reply = replies[position]
        stats.add("moved" if isinstance(reply, MovedError) else "ask" if isinstance(reply, AskError) else "tryagain")


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
