"""The consumer's subcommands: ``consume`` (a consumer-group member), ``replay`` (rebuild from the topic),
``reindex`` (upgrade what an earlier version left in Redis), ``forget`` (erase users from the index) and
``produce`` (the demo event generator)."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

from activeusers.connections import redis_client
from activeusers.events import MAX_USER_ID_CHARS
from activeusers.keys import KeySchema
from activeusers.redischeck import check_redis
from activeusers.settings import Settings
from activeusers.writer import ActivityWriter
from consumer.shutdown import EXIT_UNDECODABLE, STOP_DEADLINE_S, StopRequest


def register(commands: Any) -> None:
    """Add ``consume``, ``replay``, ``reindex``, ``forget`` and ``produce`` to the command line."""
    consume = commands.add_parser(
        "consume",
        help="run a consumer-group member: Kafka activity events into Redis",
        description="Consume KAFKA_TOPIC as a member of KAFKA_GROUP_ID and store activity in REDIS_URL. "
        "Run several copies to share the partitions. SIGTERM or Ctrl-C stops cleanly.",
    )
    consume.set_defaults(run=_consume)
    replay = commands.add_parser(
        "replay",
        help="rebuild Redis from the topic's beginning (safe beside the live consumer)",
        description="Read every partition of KAFKA_TOPIC from its beginning to its current end, without a "
        "consumer group, and store every event again. Writes are idempotent.",
    )
    replay.add_argument(
        "--dead-letter",
        action="store_true",
        help="also publish malformed records to KAFKA_DLQ_TOPIC (the live consumer already did; off by default)",
    )
    replay.set_defaults(run=_replay)
    reindex = commands.add_parser(
        "reindex",
        help="upgrade what an earlier version left in Redis: list every numbered user's id, index and delete "
        "the old sets",
        description="List the id of every user numbered before the names lists existed (in its bucket's names "
        "list); number the users of every old day, hour and new-user set of REDIS_KEY_PREFIX and "
        "ACTIVITY_TIMEZONE, set their bits in the bitmaps and delete the set. Idempotent, and safe beside running "
        "consumers.",
    )
    reindex.set_defaults(run=_reindex)
    forget = commands.add_parser(
        "forget",
        help="erase users from the index for good (their later events are never counted), or --restore them",
        description="Clear the users' bits from every retained bitmap of REDIS_URL (counters kept exact), tombstone "
        "their ids and retire their numbers, so that no later event, redelivery or replay counts them; every API "
        "process' next answer leaves them out. --restore lifts the tombstones: events from then on count again "
        "(nothing erased comes back). The raw events stay in Kafka until the topic's own retention removes them.",
    )
    forget.add_argument("ids", nargs="+", metavar="ID", type=_user_id, help="a user id (1 to 128 characters)")
    forget.add_argument("--restore", action="store_true", help="lift the tombstones of these ids instead")
    forget.set_defaults(run=_forget)
    _register_produce(commands)


def _register_produce(commands: Any) -> None:
    produce = commands.add_parser(
        "produce",
        help="send a realistic, reproducible stream of generated events to KAFKA_TOPIC (demos, tests, benchmarks)",
        description="Generate COUNT records of a user population (weekly rhythm, daily curve, heavy users, new "
        "users, logins and activity, optionally malformed records) over the DAYS days before now and send them "
        "to KAFKA_TOPIC, keyed by user id. The same --seed and --now give the same records.",
    )
    add = produce.add_argument
    add("--count", type=_natural, default=50_000, help="records to send (default 50000; 0 with --create-topic)")
    add("--users", type=_natural, default=2000, help="population size (default 2000)")
    add("--days", type=_natural, default=30, help="the window before now that timestamps fall into (default 30)")
    add("--seed", type=int, default=1, help="random seed (default 1)")
    add("--now", type=_instant, default=None, help="end of the window: epoch ms or ISO-8601 (default: the clock)")
    add("--rate", type=float, default=0.0, help="records per second; 0 = as fast as possible (default)")
    add("--heavy-share", type=float, default=0.1, help="share of heavy users (default 0.1)")
    add("--heavy-factor", type=float, default=8.0, help="how many times more events a heavy user sends (default 8)")
    add("--new-user-share", type=float, default=0.2, help="share of users created during the window (default 0.2)")
    add("--weekend-factor", type=float, default=0.35, help="weekend traffic relative to a weekday (default 0.35)")
    add("--malformed-share", type=float, default=0.0, help="share of malformed records (default 0)")
    add("--platforms", action="store_true", help="give counted events a properties.platform (a realistic mix)")
    add("--jsonl", type=Path, default=None, help="write every acknowledged record to this JSON-lines file")
    add("--acks", choices=("all", "1", "0"), default="all", help="producer acks (default all)")
    add("--create-topic", action="store_true", help="first create KAFKA_TOPIC and KAFKA_DLQ_TOPIC if missing")
    add("--partitions", type=_natural, default=6, help="partitions of topics that --create-topic creates (default 6)")
    add("--wait-drained", action="store_true", help="then wait until KAFKA_GROUP_ID has consumed the whole topic")
    add("--drain-timeout", type=float, default=300.0, help="seconds --wait-drained waits at most (default 300)")
    produce.set_defaults(run=_produce)


def stop_on_signals() -> StopRequest:
    """A stop request set by SIGTERM or SIGINT: the loop finishes its batch and stops cleanly, and the process
    ends within ``STOP_DEADLINE_S`` whatever Kafka is doing."""
    stop = StopRequest(deadline_s=STOP_DEADLINE_S)

    def handle(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


def check_connections(settings: Settings, *, redis: bool = True) -> None:
    """Start-up checks: a misconfigured Kafka (or Redis) connection stops the command with one line naming the
    setting, within seconds, before any client retries it silently."""
    from consumer.brokercheck import check_broker

    if redis:
        check_redis(settings)
    check_broker(settings)


def _consume(settings: Settings, args: argparse.Namespace) -> int:
    from consumer.loop import run_consumer

    stop = stop_on_signals()  # first, so that a SIGTERM during the checks is a clean stop too
    check_connections(settings)
    return run_consumer(settings, stop)


def _produce(settings: Settings, args: argparse.Namespace) -> int:
    from consumer.synthetic.producer import run_produce

    check_connections(settings, redis=False)
    return run_produce(settings, args)


def _natural(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return number


def _instant(value: str) -> int:
    from activeusers.errors import MalformedEvent
    from activeusers.events import parse_ts

    try:
        return parse_ts(int(value) if value.isdigit() else value)
    except MalformedEvent as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _reindex(settings: Settings, args: argparse.Namespace) -> int:
    from consumer.reindex import reindex

    check_redis(settings)
    redis = redis_client(settings)
    keys = KeySchema.of(settings)
    try:
        result = reindex(redis, ActivityWriter.of(redis, settings), keys, sys.stderr)
    finally:
        redis.close()
    print(
        f"reindex complete: {result.listed} user ids listed, {result.ids} ids from {result.day_sets} day sets, "
        f"{result.hour_sets} hour sets and {result.new_user_sets} new-user sets (each set deleted once "
        f"indexed), {result.seconds:.1f} s",
        file=sys.stderr,
    )
    return 0


def _forget(settings: Settings, args: argparse.Namespace) -> int:
    from activeusers.erasure import Erasure, forget_blocking, restore_blocking
    from consumer.progress import ProgressBar

    check_redis(settings)
    redis = redis_client(settings)
    bars: list[ProgressBar] = []

    def progress(erasure: Erasure) -> None:
        if len(erasure.ids) > 1 and erasure.total:
            if not bars:
                bars.append(ProgressBar(erasure.total, sys.stderr, unit="scripts"))
            bars[0].update(erasure.done, final=erasure.done == erasure.total)

    started = time.monotonic()
    try:
        if args.restore:
            done = restore_blocking(redis, settings, args.ids)
            print(f"forget --restore: {done.users} of {len(set(args.ids))} ids were forgotten", file=sys.stderr)
            return 0
        done = forget_blocking(redis, settings, args.ids, progress)
    finally:
        redis.close()
    print(
        f"forget complete: {done.users} user ids forgotten, {len(done.days)} days given new versions, "
        f"{time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )
    return 0


def _user_id(value: str) -> str:
    if not 0 < len(value) <= MAX_USER_ID_CHARS:
        raise argparse.ArgumentTypeError(f"a user id has 1 to {MAX_USER_ID_CHARS} characters")
    return value


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from consumer.deadletter import DeadLetterQueue
    from consumer.kafka import new_consumer, new_producer
    from consumer.metrics import ConsumerMetrics
    from consumer.replay import replay

    stop = stop_on_signals()
    check_connections(settings)
    redis = redis_client(settings)
    writer = ActivityWriter.of(redis, settings)
    producer = new_producer(settings, "active-users-replay-dlq") if args.dead_letter else None
    try:
        dead_letters = DeadLetterQueue(producer, settings.kafka_dlq_topic) if producer is not None else None
        kafka_consumer = new_consumer(settings, "active-users-replay", group=False)
        try:
            result = replay(settings, kafka_consumer, writer, dead_letters, ConsumerMetrics(), stop)
        finally:
            kafka_consumer.close(autocommit=False)
    finally:
        if producer is not None:
            producer.close(timeout=10)
        redis.close()
    print(
        f"replay {'complete' if result.completed else 'interrupted'}: {result.records} records, "
        f"{result.stored} stored, {result.skipped} skipped, {result.dead_lettered} malformed, "
        f"{result.seconds:.1f} s",
        file=sys.stderr,
    )
    if result.undecodable is not None:
        print(f"replay stopped: {result.undecodable.reason()}", file=sys.stderr)
        return EXIT_UNDECODABLE
    return 0 if result.completed else 1
