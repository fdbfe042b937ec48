"""Freshness benchmark: time from producing an event to seeing its user through the API, under sustained load.

The real pipeline, each part its own process: a producer thread in this process sends ``--rate`` events/s for
``--duration`` s to a fresh topic (4 partitions) on the real broker; a real ``active-users consume`` stores them in
Redis; a real ``active-users serve`` answers. Background events are activity of the standard dataset's users
"now"; every ``--sample-every``-th event is a sample that carries a fresh, unique user id. The main thread polls
the active-users endpoint for yesterday and today (UTC) with a real token, ``--poll-interval`` apart, and records
when each sample's user first appears.

Latency of a sample = time the answer that first contained it was read, minus the time it was handed to the
producer (``send``) or acknowledged by the broker (``ack``, acks=all). A sample became visible somewhere within the
poll period before that answer, so the poll period (reported) is the resolution of the measurement: figures
below it mean "visible at the first look".

Where the time goes: a watcher thread looks in Redis every ``--watch-interval`` s for the samples not found yet
(their number in the ids hash, then their bit in today's day bitmap, through the key schema), so each sample's
time splits into send -> broker acknowledgement (the producer and broker), acknowledgement -> in Redis (the
consumer: its fetch wait, decode, hand-off to its store worker, the store) and in Redis -> visible through the API
(the wait for the next poll plus the API's answer, whose own times are reported). The consumer's metrics
(``/metrics``: records per batch, seconds from a batch's hand-off to the member taking its answer) are read after
the warm-up and at the end.

Usage: python bench/freshness.py [--quick] [--record] [--rate 5000] [--duration 60] [--sample-every 100]
Needs KAFKA_BOOTSTRAP_SERVERS and REDIS_URL.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from common import (
    ACTIVE_USERS_PATH,
    STANDARD,
    HttpClient,
    active_users_command,
    api_server,
    auth_headers,
    bench_settings,
    delete_prefix,
    emit,
    ms,
    percentile,
    range_query,
    require_env,
    service_env,
    stamp,
    today_utc,
)
from figures import target_line
from freshsamples import Producer, Watcher
from kafka.admin import KafkaAdminClient, NewTopic

from activeusers.settings import Settings
from consumer.kafka import FETCH_MAX_WAIT_MS, FETCH_MIN_BYTES, security_config

PARTITIONS = 4
P99_TARGET_S = 1.0
# Issue 22: p99 from send to visible in active-users under 250 ms at 5,000 events/s.
P99_ISSUE22_TARGET_S = 0.250
DRAIN_S = 30.0
READY_TIMEOUT_S = 90.0


def consumer_metrics(log_path: Path) -> dict[str, float]:
    """The consumer's batch metrics (``activeusers_batch_seconds`` and ``_records``: sums and counts), read from
    its ``/metrics`` endpoint, whose address it logs; empty when it cannot be read."""
    match = re.search(r'"health endpoint listening".*?"url": ?"(http://[^"]+)"', log_path.read_text(errors="replace"))
    if match is None:
        return {}
    url = match[1].replace("//0.0.0.0:", "//127.0.0.1:") + "/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith(("activeusers_batch_seconds_", "activeusers_batch_records_")) and name.endswith(
            ("_sum", "_count")
        ):
            found[name] = float(value)
    return found


def poll_until_seen(
    client: HttpClient,
    producer: Producer | None,
    wanted: set[str],
    deadline: float,
    interval: float,
    answers: list[float] | None = None,
) -> tuple[dict[str, float], list[float]]:
    """Poll the endpoint until every wanted user (and every sample the producer sent) was seen, or the deadline;
    each answer's seconds (request sent to body read) are appended to ``answers``."""
    seen: dict[str, float] = {}
    starts: list[float] = []
    while time.monotonic() < deadline:
        starts.append(time.monotonic())
        today = today_utc()
        status, body, seconds = client.get(f"{ACTIVE_USERS_PATH}?{range_query(today, 2)}")
        read_at = time.monotonic()
        if answers is not None:
            answers.append(seconds)
        if status != 200:
            raise RuntimeError(f"poll: HTTP {status}: {body[:200]!r}")
        present = {u for day in orjson.loads(body)["month"] for u in day["usersList"]}
        pending = set(wanted) if producer is None else set(producer.sent_at) - seen.keys()
        for user in pending & present:
            seen[user] = read_at
        wanted -= present
        done = not wanted if producer is None else not producer.is_alive() and len(seen) == len(producer.sent_at)
        if done:
            break
        time.sleep(interval)
    return seen, starts


def create_topic(settings: Settings) -> None:
    admin = KafkaAdminClient(
        **security_config(settings), bootstrap_servers=settings.kafka_bootstrap_servers, client_id="bench-freshness"
    )
    try:
        admin.create_topics([NewTopic(settings.kafka_topic, PARTITIONS, 1)])
    finally:
        admin.close()


