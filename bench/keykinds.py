"""Redis keys measured and grouped by kind: what the keys of one ``KeySchema`` method and one Redis type hold.

Every key under a prefix is measured with ``MEMORY USAGE key SAMPLES 0`` (exact: every element counted), ``TYPE``,
``OBJECT ENCODING``, its expiry and its size (``SCARD``, ``HLEN``, or ``STRLEN`` and ``BITCOUNT`` for bitmaps).
``bench/memory.py`` and ``bench/compare.py`` report these figures; ``bench/sizing.py`` models larger scales from them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

BATCH = 500
SIZE_COMMAND = {"set": "SCARD", "hash": "HLEN", "zset": "ZCARD", "list": "LLEN", "string": "STRLEN"}


@dataclass
class KindFigures:
    """What the keys of one kind (a KeySchema method) and one Redis type hold."""

    kind: str
    type: str
    bucketed: bool = False  # one key per user bucket (the KeySchema method takes a bucket)
    keys: int = 0
    elements: int = 0  # set members, hash fields, or bits set in bitmaps
    bytes: int = 0  # MEMORY USAGE
    payload: int = 0  # STRLEN of strings (the bitmap bytes themselves)
    encodings: Counter[str] = field(default_factory=Counter)
    days: set[str] = field(default_factory=set)
    retention: Counter[int] = field(default_factory=Counter)  # days kept after the key's day ends -> keys

    @property
    def ndays(self) -> int:
        return len(self.days)

    def encoding_text(self) -> str:
        return ", ".join(f"{name} x{count:,}" for name, count in self.encodings.most_common())


def day_end_s(day: str) -> int:
    """Epoch seconds at the end of a UTC day (the benchmarks store UTC days)."""
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return int(start.timestamp()) + 86_400


def classify(key: str, patterns: Sequence[tuple[str, re.Pattern[str]]]) -> tuple[str, str | None]:
    for name, pattern in patterns:
        match = pattern.fullmatch(key)
        if match:
            return name, match.groupdict().get("date")
    return "other", None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def measure_kinds(client: redis.Redis, prefix: str, schema_kinds: Sequence[dict[str, Any]]) -> list[KindFigures]:
    """Every key under ``prefix``, measured and grouped by (kind, type); kinds as ``treescript.py schema`` gives."""
    patterns = [(kind["name"], re.compile(kind["regex"])) for kind in schema_kinds]
    bucketed = {kind["name"] for kind in schema_kinds if kind.get("bucketed")}
    escaped = "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
    keys = [_text(k) for k in client.scan_iter(match=escaped + "*", count=1000)]
    found: dict[tuple[str, str], KindFigures] = {}
    for start in range(0, len(keys), BATCH):
        chunk = keys[start : start + BATCH]
        pipe = client.pipeline(transaction=False)
        for key in chunk:
            pipe.type(key)
            pipe.memory_usage(key, samples=0)
            pipe.object("encoding", key)
            pipe.execute_command("EXPIRETIME", key)
        first = pipe.execute()
        types = [_text(first[i]) for i in range(0, len(first), 4)]
        pipe = client.pipeline(transaction=False)
        for key, kind in zip(chunk, types, strict=True):
            pipe.execute_command(SIZE_COMMAND.get(kind, "EXISTS"), key)
            if kind == "string":
                pipe.bitcount(key)
        sizes = iter(pipe.execute())
        for i, (key, kind) in enumerate(zip(chunk, types, strict=True)):
            name, day = classify(key, patterns)
            figures = found.setdefault((name, kind), KindFigures(name, kind, name in bucketed))
            size = int(next(sizes))
            figures.keys += 1
            figures.bytes += int(first[4 * i + 1] or 0)
            figures.encodings[_text(first[4 * i + 2])] += 1
            if kind == "string":
                figures.payload += size
                figures.elements += int(next(sizes))
            else:
                figures.elements += size
            if day is not None:
                figures.days.add(day)
                expire_at = int(first[4 * i + 3])
                if expire_at > 0:
                    figures.retention[round((expire_at - day_end_s(day)) / 86_400)] += 1
    return sorted(found.values(), key=lambda f: (-f.bytes, f.kind))
