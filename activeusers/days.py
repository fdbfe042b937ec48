"""Calendar-day and hour arithmetic in a configured time zone.

Every function is pure: instants are explicit parameters (epoch milliseconds or aware datetimes), nothing reads
the clock. Days are local calendar days of the zone, so a DST day has 23 or 25 hours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo

# The lengths every module measures time in (a local day can still have 23 or 25 hours: these are UTC's).
HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000
DAY_S: Final = 86_400
WEEK_DAYS: Final = 7
# All zone offsets in use since 1972 are multiples of 15 minutes, so a local day or hour boundary can only fall
# on a 15-minute slot edge; a slot is cached only when both of its ends agree, which keeps the cache exact for
# historical odd offsets too.
_SLOT_MS = 900_000


def local_datetime(epoch_ms: int, zone: ZoneInfo) -> datetime:
    """The aware local datetime of an instant in ``zone``."""
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).astimezone(zone)


def day_of(epoch_ms: int, zone: ZoneInfo) -> date:
    """The local calendar day that contains the instant."""
    return local_datetime(epoch_ms, zone).date()


# Every API request clips its range to the retention window, which costs several day starts; they are pure and
# few distinct ones are asked for (around today), so they are remembered.
@lru_cache(maxsize=4096)
def day_start_ms(day: date, zone: ZoneInfo) -> int:
    """The instant (epoch ms) at which ``day`` begins in ``zone``.

    When midnight does not exist (a DST jump at 00:00), the day begins at the first instant after the gap.
    """
    naive = datetime(day.year, day.month, day.day)
    aware = naive.replace(tzinfo=zone)
    instant = aware.astimezone(UTC)
    # A non-existent wall time maps forward or backward depending on fold; the day begins at the earlier
    # of the two mappings that still falls on ``day`` locally.
    other = aware.replace(fold=1).astimezone(UTC)
    candidates = [t for t in (instant, other) if t.astimezone(zone).date() == day]
    chosen = min(candidates) if candidates else max(instant, other)
    return int(chosen.timestamp() * 1000)


def day_end_ms(day: date, zone: ZoneInfo) -> int:
    """The instant (epoch ms) at which the day after ``day`` begins (exclusive end of ``day``)."""
    return day_start_ms(day + timedelta(days=1), zone)


def days_between(first: date, last: date) -> list[date]:
    """All days from ``first`` to ``last`` inclusive, oldest first; empty when ``last`` is before ``first``."""
    return list(_days_between(first, last))


# Every API request lists the days of its range (and of the windows before it), mostly the same few ranges
# ending today: building 60 dates costs more than the rest of a cached summary's own work.
@lru_cache(maxsize=1024)
def _days_between(first: date, last: date) -> tuple[date, ...]:
    start = first.toordinal()
    return tuple(map(date.fromordinal, range(start, last.toordinal() + 1)))


def day_expiry_s(day: date, zone: ZoneInfo, retention_days: int) -> int:
    """Epoch seconds at which the data of ``day`` expires: ``retention_days`` after the day ends."""
    return day_end_ms(day, zone) // 1000 + retention_days * DAY_S


def retained_days(now_ms: int, zone: ZoneInfo, retention_days: int) -> tuple[date, date]:
    """The oldest and newest day that can still hold data at ``now_ms``.

    A day is retained until ``retention_days`` after it ends; the newest day is today (nothing is stored for
    the future beyond the accepted clock skew, which never reaches past tomorrow's first minutes; tomorrow is
    included so that skewed events stay visible).
    """
    # Every API request asks this (twice for a summary) and the answer changes only when a day begins or the
    # oldest day expires: the last answer is kept with the instants between which it holds.
    kept = _RETAINED.get((zone, retention_days))
    if kept is not None and kept[0] <= now_ms < kept[1]:
        return kept[2]
    today = day_of(now_ms, zone)
    # Expiry adds ``retention_days`` * 24 h to the end of a local day, so after a DST change the day before
    # ``today - retention_days`` can still be alive for up to an hour: start two days earlier and move forward.
    oldest = today - timedelta(days=retention_days + 2)
    while day_expiry_s(oldest, zone, retention_days) * 1000 <= now_ms:
        oldest += timedelta(days=1)
    found = (oldest, today + timedelta(days=1))
    # Valid from the later of today's start and the instant the day before ``oldest`` expired (when that is
    # known: the walk above began at it) until the earlier of tomorrow's start and ``oldest``'s expiry.
    since = day_start_ms(today, zone)
    if oldest > today - timedelta(days=retention_days + 2):
        since = max(since, day_expiry_s(oldest - timedelta(days=1), zone, retention_days) * 1000)
    until = min(day_end_ms(today, zone), day_expiry_s(oldest, zone, retention_days) * 1000)
    if len(_RETAINED) >= _RETAINED_KEYS:
        _RETAINED.clear()
    _RETAINED[(zone, retention_days)] = (since, until, found)
    return found


_RETAINED: dict[tuple[ZoneInfo, int], tuple[int, int, tuple[date, date]]] = {}
_RETAINED_KEYS = 64


def clip_days(first: date, last: date, now_ms: int, zone: ZoneInfo, retention_days: int) -> list[date]:
    """The days of ``first..last`` (inclusive) that can hold data at ``now_ms``, oldest first."""
    oldest, newest = retained_days(now_ms, zone, retention_days)
    return days_between(max(first, oldest), min(last, newest))


class LocalHours:
    """Maps instants to (local day, local hour) in one zone, memoised per 15-minute slot.

    Ingest asks this for every event, and ``astimezone`` is slow next to the dict lookup the memo makes of it.
    """

    __slots__ = ("_cache", "zone")

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._cache: dict[int, tuple[date, int]] = {}

    def hour_of(self, epoch_ms: int) -> tuple[date, int]:
        """The local calendar day and hour (0-23) that contain the instant."""
        slot = epoch_ms // _SLOT_MS
        hit = self._cache.get(slot)
        if hit is not None:
            return hit
        first = local_datetime(slot * _SLOT_MS, self.zone)
        last = local_datetime(slot * _SLOT_MS + _SLOT_MS - 1, self.zone)
        if (first.date(), first.hour) != (last.date(), last.hour):
            here = local_datetime(epoch_ms, self.zone)
            return here.date(), here.hour
        value = (first.date(), first.hour)
        if len(self._cache) > 200_000:
            self._cache.clear()
        self._cache[slot] = value
        return value


@dataclass(frozen=True, slots=True)
class HourSpan:
    """One local hour of a day: its hour label (0-23) and the instants it covers, ``[start_ms, end_ms)``.

    A repeated DST hour is one span covering both occurrences (two real hours); a skipped one has no span. The
    span starts at the first instant carrying its label.
    """

    day: date
    hour: int
    start_ms: int
    end_ms: int


# The API walks the local hours of up to the hour-retention window per request; a day's spans are pure, so the
# few days around today are computed once.
@lru_cache(maxsize=4096)
def hour_spans(day: date, zone: ZoneInfo) -> tuple[HourSpan, ...]:
    """The local hours of ``day`` in ``zone``, oldest first (23 on a spring-forward day, 24 otherwise)."""
    start, end = day_start_ms(day, zone), day_end_ms(day, zone)
    if end - start == DAY_MS and local_datetime(start, zone).utcoffset() == local_datetime(end - 1, zone).utcoffset():
        return tuple(HourSpan(day, h, start + h * HOUR_MS, start + (h + 1) * HOUR_MS) for h in range(24))
    # A day with a transition: walk its 15-minute slots (every offset in use is a multiple of 15 minutes) and give
    # each local hour label the slots that carry it, as the consumer's :class:`LocalHours` does. A label met again
    # after others (a clock turned back by more than an hour) extends its one span to its last slot.
    bounds: dict[int, list[int]] = {}
    for slot in range(start, end, _SLOT_MS):
        hour = local_datetime(slot, zone).hour
        found = bounds.setdefault(hour, [slot, slot])
        found[1] = slot + _SLOT_MS
    return tuple(HourSpan(day, hour, first, last) for hour, (first, last) in bounds.items())


def hours_overlapping(days: Sequence[date], start_ms: int, end_ms: int, zone: ZoneInfo) -> list[HourSpan]:
    """The local hours of ``days`` that overlap the closed interval ``[start_ms, end_ms]``, oldest first."""
    return [
        span for day in days for span in hour_spans(day, zone) if span.start_ms <= end_ms and span.end_ms > start_ms
    ]


def hours_starting_in(days: Sequence[date], after_ms: int, until_ms: int, zone: ZoneInfo) -> list[HourSpan]:
    """The local hours of ``days`` whose start instant lies in ``(after_ms, until_ms]``, oldest first."""
    return [span for day in days for span in hour_spans(day, zone) if after_ms < span.start_ms <= until_ms]


def moment_day_diff(start_ms: int, end_ms: int, zone: ZoneInfo) -> int:
    """Whole days from ``start_ms`` to ``end_ms`` in ``zone``, truncated toward zero, like moment's
    ``end.diff(start, 'days')``: the change of the zone's offset between the two instants is added first, so
    that a 23- or 25-hour DST day counts as one day."""
    elapsed = end_ms - start_ms + utc_offset_ms(end_ms, zone) - utc_offset_ms(start_ms, zone)
    whole = abs(elapsed) // DAY_MS
    return whole if elapsed >= 0 else -whole


# datetime cannot hold instants within a day of its year-1 and year-9999 limits in every zone.
_FIRST_LOCAL_MS: Final = -62_135_510_400_000  # 0001-01-02T00:00:00.000Z
_LAST_LOCAL_MS: Final = 253_402_041_600_000  # 9999-12-29T00:00:00.000Z


def representable(epoch_ms: int) -> int:
    """The instant held just inside the range whose local datetime every zone can express (years 1-9999, less a
    day at each end). Instants moved are far outside any retention window and share the zone's earliest or
    latest offset, so a day or an offset computed from the moved instant changes no answer."""
    return min(max(epoch_ms, _FIRST_LOCAL_MS), _LAST_LOCAL_MS)


def utc_offset_ms(epoch_ms: int, zone: ZoneInfo) -> int:
    """The zone's UTC offset at the instant, in milliseconds (east positive), for any instant."""
    offset = local_datetime(representable(epoch_ms), zone).utcoffset()
    return 0 if offset is None else int(offset.total_seconds() * 1000)


def days_before(day: date, count: int) -> date:
    """The day ``count`` days before ``day`` (after it when negative), held inside the calendar's limits."""
    earliest, latest = (day - date.min).days, (date.max - day).days
    return day - timedelta(days=min(max(count, -latest), earliest))