def delete_topics(settings: Settings) -> None:
    admin = KafkaAdminClient(
        **security_config(settings), bootstrap_servers=settings.kafka_bootstrap_servers, client_id="bench-freshness"
    )
    try:
        admin.delete_topics([settings.kafka_topic, settings.kafka_dlq_topic], raise_errors=False)
    except Exception as exc:  # the DLQ topic may never have been created
        sys.stderr.write(f"topic cleanup: {exc}\n")
    finally:
        admin.close()


def batch_text(batches: dict[str, float]) -> str:
    """The consumer's batches during the load (from its metrics), as a sentence."""
    count = batches["activeusers_batch_seconds_count"]
    if not count:
        return "The consumer's metrics could not be read."
    records = batches["activeusers_batch_records_sum"] / count
    seconds = batches["activeusers_batch_seconds_sum"] / count
    return (
        f"Consumer (its metrics, during the load): {count:,.0f} batches of {records:,.0f} records on average;"
        f" {seconds * 1000:,.1f} ms on average from a batch's hand-off to the member taking its answer (the member"
        " takes it when it has two more batches in flight, so this includes those polls; it is not the store's"
        f" time). A fetch returns once {FETCH_MIN_BYTES:,} bytes have arrived or after the broker's"
        f" fetch_max_wait ({FETCH_MAX_WAIT_MS} ms): below that rate a record waits up to {FETCH_MAX_WAIT_MS} ms to be"
        " fetched."
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=5000, help="events per second (default 5000)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--sample-every", type=int, default=100, help="every Nth event is a sample (default 100)")
    parser.add_argument("--poll-interval", type=float, default=0.05, help="seconds between polls (default 0.05)")
    parser.add_argument(
        "--watch-interval", type=float, default=0.005, help="seconds between looks in Redis (default 0.005)"
    )
    parser.add_argument("--quick", action="store_true", help="15 s of load")
    parser.add_argument(
        "--record", action="store_true", help="append the table to the benchmark history (docs/benchmarks/)"
    )
    args = parser.parse_args()
    args.duration = 15.0 if args.quick else args.duration
    return args


@dataclass
class Run:
    """What one run saw: the producer's and the watcher's times, when the API first listed each sample, the polls'
    start times, the API's answer times and the consumer's batch metrics over the load."""

    producer: Producer
    watcher: Watcher
    seen: dict[str, float] = field(default_factory=dict)
    starts: list[float] = field(default_factory=list)
    answers: list[float] = field(default_factory=list)
    batches: dict[str, float] = field(default_factory=dict)


def warm_up(client: HttpClient, settings: Settings, run: str, log_dir: str) -> None:
    """One event through the whole pipeline, so group join and assignment are not measured."""
    sys.stderr.write("waiting for the consumer to join and store a first event...\n")
    warm = Producer(settings, run + "-warmup", rate=1, duration=1, sample_every=1)
    warm.start()
    warm.join()
    seen, _ = poll_until_seen(client, None, set(warm.sent_at), time.monotonic() + READY_TIMEOUT_S, 0.2)
    if len(seen) != len(warm.sent_at):
        raise RuntimeError(f"the warm-up event never became visible; consumer log in {log_dir}")


def load(client: HttpClient, settings: Settings, run: str, args: argparse.Namespace, consumer_log: Path) -> Run:
    """The load, the watcher and the polls until every sample was seen (or the drain time is over)."""
    metrics_before = consumer_metrics(consumer_log)
    sys.stderr.write(f"producing {args.rate} events/s for {args.duration:.0f} s...\n")
    producer = Producer(settings, run, args.rate, args.duration, args.sample_every)
    found = Run(producer, Watcher(settings, producer, args.watch_interval))
    found.producer.start()
    found.watcher.start()
    deadline = time.monotonic() + args.duration + DRAIN_S
    found.seen, found.starts = poll_until_seen(
        client, found.producer, set(), deadline, args.poll_interval, found.answers
    )
    found.producer.join(timeout=60)
    found.watcher.stop()
    client.close()
    metrics_after = consumer_metrics(consumer_log)
    if found.producer.error is not None:
        raise found.producer.error
    if found.watcher.error is not None:
        raise found.watcher.error
    names = ("activeusers_batch_seconds_sum", "activeusers_batch_seconds_count", "activeusers_batch_records_sum")
    found.batches = {name: metrics_after.get(name, 0.0) - metrics_before.get(name, 0.0) for name in names}
    return found


