"""The consumer's Prometheus metrics and its small HTTP endpoint for ``/metrics`` and ``/healthz``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from activeusers.clusterstats import ClusterCollector, ClusterCounts
from activeusers.events import MalformedReason
from consumer.ingest import SkipReason


class ConsumerMetrics:
    """Every metric the consumer exports, registered in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.consumed = Counter("activeusers_events_consumed", "Records polled from the activity topic", registry=r)
        self.stored = Counter("activeusers_events_stored", "Events whose effect is stored in Redis", registry=r)
        self.skipped = Counter(
            "activeusers_events_skipped", "Valid events deliberately not stored, by reason", ["reason"], registry=r
        )
        self.ignored_values = Counter(
            "activeusers_property_values_ignored",
            "Indexed property values that were not strings of 1 to 64 characters (the events still count)",
            registry=r,
        )
        self.dead_lettered = Counter(
            "activeusers_events_dead_lettered",
            "Malformed records sent to the dead-letter topic",
            ["reason"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "activeusers_batch_seconds",
            "Time to classify, store and commit one batch",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.batch_records = Histogram(
            "activeusers_batch_records",
            "Records per batch",
            registry=r,
            buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000),
        )
        self.lag = Gauge("activeusers_consumer_lag", "Records behind the partition's end", ["partition"], registry=r)
        self.last_event = Gauge(
            "activeusers_last_stored_event_timestamp_seconds", "Event time of the newest stored event", registry=r
        )
        self.store_errors = Counter("activeusers_store_errors", "Failed Redis writes (retried)", registry=r)
        self.kafka_errors = Counter("activeusers_kafka_errors", "Failed Kafka commits or DLQ sends", registry=r)
        self.undecodable = Counter(
            "activeusers_undecodable_fetches",
            "Fetches the client could not decode (codec library missing, corrupt batch); the consumer exits",
            ["partition"],
            registry=r,
        )
        self.redis_up = Gauge("activeusers_redis_up", "1 when the last Redis write succeeded", registry=r)
        self.assigned = Gauge("activeusers_assigned_partitions", "Partitions assigned to this member", registry=r)
        for skip in SkipReason:
            self.skipped.labels(skip)
        for malformed in MalformedReason:
            self.dead_lettered.labels(malformed)

    def track_redis(self, counts: Callable[[], ClusterCounts | None]) -> None:
        """Export what ``counts`` says at each scrape about the Redis Cluster client (nothing for ``None``)."""
        self.registry.register(ClusterCollector(counts, "activeusers_"))

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


class HealthServer:
    """Serves ``/metrics`` and ``/healthz`` on a daemon thread; ``health()`` says whether the member is healthy.
    Neither answer touches Redis or Kafka: they read what the member already knows (a probe of a member whose
    Redis is down answers at once), and both are ``Cache-Control: no-store``.

    The port is bound when the server is built (so a taken port stops the process before anything else
    starts); requests are served from :meth:`start` on.
    """

    def __init__(self, host: str, port: int, metrics: ConsumerMetrics) -> None:
        self._health: Callable[[], tuple[bool, dict[str, object]]] = _starting
        self._server = ThreadingHTTPServer((host, port), _handler(metrics, lambda: self._health()))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        return int(self._server.server_address[1])

    def start(self, health: Callable[[], tuple[bool, dict[str, object]]]) -> None:
        """Start serving, with ``health`` answering ``/healthz``."""
        self._health = health
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


def _starting() -> tuple[bool, dict[str, object]]:
    return False, {"starting": True}


def _handler(
    metrics: ConsumerMetrics, health: Callable[[], tuple[bool, dict[str, object]]]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, metrics.exposition())
            elif self.path == "/healthz":
                ok, detail = health()
                body = orjson.dumps({"status": "ok" if ok else "unhealthy", **detail})
                self._send(200 if ok else 503, "application/json", body)
            else:
                self._send(404, "application/json", b'{"error":"not found"}')

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            # A probe or a scrape must see this moment's state, never a proxy's copy.
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Scrapes are not significant events; stay quiet."""

    return Handler
