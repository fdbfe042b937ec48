"""The freshness benchmark's two threads: a producer of paced events with samples among them, and a watcher
that notes when each sample's bit is in Redis (``bench/freshness.py`` polls the API for them)."""

from __future__ import annotations

import random
import threading
import time

import orjson
import redis
from common import STANDARD, today_utc, user_ids

from activeusers.isotime import format_iso
from activeusers.keys import KeySchema, bucket_of
from activeusers.settings import Settings
from consumer.kafka import new_producer


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
            value = orjson.dumps({"type": "activity", "userId": user, "ts": format_iso(int(time.time() * 1000))})
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


class Watcher(threading.Thread):
    """Looks in Redis every ``interval`` s for the producer's samples not found yet: their number in their bucket's
    ids hash, then their bit in today's day bitmap (one pipelined round trip each); ``stored_at[user]`` is when the
    bit was first seen set (what a reader can read; the version the API checks moves right after)."""

    def __init__(self, settings: Settings, producer: Producer, interval: float) -> None:
        super().__init__(name="bench-watcher", daemon=True)
        self._settings = settings
        self._producer = producer
        self._interval = interval
        self._halt = threading.Event()
        self.stored_at: dict[str, float] = {}
        self.error: BaseException | None = None

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    def run(self) -> None:
        try:
            self._watch()
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def _watch(self) -> None:
        client = redis.Redis.from_url(self._settings.redis_url)
        keys = KeySchema.of(self._settings)
        numbers: dict[str, tuple[int, int]] = {}
        try:
            while not self._halt.wait(self._interval):
                pending = [u for u in list(self._producer.sent_at) if u not in self.stored_at]
                unnumbered = [u for u in pending if u not in numbers]
                if unnumbered:
                    pipe = client.pipeline(transaction=False)
                    for user in unnumbered:
                        pipe.hget(keys.ids(bucket_of(user, keys.buckets)), user)
                    for user, number in zip(unnumbered, pipe.execute(), strict=True):
                        if number is not None:
                            numbers[user] = (bucket_of(user, keys.buckets), int(number))
                numbered = [u for u in pending if u in numbers]
                if numbered:
                    today = today_utc()
                    pipe = client.pipeline(transaction=False)
                    for user in numbered:
                        bucket, number = numbers[user]
                        pipe.getbit(keys.day_bits(today, bucket), number)
                    replies = pipe.execute()
                    found_at = time.monotonic()
                    for user, bit in zip(numbered, replies, strict=True):
                        if bit:
                            self.stored_at[user] = found_at
        finally:
            client.close()
