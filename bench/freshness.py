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

Usage: python bench/freshness.py [--quick] [--record] [--rate 5000] [--duration 60] [--sample-every 100]
Needs KAFKA_BOOTSTRAP_SERVERS and REDIS_URL.
"""

from __future__ import annotations

import argparse
import itertools
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
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
    target_line,
    today_utc,
    user_ids,
)
from kafka.admin import KafkaAdminClient, NewTopic

from activeusers.events import format_ts
from activeusers.settings import Settings
from consumer.kafka import new_producer, security_config

PARTITIONS = 4
P99_TARGET_S = 1.0
DRAIN_S = 30.0
READY_TIMEOUT_S = 90.0


class Producer(threading.Thread):
    """Sends ``rate`` events/s for ``duration`` s, pacing by the schedule (bursts catch up after a stall)."""

    def __init__(self, settings: Settings, run: str, rate: int, duration: float, sample_every: int) -> None:
        super().__init__(name="bench-producer", daemon=True)
        self._settings = settings
        self._run = run
        self.rate = rate
        self.total = int(rate * duration)
        self._sample_every = sample_every
        self.sent_at: dict[str, float] = {}
        self.acked_at: dict[str, float] = {}
        self.elapsed = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._produce()
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def _produce(self) -> None:
        population = user_ids(STANDARD.users, STANDARD.seed)
        rng = random.Random(STANDARD.seed + 7)
        producer = new_producer(self._settings, "bench-freshness")
        topic = self._settings.kafka_topic
        started = time.monotonic()
        for i in range(self.total):
            due = started + i / self.rate
            now = time.monotonic()
            if due - now > 0.001:
                time.sleep(due - now)
            sample = i % self._sample_every == 0
            user = f"fresh-{self._run}-{i // self._sample_every:06d}" if sample else rng.choice(population)
            value = orjson.dumps({"type": "activity", "userId": user, "ts": format_ts(int(time.time() * 1000))})
            if sample:
                self.sent_at[user] = time.monotonic()
            future = producer.send(topic, key=user.encode(), value=value)
            if sample:
                future.add_callback(self._acked, user)
        producer.flush(timeout=60)
        self.elapsed = time.monotonic() - started
        producer.close(timeout=10)

    def _acked(self, user: str, metadata: object) -> None:
        self.acked_at[user] = time.monotonic()


def poll_until_seen(
    client: HttpClient, producer: Producer | None, wanted: set[str], deadline: float, interval: float
) -> tuple[dict[str, float], list[float]]:
    """Poll the endpoint until every wanted user (and every sample the producer sent) was seen, or the deadline."""
    seen: dict[str, float] = {}
    starts: list[float] = []
    while time.monotonic() < deadline:
        starts.append(time.monotonic())
        today = today_utc()
        status, body, _ = client.get(f"{ACTIVE_USERS_PATH}?{range_query(today, 2)}")
        read_at = time.monotonic()
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=5000, help="events per second (default 5000)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--sample-every", type=int, default=100, help="every Nth event is a sample (default 100)")
    parser.add_argument("--poll-interval", type=float, default=0.05, help="seconds between polls (default 0.05)")
    parser.add_argument("--quick", action="store_true", help="15 s of load")
    parser.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args()
    require_env()
    duration = 15.0 if args.quick else args.duration
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
                # Warm-up: one event through the whole pipeline, so group join and assignment are not measured.
                sys.stderr.write("waiting for the consumer to join and store a first event...\n")
                warm = Producer(settings, run + "-warmup", rate=1, duration=1, sample_every=1)
                warm.start()
                warm.join()
                seen, _ = poll_until_seen(client, None, set(warm.sent_at), time.monotonic() + READY_TIMEOUT_S, 0.2)
                if len(seen) != len(warm.sent_at):
                    raise RuntimeError(f"the warm-up event never became visible; consumer log in {tmp}")
                sys.stderr.write(f"producing {args.rate} events/s for {duration:.0f} s...\n")
                producer = Producer(settings, run, args.rate, duration, args.sample_every)
                producer.start()
                seen, starts = poll_until_seen(
                    client, producer, set(), time.monotonic() + duration + DRAIN_S, args.poll_interval
                )
                producer.join(timeout=60)
                client.close()
                if producer.error is not None:
                    raise producer.error
        finally:
            consumer.terminate()
            try:
                consumer.wait(timeout=30)
            except subprocess.TimeoutExpired:
                consumer.kill()
                consumer.wait()
            delete_prefix(settings.redis_url, settings.redis_key_prefix)
            delete_topics(settings)
    samples = list(producer.sent_at)
    from_send = [seen[u] - producer.sent_at[u] for u in samples if u in seen]
    from_ack = [seen[u] - producer.acked_at[u] for u in samples if u in seen and u in producer.acked_at]
    periods = [b - a for a, b in itertools.pairwise(starts)] or [0.0]
    missing = len(samples) - len(from_send)
    achieved = producer.total / producer.elapsed if producer.elapsed else 0.0

    def row(name: str, values: list[float]) -> str:
        if not values:
            return f"| {name} | 0 | - | - | - |"
        cells = (ms(percentile(values, 50)), ms(percentile(values, 99)), ms(max(values)))
        return f"| {name} | {len(values):,} | " + " | ".join(cells) + " |"

    p99 = percentile(from_send, 99) if from_send else float("inf")
    lines = [
        f"### Freshness ({args.rate:,} events/s for {duration:.0f} s, real consumer and API processes)",
        "",
        stamp("bench/freshness.py"),
        f"{producer.total:,} events at {achieved:,.0f}/s achieved (acks=all, linger 5 ms), {PARTITIONS} partitions,"
        f" one `active-users consume` (default settings), one `active-users serve`; 1 sample every"
        f" {args.sample_every} events with a fresh user id; background users from the {STANDARD.users:,}-user"
        " population.",
        "",
        "| latency to first visible through the API | samples | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|",
        row("from send", from_send),
        row("from broker acknowledgement", from_ack),
        "",
        f"Measurement floor: polls every {ms(percentile(periods, 50))} ms at p50 ({ms(max(periods))} ms max;"
        f" {args.poll_interval * 1000:.0f} ms pause plus the answer itself, which lists all of today's users)."
        f" Samples never seen within {DRAIN_S:.0f} s after the load: {missing}.",
        "",
        target_line(
            "freshness p99 (from send)",
            f"{ms(p99)} ms",
            "under 1 s, every sample seen",
            p99 < P99_TARGET_S and not missing,
        ),
        "",
    ]
    emit(lines, args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