def measure(args: argparse.Namespace) -> Run:
    """A fresh topic, a real consumer and API over it, the warm-up and the load; topics and keys deleted after."""
    run = uuid.uuid4().hex[:8]
    settings = bench_settings(
        "freshness",
        KAFKA_TOPIC=f"bench-freshness-{run}",
        KAFKA_DLQ_TOPIC=f"bench-freshness-{run}.dlq",
        KAFKA_GROUP_ID=f"bench-freshness-{run}",
    )
    create_topic(settings)
    with tempfile.TemporaryDirectory(prefix="bench-freshness-") as tmp, Path(tmp, "consumer.log").open("wb") as log:
        consumer = subprocess.Popen(
            [*active_users_command(), "consume"],
            env=service_env(settings, CONSUMER_METRICS_PORT="0", CONSUMER_HEARTBEAT="1s"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            with api_server(settings, Path(tmp)) as api:
                client = HttpClient(api.host, api.port, auth_headers(settings))
                warm_up(client, settings, run, tmp)
                return load(client, settings, run, args, Path(tmp, "consumer.log"))
        finally:
            consumer.terminate()
            try:
                consumer.wait(timeout=30)
            except subprocess.TimeoutExpired:
                consumer.kill()
                consumer.wait()
            delete_prefix(settings.redis_url, settings.redis_key_prefix)
            delete_topics(settings)


def latency_row(name: str, values: list[float]) -> str:
    if not values:
        return f"| {name} | 0 | - | - | - |"
    cells = (ms(percentile(values, 50)), ms(percentile(values, 99)), ms(max(values)))
    return f"| {name} | {len(values):,} | " + " | ".join(cells) + " |"


def stage_rows(found: Run) -> list[str]:
    """Each sample's own stages: to the broker, to Redis, to the API; and the API's answers."""
    producer, stored, seen = found.producer, found.watcher.stored_at, found.seen
    samples = list(producer.sent_at)
    to_ack = [producer.acked_at[u] - producer.sent_at[u] for u in samples if u in producer.acked_at]
    to_redis = [stored[u] - producer.sent_at[u] for u in samples if u in stored]
    ack_to_redis = [stored[u] - producer.acked_at[u] for u in samples if u in stored and u in producer.acked_at]
    redis_to_api = [seen[u] - stored[u] for u in samples if u in stored and u in seen]
    return [
        "| stage | samples | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|",
        latency_row("send -> broker acknowledgement (producer linger, broker, acks=all)", to_ack),
        latency_row("send -> in Redis (all of the above, the consumer's fetch wait, batch and store)", to_redis),
        latency_row(
            "broker acknowledgement -> in Redis (the consumer: fetch wait, decode, hand-off, store)", ack_to_redis
        ),
        latency_row("in Redis -> visible through the API (wait for the next poll, the answer)", redis_to_api),
        latency_row(
            "the API's answers during the load (every poll: 2 days, today's element made again)", found.answers
        ),
    ]


def report(args: argparse.Namespace, found: Run) -> list[str]:
    """The section: latency to visible, the stages, the targets."""
    producer, seen = found.producer, found.seen
    samples = list(producer.sent_at)
    from_send = [seen[u] - producer.sent_at[u] for u in samples if u in seen]
    from_ack = [seen[u] - producer.acked_at[u] for u in samples if u in seen and u in producer.acked_at]
    periods = [b - a for a, b in itertools.pairwise(found.starts)] or [0.0]
    missing = len(samples) - len(from_send)
    achieved = producer.total / producer.elapsed if producer.elapsed else 0.0
    p99 = percentile(from_send, 99) if from_send else float("inf")
    return [
        f"### Freshness ({args.rate:,} events/s for {args.duration:.0f} s, real consumer and API processes)",
        "",
        stamp("bench/freshness.py"),
        f"{producer.total:,} events at {achieved:,.0f}/s achieved (acks=all, linger 5 ms), {PARTITIONS} partitions,"
        f" one `active-users consume` (default settings), one `active-users serve`; 1 sample every"
        f" {args.sample_every} events with a fresh user id; background users from the {STANDARD.users:,}-user"
        " population.",
        "",
        "| latency to first visible through the API | samples | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|",
        latency_row("from send", from_send),
        latency_row("from broker acknowledgement", from_ack),
        "",
        f"Measurement floor: polls every {ms(percentile(periods, 50))} ms at p50 ({ms(max(periods))} ms max;"
        f" {args.poll_interval * 1000:.0f} ms pause plus the answer itself, which lists all of today's users)."
        f" Samples never seen within {DRAIN_S:.0f} s after the load: {missing}.",
        "",
        "Where the time goes (each sample's own stages; the stages' percentiles do not add up to the total's):",
        "",
        *stage_rows(found),
        "",
        f"In Redis: the sample's bit in today's day bitmap, looked for every {args.watch_interval * 1000:.0f} ms"
        " (plus a round trip). " + batch_text(found.batches),
        "",
        target_line(
            "freshness p99 (from send)",
            f"{ms(p99)} ms",
            "under 1 s, every sample seen",
            p99 < P99_TARGET_S and not missing,
        ),
        target_line(
            f"freshness p99 (from send) at {args.rate:,} events/s, issue 22",
            f"{ms(p99)} ms",
            "under 250 ms, every sample seen",
            p99 < P99_ISSUE22_TARGET_S and not missing,
        ),
        f"- load average at the end (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in os.getloadavg())} on"
        f" {os.cpu_count()} cores",
        "",
    ]


def main() -> int:
    args = parse_args()
    require_env()
    emit(report(args, measure(args)), args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
