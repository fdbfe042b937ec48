"""Prometheus metrics of the API: requests by route and status, request latency, the day cache, and on a Redis
Cluster its client's nodes, redirections and slot-map reloads (:mod:`activeusers.clusterstats`).

Each app owns its registry, so several apps (tests) never collide in the process-global default registry.
Labels are the route's canonical path (``/api/v1/...``), never the raw URL, and never a user id or token.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections.abc import Iterator
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from activeusers.clusterstats import ClusterCollector, cluster_counts
from activeusers.coalescer import Coalescer
from activeusers.connections import AsyncClient, Gate, gate_of
from activeusers.reader import ActivityReader
from api.admission import Admission
from api.daycache import DayCache

NAMESPACE: Final = "activeusers_api_"
UNMATCHED: Final = "unmatched"
# nginx's "client closed request": the client went away before the answer was ready.
CLIENT_CLOSED: Final = 499
# Anything else a client sends as a method is folded into one label value, so labels stay few.
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ApiMetrics:
    """The API's collectors, in a registry of their own."""

    def __init__(self, cache: DayCache | None = None, admission: Admission | None = None) -> None:
        self.registry = CollectorRegistry()
        if cache is not None:
            self.registry.register(_CacheCollector(cache))
        if admission is not None:
            in_flight = Gauge(
                "activeusers_api_requests_in_flight",
                "Data requests in progress (at most API_MAX_IN_FLIGHT; the next are refused with a 503).",
                registry=self.registry,
            )
            in_flight.set_function(lambda: admission.in_flight)
        self.answered = _RequestCollector()
        self.registry.register(self.answered)
        self._forgotten = Counter(
            "activeusers_api_forgotten_users",
            "Distinct user ids forgotten through POST /api/v1/active-users/forget (each erasure's count).",
            registry=self.registry,
        )

    def count_forgotten(self, users: int) -> None:
        """Count an erasure's distinct user ids."""
        self._forgotten.inc(users)

    def track_redis(self, client: AsyncClient, coalescer: Coalescer | None = None) -> None:
        """Export the Redis operations of ``client`` in progress (a permit of its gate each), how the coalescer
        batched the small reads, and what a Redis Cluster client knows and met (nothing for a single server's)."""
        self.registry.register(ClusterCollector(lambda: cluster_counts(client), NAMESPACE))
        self.registry.register(_RedisCollector(gate_of(client), coalescer))

    def track_reader(self, reader: ActivityReader) -> None:
        """Export how many user ids ``reader`` mirrors from the names lists (its memory grows with them)."""
        gauge = Gauge(
            "activeusers_api_user_ids_known",
            "User ids this process holds from the index's names lists (about 70 bytes each).",
            registry=self.registry,
        )
        gauge.set_function(lambda: reader.names_known)

    def render(self) -> bytes:
        """The registry in Prometheus' text exposition format."""
        return generate_latest(self.registry)

    def middleware(self) -> Middleware:
        """A middleware that times and counts every request (put it first, so it sees the final status)."""

        @web.middleware
        async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            except asyncio.CancelledError:
                status = CLIENT_CLOSED
                raise
            finally:
                method = request.method if request.method in _METHODS else "OTHER"
                self.answered.observe(route_label(request), method, status, time.perf_counter() - started)

        return measure


class _RequestCollector(Collector):
    """The requests answered (by route, method and status) and their latency (by route), counted in plain
    integers and turned into Prometheus' counter and histogram at each scrape: prometheus_client's own series
    take a lock and build their key on every update, a few microseconds on every request."""

    def __init__(self) -> None:
        self._answered: dict[tuple[str, str, int], int] = {}
        # Per route: the count in each bucket of _BUCKETS (and past the last), and the sum of the seconds.
        self._latency: dict[str, tuple[list[int], list[float]]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request that took ``seconds``."""
        key = (route, method, status)
        self._answered[key] = self._answered.get(key, 0) + 1
        found = self._latency.get(route)
        if found is None:
            found = self._latency[route] = ([0] * (len(_BUCKETS) + 1), [0.0])
        found[0][bisect.bisect_left(_BUCKETS, seconds)] += 1
        found[1][0] += seconds

    def collect(self) -> Iterator[Metric]:
        answered = CounterMetricFamily(
            "activeusers_api_requests",
            "HTTP requests answered, by route, method and status.",
            labels=["route", "method", "status"],
        )
        for (route, method, status), count in list(self._answered.items()):
            answered.add_metric([route, method, str(status)], count)
        yield answered
        latency = HistogramMetricFamily(
            "activeusers_api_request_duration_seconds", "Time to answer an HTTP request, by route.", labels=["route"]
        )
        for route, (counts, total) in list(self._latency.items()):
            cumulative = list(itertools.accumulate(counts))
            bounds = [*map(floatToGoString, _BUCKETS), "+Inf"]
            latency.add_metric([route], list(zip(bounds, map(float, cumulative), strict=True)), total[0])
        yield latency


class _CacheCollector(Collector):
    """The day cache's size and lookups, read at each scrape."""

    def __init__(self, cache: DayCache) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        cache = self._cache
        yield GaugeMetricFamily("activeusers_api_cache_bytes", "Estimated bytes the day cache holds.", cache.size_bytes)
        yield GaugeMetricFamily("activeusers_api_cache_entries", "Entries the day cache holds.", len(cache))
        lookups = CounterMetricFamily(
            "activeusers_api_cache_lookups",
            "Day cache lookups: hit (valid for the version asked), miss (absent, of another version or too old).",
            labels=["result"],
        )
        lookups.add_metric(["hit"], cache.hits)
        lookups.add_metric(["miss"], cache.misses)
        yield lookups


class _RedisCollector(Collector):
    """The client's operations in progress and the coalescer's batches, read at each scrape."""

    def __init__(self, gate: Gate | None, coalescer: Coalescer | None) -> None:
        self._gate = gate
        self._coalescer = coalescer

    def collect(self) -> Iterator[Metric]:
        if self._gate is not None:
            yield GaugeMetricFamily(
                "activeusers_api_redis_operations_in_progress",
                "Redis operations in progress, each holding a pooled connection (at most REDIS_POOL_SIZE).",
                self._gate.in_use,
            )
        if self._coalescer is not None:
            yield CounterMetricFamily(
                "activeusers_api_redis_batches",
                "Writes to Redis of the small reads of concurrent requests (token, index versions), coalesced.",
                self._coalescer.batches,
            )
            yield CounterMetricFamily(
                "activeusers_api_redis_batched_reads",
                "Small reads sent in those writes (reads per write: this over activeusers_api_redis_batches).",
                self._coalescer.calls,
            )


def route_label(request: web.Request) -> str:
    """The canonical path of the route that matched, or ``unmatched`` (unknown paths and methods)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED
