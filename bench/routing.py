"""Routing benchmark: the cost of sending the writer's packed batches through ``transport.send_commands``.

Rows, all in one run against the same real Redis (and the real cluster when REDIS_CLUSTER_URL is set), the same
batches (SADDs of 50 members and EXPIREATs on day keys, BITFIELDs on bucket-tagged bitmaps), repetitions
interleaved so that both paths see the same machine:
- baseline: the writer's send before this change, inline: one write of the joined commands on one pooled
  connection, every reply read in order;
- send_commands, single Redis: the same through the shared function (the path every plain deployment takes);
- send_commands, cluster: grouped by the owner of each key's slot, one write per node (for scale only; three
  redis-server processes on the same two cores).

Usage: python bench/routing.py [--batches 200] [--commands 400] [--rounds 5] [--record]
Needs REDIS_URL (and REDIS_CLUSTER_URL for the cluster row): ``dev/stack up --cluster`` then
``set -a; . .stack/env``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import redis
from record import append_report

from activeusers.connections import Routed, SyncClient, pack_command, redis_client
from activeusers.settings import Settings
from activeusers.transport import send_commands


def batches(prefix: str, count: int, size: int) -> list[list[Routed]]:
    """``count`` batches of ``size`` commands, like the writer's: SADD + EXPIREAT on day keys, BITFIELD on bitmaps."""
    found: list[list[Routed]] = []
    for n in range(count):
        batch: list[Routed] = []
        for i in range(size // 3):
            day = f"{prefix}day:UTC:{n}-{i % 40}"
            bits = f"{prefix}{{64.{i % 64}}}:day:UTC:{n}"
            batch.append((day, pack_command(("SADD", day, *(f"u{i}-{m}" for m in range(50))))))
            batch.append((day, pack_command(("EXPIREAT", day, 4_000_000_000))))
            batch.append((bits, pack_command(("BITFIELD", bits, "SET", "u1", i, 1, "SET", "u1", i + 7, 1))))
        found.append(batch)
    return found


def baseline(client: redis.Redis, commands: Sequence[Routed]) -> None:
    """The writer's send before ``transport``: one write, replies read in order, the first refusal raised."""
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        connection.send_packed_command([b"".join(packed for _, packed in commands)])  # type: ignore[no-untyped-call]
        refused: list[redis.ResponseError] = []
        for _ in commands:
            try:
                connection.read_response()
            except redis.ResponseError as exc:
                refused.append(exc)
        if refused:
            raise refused[0]
    finally:
        pool.release(connection)


def timed(send: Callable[[Sequence[Routed]], Any], work: list[list[Routed]]) -> tuple[float, float]:
    """Wall time and this process's CPU time (the client's cost; Redis works in its own process), in
    microseconds per command."""
    commands = sum(len(batch) for batch in work)
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in work:
        send(batch)
    return (time.perf_counter() - wall) / commands * 1e6, (time.process_time() - cpu) / commands * 1e6


def wipe(client: SyncClient, prefix: str) -> None:
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--commands", type=int, default=400, help="commands per batch")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved repetitions (the median is reported)")
    parser.add_argument(
        "--record", action="store_true", help="append the table to the benchmark history (docs/benchmarks/)"
    )
    args = parser.parse_args()
    single = redis_client(Settings(redis_url=os.environ["REDIS_URL"]))
    assert isinstance(single, redis.Redis)
    cluster_url = os.environ.get("REDIS_CLUSTER_URL")
    cluster = redis_client(Settings(redis_url=cluster_url, redis_cluster=True)) if cluster_url else None
    prefix = f"bench-routing-{uuid.uuid4().hex[:8]}:"
    work = batches(prefix, args.batches, args.commands)
    rows: dict[str, list[tuple[float, float]]] = {"baseline": [], "send_commands, single Redis": []}
    if cluster is not None:
        rows["send_commands, cluster (3 masters)"] = []
    try:
        for _ in range(args.rounds):
            rows["baseline"].append(timed(lambda b: baseline(single, b), work))
            rows["send_commands, single Redis"].append(timed(lambda b: send_commands(single, b), work))
            if cluster is not None:
                rows["send_commands, cluster (3 masters)"].append(timed(lambda b: send_commands(cluster, b), work))
    finally:
        wipe(single, prefix)
        if cluster is not None:
            wipe(cluster, prefix)
    base_wall = statistics.median(wall for wall, _ in rows["baseline"])
    base_cpu = statistics.median(cpu for _, cpu in rows["baseline"])
    lines = [
        f"{args.batches} batches x {args.commands} commands, {args.rounds} interleaved rounds, medians",
        "",
        "| path | wall us/command | ratio | client CPU us/command | ratio |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, values in rows.items():
        wall = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        lines.append(f"| {label} | {wall:.2f} | {wall / base_wall:.2f} | {cpu:.2f} | {cpu / base_cpu:.2f} |")
    report = "\n".join(lines)
    print(report)
    if args.record:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        command = f"python bench/routing.py --batches {args.batches} --commands {args.commands} --rounds {args.rounds}"
        append_report(f"## {stamp}: `{command}`\n\n{report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
