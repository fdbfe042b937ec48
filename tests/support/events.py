"""Event streams for tests: reproducible records as a producer would send them, and the malformed samples."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Sent:
    """One record as produced: key, value bytes, and the event it encodes (None for malformed records)."""

    key: bytes | None
    value: bytes | None
    event: dict[str, Any] | None


def iso(ms: int) -> str:
    """JavaScript-style ISO form of an instant."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def generate(
    seed: int,
    count: int,
    now_ms: int,
    users: int = 300,
    days: int = 40,
    malformed_share: float = 0.0,
    avoid_days_ago: tuple[float, float] | None = None,
    also_avoid: tuple[tuple[float, float], ...] = (),
) -> list[Sent]:
    """A reproducible stream: logins/activity over ``days`` before ``now_ms``, some creations, anonymous users,
    unknown types, epoch-ms and offset timestamps, and optionally malformed records.

    ``avoid_days_ago`` keeps timestamps out of a band (in days before ``now_ms``), e.g. around the retention
    cut-off, where the consumer's clock and the oracle's could disagree by the seconds between them;
    ``also_avoid`` adds more such bands (another retention's cut-off)."""
    bands = ((avoid_days_ago,) if avoid_days_ago else ()) + also_avoid
    rng = random.Random(seed)
    sent: list[Sent] = []
    for i in range(count):
        if malformed_share and rng.random() < malformed_share:
            value = MALFORMED_SAMPLES[i % len(MALFORMED_SAMPLES)][1]
            sent.append(Sent(f"bad{i}".encode(), value, None))
            continue
        user = f"user{rng.randrange(users):05d}"
        ts = now_ms - rng.randrange(days * DAY_MS)
        while any(low * DAY_MS <= now_ms - ts <= high * DAY_MS for low, high in bands):
            ts = now_ms - rng.randrange(days * DAY_MS)
        kind = rng.choices(["login", "activity", "logout", "user.created", "message.sent"], [30, 50, 8, 5, 7])[0]
        event: dict[str, Any] = {"type": kind, "userId": user}
        form = rng.random()
        if form < 0.6:
            event["ts"] = iso(ts)
        elif form < 0.8:
            event["ts"] = ts
        else:
            moment = datetime.fromtimestamp(ts / 1000, tz=ZoneInfo("Asia/Kolkata"))
            event["ts"] = moment.isoformat(timespec="milliseconds")
        if rng.random() < 0.05:
            event["roles"] = ["anonymous"]
        elif rng.random() < 0.2:
            event["roles"] = ["user", "admin"] if rng.random() < 0.5 else ["bot"]
        sent.append(Sent(user.encode(), orjson.dumps(event), event))
    return sent


MALFORMED_SAMPLES: list[tuple[str, bytes | None]] = [
    ("empty", None),
    ("oversized", b'{"type":"login","userId":"u","ts":0,"pad":"' + b"x" * 20000 + b'"}'),
    ("not_json", b"{not json"),
    ("not_json", b"\xff\xfe\x00garbage"),
    ("not_object", b"[1,2,3]"),
    ("missing_type", b'{"userId":"u1","ts":"2024-01-01T00:00:00.000Z"}'),
    ("invalid_type", b'{"type":7,"userId":"u1","ts":"2024-01-01T00:00:00.000Z"}'),
    ("missing_user_id", b'{"type":"login","ts":"2024-01-01T00:00:00.000Z"}'),
    ("invalid_user_id", b'{"type":"login","userId":"","ts":"2024-01-01T00:00:00.000Z"}'),
    ("missing_ts", b'{"type":"login","userId":"u1"}'),
    ("invalid_ts", b'{"type":"login","userId":"u1","ts":"yesterday"}'),
    ("invalid_roles", b'{"type":"login","userId":"u1","ts":"2024-01-01T00:00:00.000Z","roles":"admin"}'),
    ("future_ts", b'{"type":"login","userId":"u1","ts":"2999-01-01T00:00:00.000Z"}'),
]
