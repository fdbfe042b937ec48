"""SLOWLOG around a benchmark's phases: the slowest single Redis command of each side, told apart by key prefix."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import redis
from baseline import Side


@dataclass
class SlowEntry:
    micros: int
    command: str


@contextmanager
def slowlog(client: redis.Redis, threshold_us: int) -> Iterator[None]:
    """SLOWLOG on at ``threshold_us`` for the block (the previous configuration restored afterwards)."""
    saved = client.config_get("slowlog-*")
    client.config_set("slowlog-log-slower-than", threshold_us)
    client.config_set("slowlog-max-len", 1_000_000)
    client.slowlog_reset()
    try:
        yield
    finally:
        for name, value in saved.items():
            client.config_set(name, value)


def slowest(client: redis.Redis, sides_: Sequence[Side]) -> dict[str, SlowEntry | None]:
    """The slowest logged command of each side since the last call (SLOWLOG read and reset)."""
    entries = client.execute_command("SLOWLOG", "GET", -1)
    client.slowlog_reset()
    found: dict[str, SlowEntry | None] = {side.label: None for side in sides_}
    for entry in entries:
        micros, args = int(entry[2]), [a.decode(errors="replace") if isinstance(a, bytes) else str(a) for a in entry[3]]
        for side in sides_:
            if any(a.startswith(side.settings.redis_key_prefix) for a in args):
                best = found[side.label]
                if best is None or micros > best.micros:
                    shown = " ".join(a if len(a) <= 60 else a[:57] + "..." for a in args[:4])
                    found[side.label] = SlowEntry(micros, shown + (" ..." if len(args) > 4 else ""))
    return found
