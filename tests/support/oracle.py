"""The oracle: the expected index content computed straight from the events with ``datetime`` (not with the
service's day math), so a bucketing bug cannot hide in both sides."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from activeusers.keys import KeySchema
from tests.support.events import Sent


def _ts_ms(value: Any) -> int:
    if isinstance(value, int):
        return value
    return round(datetime.fromisoformat(value).timestamp() * 1000)


@dataclass
class Activity:
    """The expected content of the buckets, by local day and (day, hour): what the consumer must have stored."""

    days: dict[date, set[str]] = field(default_factory=lambda: defaultdict(set))
    hours: dict[tuple[date, int], set[str]] = field(default_factory=lambda: defaultdict(set))
    created: dict[date, set[str]] = field(default_factory=lambda: defaultdict(set))


def activity(
    events: Iterable[dict[str, Any] | None],
    zone: ZoneInfo,
    now_ms: int,
    retention_days: int,
    hour_retention_days: int | None = None,
) -> Activity:
    """Expected buckets for the events (anonymous, unknown and expired ones left out; hour buckets also left out
    once ``hour_retention_days`` after their day, when given)."""
    expected = Activity()
    for event in events:
        if event is None or event["type"] not in {"login", "activity", "logout", "user.created"}:
            continue
        if event.get("roles") == ["anonymous"]:
            continue
        local = datetime.fromtimestamp(_ts_ms(event["ts"]) / 1000, tz=zone)
        day = local.date()
        following = day + timedelta(days=1)
        day_end = datetime(following.year, following.month, following.day, tzinfo=zone).timestamp()
        if (day_end + retention_days * 86_400) * 1000 <= now_ms:
            continue
        if event["type"] == "user.created":
            expected.created[day].add(event["userId"])
            continue
        expected.days[day].add(event["userId"])
        if hour_retention_days is None or (day_end + hour_retention_days * 86_400) * 1000 > now_ms:
            expected.hours[(day, local.hour)].add(event["userId"])
    return expected


def oracle(
    events: Iterable[dict[str, Any] | None],
    keys: KeySchema,
    zone: ZoneInfo,
    now_ms: int,
    retention_days: int,
) -> dict[str, set[str]]:
    """Expected index contents (as :func:`bucket_state` names them) for the events (anonymous, unknown and
    expired ones left out)."""
    found = activity(events, zone, now_ms, retention_days)
    return {
        **{index_label("day", day.isoformat()): users for day, users in found.days.items()},
        **{index_label("hour", f"{day.isoformat()}T{hour:02d}"): users for (day, hour), users in found.hours.items()},
        **{index_label("new", day.isoformat()): users for day, users in found.created.items()},
    }


def index_label(kind: str, when: str) -> str:
    """How :func:`bucket_state` names the users of one of the index's days, hours or creation days."""
    return f"index:{kind}:{when}"


def expected_buckets(
    sent: Iterable[Sent], prefix: str, zone: str, now_ms: int, retention_days: int
) -> dict[str, set[str]]:
    """The oracle for the records as sent, under ``prefix`` in ``zone``."""
    found = (s.event for s in sent)
    return oracle(found, KeySchema(prefix, zone), ZoneInfo(zone), now_ms, retention_days)
