"""Day, hour and retention arithmetic of :mod:`activeusers.days` (pure functions, explicit instants)."""

from __future__ import annotations

import functools
import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from activeusers.days import (
    _RETAINED,
    LocalHours,
    clip_days,
    day_end_ms,
    day_expiry_s,
    day_of,
    day_start_ms,
    days_before,
    days_between,
    hour_spans,
    hours_overlapping,
    hours_starting_in,
    local_datetime,
    moment_day_diff,
    retained_days,
    utc_offset_ms,
)

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
SLOT_MS = 900_000
MIN_MS = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp() * 1000)
MAX_MS = int(datetime(2040, 1, 1, tzinfo=UTC).timestamp() * 1000)

# Zones with something to get wrong: DST on both hemispheres, 30-minute DST, DST at local midnight, half- and
# quarter-hour offsets, the extremes of the offset range, and zones that changed their base offset or skipped days.
INTERESTING_ZONES = (
    "UTC",
    "America/New_York",
    "America/St_Johns",
    "America/Santiago",
    "America/Havana",
    "America/Asuncion",
    "America/Godthab",
    "Asia/Beirut",
    "Asia/Gaza",
    "Asia/Tehran",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Pyongyang",
    "Australia/Lord_Howe",
    "Australia/Adelaide",
    "Australia/Eucla",
    "Africa/Casablanca",
    "Europe/Berlin",
    "Europe/London",
    "Europe/Moscow",
    "Pacific/Apia",
    "Pacific/Chatham",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "Antarctica/Troll",
)
# Fixed offsets over 2000..2040: no transition to test around.
STEADY_ZONES = frozenset({"UTC", "Asia/Kolkata", "Asia/Kathmandu", "Pacific/Kiritimati", "Pacific/Pago_Pago"})
CHANGING_ZONES = tuple(z for z in INTERESTING_ZONES if z not in STEADY_ZONES)
ALL_ZONES = tuple(sorted(available_timezones()))


def ms(text: str) -> int:
    """Epoch ms of an ISO-8601 instant with an explicit offset."""
    parsed = datetime.fromisoformat(text)
    assert parsed.tzinfo is not None
    return int(parsed.timestamp() * 1000)


def offset_at(epoch_ms: int, zone: ZoneInfo) -> timedelta | None:
    return local_datetime(epoch_ms, zone).utcoffset()


@functools.cache
def transitions(zone_name: str) -> tuple[int, ...]:
    """Every instant (ms) between 2000 and 2040 at which the zone's UTC offset changes, found by scanning
    day by day and bisecting to the millisecond; independent of the code under test's slot logic."""
    zone = ZoneInfo(zone_name)
    found: list[int] = []
    previous_ms = MIN_MS
    previous = offset_at(previous_ms, zone)
    for t in range(MIN_MS + DAY_MS, MAX_MS + 1, DAY_MS):
        current = offset_at(t, zone)
        if current != previous:
            lo, hi = previous_ms, t  # offset(lo) == previous, offset(hi) != previous
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if offset_at(mid, zone) == previous:
                    lo = mid
                else:
                    hi = mid
            found.append(hi)
        previous_ms, previous = t, current
    return tuple(found)


def expected_hour(epoch_ms: int, zone: ZoneInfo) -> tuple[date, int]:
    here = datetime.fromtimestamp(epoch_ms // 1000, tz=UTC).replace(microsecond=(epoch_ms % 1000) * 1000)
    local = here.astimezone(zone)
    return local.date(), local.hour


# --------------------------------------------------------------------------------------------------- local_datetime


@pytest.mark.parametrize(
    ("epoch_ms", "zone", "expected"),
    [
        (0, "UTC", "1970-01-01T00:00:00+00:00"),
        (1_234_567_890_123, "UTC", "2009-02-13T23:31:30.123000+00:00"),
        (1_234_567_890_123, "Asia/Kathmandu", "2009-02-14T05:16:30.123000+05:45"),
        (ms("2024-03-10T07:00:00Z"), "America/New_York", "2024-03-10T03:00:00-04:00"),
        (ms("2024-03-10T07:00:00Z") - 1, "America/New_York", "2024-03-10T01:59:59.999000-05:00"),
    ],
)
def test_local_datetime_is_the_aware_local_time(epoch_ms: int, zone: str, expected: str) -> None:
    got = local_datetime(epoch_ms, ZoneInfo(zone))
    assert got.isoformat() == expected
    assert got.tzinfo is not None


# ----------------------------------------------------------------------------------------------------------- day_of


@pytest.mark.parametrize(
    ("instant", "zone", "expected"),
    [
        # month, year and leap-day boundaries in UTC, to the millisecond
        ("2024-01-31T23:59:59.999Z", "UTC", date(2024, 1, 31)),
        ("2024-02-01T00:00:00.000Z", "UTC", date(2024, 2, 1)),
        ("2023-12-31T23:59:59.999Z", "UTC", date(2023, 12, 31)),
        ("2024-01-01T00:00:00.000Z", "UTC", date(2024, 1, 1)),
        ("2024-02-29T00:00:00.000Z", "UTC", date(2024, 2, 29)),
        ("2024-02-29T23:59:59.999Z", "UTC", date(2024, 2, 29)),
        ("2024-03-01T00:00:00.000Z", "UTC", date(2024, 3, 1)),
        ("2000-02-29T12:00:00Z", "UTC", date(2000, 2, 29)),
        ("2023-02-28T23:59:59.999Z", "UTC", date(2023, 2, 28)),
        ("2023-03-01T00:00:00Z", "UTC", date(2023, 3, 1)),
        # one instant, three different local days
        ("2024-12-31T10:00:00Z", "Pacific/Kiritimati", date(2025, 1, 1)),
        ("2024-12-31T10:00:00Z", "UTC", date(2024, 12, 31)),
        ("2024-12-31T10:00:00Z", "Pacific/Pago_Pago", date(2024, 12, 30)),
        ("2024-12-31T09:59:59.999Z", "Pacific/Kiritimati", date(2024, 12, 31)),
        ("2025-01-01T10:59:59.999Z", "Pacific/Pago_Pago", date(2024, 12, 31)),
        ("2025-01-01T11:00:00Z", "Pacific/Pago_Pago", date(2025, 1, 1)),
        # quarter- and half-hour offsets
        ("2023-12-31T18:29:59.999Z", "Asia/Kolkata", date(2023, 12, 31)),
        ("2023-12-31T18:30:00Z", "Asia/Kolkata", date(2024, 1, 1)),
        ("2023-12-31T18:14:59.999Z", "Asia/Kathmandu", date(2023, 12, 31)),
        ("2023-12-31T18:15:00Z", "Asia/Kathmandu", date(2024, 1, 1)),
        # leap day in a zone ahead of UTC
        ("2024-02-28T23:00:00Z", "Europe/Berlin", date(2024, 2, 29)),
        ("2024-02-29T23:00:00Z", "Europe/Berlin", date(2024, 3, 1)),
        # the repeated hour of a midnight fall-back still belongs to the old day
        ("2024-04-07T03:30:00Z", "America/Santiago", date(2024, 4, 6)),
        ("2024-04-07T04:00:00Z", "America/Santiago", date(2024, 4, 7)),
    ],
)
def test_day_of(instant: str, zone: str, expected: date) -> None:
    assert day_of(ms(instant), ZoneInfo(zone)) == expected


# ------------------------------------------------------------------------------------------- day_start / day_end


@pytest.mark.parametrize(
    ("zone", "day", "start_utc", "hours"),
    [
        ("UTC", date(2024, 1, 1), "2024-01-01T00:00:00Z", 24),
        ("UTC", date(2024, 2, 29), "2024-02-29T00:00:00Z", 24),
        ("UTC", date(2000, 2, 29), "2000-02-29T00:00:00Z", 24),
        ("America/New_York", date(2024, 7, 1), "2024-07-01T04:00:00Z", 24),
        ("America/New_York", date(2024, 3, 10), "2024-03-10T05:00:00Z", 23),  # spring forward
        ("America/New_York", date(2024, 11, 3), "2024-11-03T04:00:00Z", 25),  # fall back
        ("America/New_York", date(2023, 3, 12), "2023-03-12T05:00:00Z", 23),
        ("America/New_York", date(2023, 11, 5), "2023-11-05T04:00:00Z", 25),
        ("Europe/Berlin", date(2024, 3, 31), "2024-03-30T23:00:00Z", 23),
        ("Europe/Berlin", date(2024, 10, 27), "2024-10-26T22:00:00Z", 25),
        ("Europe/Berlin", date(2024, 10, 28), "2024-10-27T23:00:00Z", 24),
        ("Australia/Lord_Howe", date(2024, 4, 7), "2024-04-06T13:00:00Z", 24.5),  # 30-minute fall back
        ("Australia/Lord_Howe", date(2024, 10, 6), "2024-10-05T13:30:00Z", 23.5),  # 30-minute spring forward
        # DST at local midnight: 00:00 does not exist, the day begins at 01:00
        ("America/Santiago", date(2024, 9, 8), "2024-09-08T04:00:00Z", 23),
        ("America/Santiago", date(2024, 4, 6), "2024-04-06T03:00:00Z", 25),  # 23:00 repeats at its end
        ("America/Santiago", date(2024, 4, 7), "2024-04-07T04:00:00Z", 24),
        ("America/Havana", date(2024, 3, 10), "2024-03-10T05:00:00Z", 23),
        ("America/Havana", date(2024, 11, 3), "2024-11-03T04:00:00Z", 25),  # 00:00 occurs twice: first one
        ("Asia/Beirut", date(2024, 3, 31), "2024-03-30T22:00:00Z", 23),
        ("Asia/Beirut", date(2024, 10, 26), "2024-10-25T21:00:00Z", 25),
        ("Asia/Beirut", date(2024, 10, 27), "2024-10-26T22:00:00Z", 24),
        ("Asia/Kolkata", date(2024, 1, 1), "2023-12-31T18:30:00Z", 24),
        ("Asia/Kathmandu", date(2024, 1, 1), "2023-12-31T18:15:00Z", 24),
        ("Pacific/Kiritimati", date(2025, 1, 1), "2024-12-31T10:00:00Z", 24),
        ("Pacific/Pago_Pago", date(2025, 1, 1), "2025-01-01T11:00:00Z", 24),
        # Samoa skipped 2011-12-30 entirely: an empty day, ending where it begins
        ("Pacific/Apia", date(2011, 12, 29), "2011-12-29T10:00:00Z", 24),
        ("Pacific/Apia", date(2011, 12, 30), "2011-12-30T10:00:00Z", 0),
        ("Pacific/Apia", date(2011, 12, 31), "2011-12-30T10:00:00Z", 24),
    ],
)
def test_day_bounds(zone: str, day: date, start_utc: str, hours: float) -> None:
    tz = ZoneInfo(zone)
    start = day_start_ms(day, tz)
    end = day_end_ms(day, tz)
    assert start == ms(start_utc)
    assert end - start == hours * HOUR_MS
    assert end == day_start_ms(day + timedelta(days=1), tz)
    if hours:
        assert day_of(start, tz) == day
        assert day_of(end - 1, tz) == day
        assert day_of(start - 1, tz) < day
    assert day_of(end, tz) > day


@pytest.mark.parametrize("zone", INTERESTING_ZONES)
def test_day_start_is_the_first_millisecond_of_the_local_day_all_year(zone: str) -> None:
    tz = ZoneInfo(zone)
    day = date(2024, 1, 1)
    while day.year == 2024:
        start = day_start_ms(day, tz)
        assert day_of(start, tz) == day, day
        assert day_of(start - 1, tz) == day - timedelta(days=1), day
        assert 22 * HOUR_MS <= day_end_ms(day, tz) - start <= 26 * HOUR_MS, day
        day += timedelta(days=1)


def test_a_fall_back_across_midnight_returns_to_the_previous_day() -> None:
    # St. John's fell back at 00:01 NDT on 2000-10-29 to 23:01 NST on the 28th: local days are not contiguous
    # there, so an instant after day_end_ms(28th) still belongs to the 28th.
    tz = ZoneInfo("America/St_Johns")
    end_28 = day_end_ms(date(2000, 10, 28), tz)
    assert end_28 == ms("2000-10-29T00:00:00-02:30")
    assert day_of(end_28, tz) == date(2000, 10, 29)
    assert day_of(ms("2000-10-29T00:01:00-02:30"), tz) == date(2000, 10, 28)
    assert LocalHours(tz).hour_of(ms("2000-10-29T00:01:00-02:30")) == (date(2000, 10, 28), 23)
    assert day_end_ms(date(2000, 10, 29), tz) - end_28 == 25 * HOUR_MS


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"])
def test_a_year_of_days_covers_exactly_the_year(zone: str) -> None:
    tz = ZoneInfo(zone)
    days = days_between(date(2024, 1, 1), date(2024, 12, 31))
    total = sum(day_end_ms(d, tz) - day_start_ms(d, tz) for d in days)
    assert total == 366 * DAY_MS  # DST gains and losses cancel over a calendar year


# ----------------------------------------------------------------------------------------------------- days_between


@pytest.mark.parametrize(
    ("first", "last", "count", "contains"),
    [
        (date(2024, 2, 28), date(2024, 3, 1), 3, date(2024, 2, 29)),
        (date(2000, 2, 28), date(2000, 3, 1), 3, date(2000, 2, 29)),
        (date(1900, 2, 28), date(1900, 3, 1), 2, date(1900, 3, 1)),  # 1900 is not a leap year
        (date(2023, 12, 30), date(2024, 1, 2), 4, date(2024, 1, 1)),
        (date(2024, 1, 1), date(2024, 12, 31), 366, date(2024, 12, 31)),
        (date(2023, 1, 1), date(2023, 12, 31), 365, date(2023, 1, 1)),
        (date(2024, 5, 5), date(2024, 5, 5), 1, date(2024, 5, 5)),
    ],
)
def test_days_between(first: date, last: date, count: int, contains: date) -> None:
    days = days_between(first, last)
    assert len(days) == count
    assert days[0] == first
    assert days[-1] == last
    assert contains in days
    assert all(b - a == timedelta(days=1) for a, b in itertools.pairwise(days))


def test_1900_has_no_leap_day() -> None:
    with pytest.raises(ValueError, match="day is out of range"):
        date(1900, 2, 29)
    assert date(1900, 2, 28) + timedelta(days=1) == date(1900, 3, 1)


@pytest.mark.parametrize(("first", "last"), [(date(2024, 1, 2), date(2024, 1, 1)), (date(9999, 12, 31), date(1, 1, 1))])
def test_days_between_reversed_is_empty(first: date, last: date) -> None:
    assert days_between(first, last) == []


# ----------------------------------------------------------------------------------------------------- day_expiry_s


@pytest.mark.parametrize(
    ("zone", "day", "retention", "expected_utc"),
    [
        ("UTC", date(2024, 1, 1), 1, "2024-01-03T00:00:00Z"),
        ("UTC", date(2024, 2, 28), 1, "2024-03-01T00:00:00Z"),
        ("UTC", date(2023, 2, 28), 1, "2023-03-02T00:00:00Z"),
        ("UTC", date(2024, 1, 1), 400, "2025-02-05T00:00:00Z"),
        ("America/New_York", date(2024, 3, 10), 1, "2024-03-12T04:00:00Z"),
        ("America/New_York", date(2024, 11, 3), 1, "2024-11-05T05:00:00Z"),
        ("Asia/Kathmandu", date(2024, 1, 1), 90, "2024-03-31T18:15:00Z"),
        ("Pacific/Kiritimati", date(2025, 1, 1), 2, "2025-01-03T10:00:00Z"),
    ],
)
def test_day_expiry_s(zone: str, day: date, retention: int, expected_utc: str) -> None:
    tz = ZoneInfo(zone)
    got = day_expiry_s(day, tz, retention)
    assert isinstance(got, int)
    assert got == ms(expected_utc) // 1000
    assert got == day_end_ms(day, tz) // 1000 + retention * 86_400


def test_day_expiry_grows_with_the_day_and_the_retention() -> None:
    tz = ZoneInfo("Europe/Berlin")
    days = days_between(date(2024, 3, 25), date(2024, 11, 5))
    expiries = [day_expiry_s(d, tz, 30) for d in days]
    assert expiries == sorted(expiries)
    assert len(set(expiries)) == len(expiries)
    assert day_expiry_s(date(2024, 6, 1), tz, 31) - day_expiry_s(date(2024, 6, 1), tz, 30) == 86_400


# -------------------------------------------------------------------------------------------- retained / clip_days


@pytest.mark.parametrize("retention", [1, 7, 90, 400])
@pytest.mark.parametrize("clock", ["2024-06-15T00:00:00Z", "2024-06-15T12:00:00Z", "2024-06-15T23:59:59.999Z"])
def test_retained_days_in_utc(retention: int, clock: str) -> None:
    oldest, newest = retained_days(ms(clock), ZoneInfo("UTC"), retention)
    assert oldest == date(2024, 6, 15) - timedelta(days=retention)
    assert newest == date(2024, 6, 16)


def test_retained_days_drops_a_day_the_instant_it_expires() -> None:
    tz = ZoneInfo("UTC")
    expiry_ms = day_expiry_s(date(2024, 6, 1), tz, 10) * 1000
    assert retained_days(expiry_ms - 1, tz, 10)[0] == date(2024, 6, 1)
    assert retained_days(expiry_ms, tz, 10)[0] == date(2024, 6, 2)


def test_retained_days_keeps_a_day_alive_for_the_hour_dst_gave_it() -> None:
    # Regression: 2024-03-09 (New York, retention 1) expires at 2024-03-11T05:00Z, 24 h after its end; the
    # 23-hour day in between means that is 01:00 EDT on the 11th. At 00:30 EDT its key still exists.
    tz = ZoneInfo("America/New_York")
    now = ms("2024-03-11T00:30:00-04:00")
    assert day_expiry_s(date(2024, 3, 9), tz, 1) * 1000 > now
    assert retained_days(now, tz, 1) == (date(2024, 3, 9), date(2024, 3, 12))
    assert retained_days(ms("2024-03-11T01:00:00-04:00"), tz, 1)[0] == date(2024, 3, 10)


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(INTERESTING_ZONES),
    now_ms=st.integers(MIN_MS, MAX_MS),
    retention=st.integers(1, 500),
)
@example(zone="America/New_York", now_ms=1_710_131_400_000, retention=1)  # 2024-03-11T00:30-04:00
@example(zone="Europe/Berlin", now_ms=1_729_980_000_000, retention=3)  # 2024-10-27T00:00+02:00
def test_retained_days_is_exactly_the_days_whose_keys_have_not_expired(zone: str, now_ms: int, retention: int) -> None:
    tz = ZoneInfo(zone)
    oldest, newest = retained_days(now_ms, tz, retention)
    assert day_expiry_s(oldest, tz, retention) * 1000 > now_ms
    assert day_expiry_s(oldest - timedelta(days=1), tz, retention) * 1000 <= now_ms
    assert newest == day_of(now_ms, tz) + timedelta(days=1)
    assert oldest <= day_of(now_ms, tz)


@settings(max_examples=200, deadline=None)
@given(
    zone=st.sampled_from(INTERESTING_ZONES),
    start_ms=st.integers(MIN_MS, MAX_MS),
    steps=st.lists(st.integers(-2 * 86_400_000, 2 * 86_400_000), min_size=1, max_size=30),
    retention=st.integers(1, 40),
)
@example(zone="America/New_York", start_ms=1_710_131_400_000, steps=[-1, 1, 3_600_000, -3_600_000], retention=1)
def test_retained_days_kept_between_calls_equals_the_answer_made_afresh(
    zone: str, start_ms: int, steps: list[int], retention: int
) -> None:
    # The window is kept with the instants between which it holds: however the clock moves (forward, back, across
    # a midnight, an expiry or a DST change), the kept answer is the one computed anew.
    tz = ZoneInfo(zone)
    now = start_ms
    for step in steps:
        now = min(max(now + step, MIN_MS), MAX_MS)
        kept = retained_days(now, tz, retention)
        _RETAINED.clear()
        assert kept == retained_days(now, tz, retention)
        # A neighbouring instant, with the answer of ``now`` kept.
        assert retained_days(now + 1, tz, retention) == _fresh(now + 1, tz, retention)


def _fresh(now_ms: int, tz: ZoneInfo, retention: int) -> tuple[date, date]:
    _RETAINED.clear()
    return retained_days(now_ms, tz, retention)


def test_clip_days_clips_a_huge_range_to_the_retention_window() -> None:
    tz = ZoneInfo("UTC")
    now = ms("2024-06-15T12:00:00Z")
    days = clip_days(date(1, 1, 1), date(9999, 12, 31), now, tz, 30)
    assert days == days_between(date(2024, 5, 16), date(2024, 6, 16))
    assert len(days) == 32  # 30 past days, today and tomorrow


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        (date(2024, 6, 1), date(2024, 6, 3), (date(2024, 6, 1), date(2024, 6, 3))),
        (date(2024, 5, 1), date(2024, 5, 20), (date(2024, 5, 16), date(2024, 5, 20))),
        (date(2024, 6, 10), date(2025, 1, 1), (date(2024, 6, 10), date(2024, 6, 16))),
        (date(2024, 6, 16), date(2024, 6, 16), (date(2024, 6, 16), date(2024, 6, 16))),
    ],
)
def test_clip_days_partial_overlap(first: date, last: date, expected: tuple[date, date]) -> None:
    days = clip_days(first, last, ms("2024-06-15T12:00:00Z"), ZoneInfo("UTC"), 30)
    assert days == days_between(*expected)


@pytest.mark.parametrize(
    ("first", "last"),
    [
        (date(2024, 6, 10), date(2024, 6, 1)),  # reversed
        (date(9999, 12, 31), date(1, 1, 1)),  # reversed and huge
        (date(2020, 1, 1), date(2024, 5, 15)),  # entirely expired
        (date(2024, 6, 17), date(2030, 1, 1)),  # entirely after tomorrow
    ],
)
def test_clip_days_empty(first: date, last: date) -> None:
    assert clip_days(first, last, ms("2024-06-15T12:00:00Z"), ZoneInfo("UTC"), 30) == []


def test_clip_days_uses_the_local_day_of_the_zone() -> None:
    now = ms("2024-12-31T10:00:00Z")  # already 2025-01-01 in Kiritimati, still 2024-12-30 in Pago Pago
    assert clip_days(date(2024, 12, 1), date(2025, 12, 31), now, ZoneInfo("Pacific/Kiritimati"), 1)[-1] == date(
        2025, 1, 2
    )
    assert clip_days(date(2024, 12, 1), date(2025, 12, 31), now, ZoneInfo("Pacific/Pago_Pago"), 1)[-1] == date(
        2024, 12, 31
    )


# ------------------------------------------------------------------------------------------------------- LocalHours


@pytest.mark.parametrize(
    ("zone", "instant", "expected"),
    [
        ("UTC", "2024-02-29T23:59:59.999Z", (date(2024, 2, 29), 23)),
        ("UTC", "2024-03-01T00:00:00Z", (date(2024, 3, 1), 0)),
        ("Asia/Kolkata", "2023-12-31T18:29:59.999Z", (date(2023, 12, 31), 23)),
        ("Asia/Kolkata", "2023-12-31T18:30:00Z", (date(2024, 1, 1), 0)),
        ("Asia/Kolkata", "2024-01-01T05:59:59.999Z", (date(2024, 1, 1), 11)),
        ("Asia/Kolkata", "2024-01-01T06:00:00Z", (date(2024, 1, 1), 11)),
        ("Asia/Kolkata", "2024-01-01T06:30:00Z", (date(2024, 1, 1), 12)),
        ("Asia/Kathmandu", "2023-12-31T18:14:59.999Z", (date(2023, 12, 31), 23)),
        ("Asia/Kathmandu", "2023-12-31T18:15:00Z", (date(2024, 1, 1), 0)),
        ("Asia/Kathmandu", "2024-01-01T06:14:59.999Z", (date(2024, 1, 1), 11)),
        ("Asia/Kathmandu", "2024-01-01T06:15:00Z", (date(2024, 1, 1), 12)),
        ("America/New_York", "2024-03-10T06:59:59.999Z", (date(2024, 3, 10), 1)),
        ("America/New_York", "2024-03-10T07:00:00Z", (date(2024, 3, 10), 3)),  # 02:xx never happens
        ("America/New_York", "2024-11-03T05:30:00Z", (date(2024, 11, 3), 1)),  # first 01:30
        ("America/New_York", "2024-11-03T06:30:00Z", (date(2024, 11, 3), 1)),  # repeated 01:30: same hour
        ("America/New_York", "2024-11-03T07:00:00Z", (date(2024, 11, 3), 2)),
        ("Australia/Lord_Howe", "2024-10-05T15:29:59.999Z", (date(2024, 10, 6), 1)),  # 01:59:59.999 +10:30
        ("Australia/Lord_Howe", "2024-10-05T15:30:00Z", (date(2024, 10, 6), 2)),  # 02:30 +11:00
        ("America/Santiago", "2024-09-08T03:59:59.999Z", (date(2024, 9, 7), 23)),
        ("America/Santiago", "2024-09-08T04:00:00Z", (date(2024, 9, 8), 1)),  # midnight does not exist
        ("Pacific/Kiritimati", "2024-12-31T10:00:00Z", (date(2025, 1, 1), 0)),
        ("Pacific/Pago_Pago", "2024-12-31T10:00:00Z", (date(2024, 12, 30), 23)),
    ],
)
def test_local_hour_examples(zone: str, instant: str, expected: tuple[date, int]) -> None:
    hours = LocalHours(ZoneInfo(zone))
    assert hours.hour_of(ms(instant)) == expected
    assert hours.hour_of(ms(instant)) == expected  # the memoised answer is the same


def test_local_hour_memo_does_not_leak_across_a_quarter_hour_boundary() -> None:
    # Kathmandu's hours start at :15 UTC; a coarser memo (e.g. per UTC hour) would answer the cached hour.
    hours = LocalHours(ZoneInfo("Asia/Kathmandu"))
    assert hours.hour_of(ms("2024-01-01T06:00:00Z")) == (date(2024, 1, 1), 11)
    assert hours.hour_of(ms("2024-01-01T06:14:59.999Z")) == (date(2024, 1, 1), 11)
    assert hours.hour_of(ms("2024-01-01T06:15:00Z")) == (date(2024, 1, 1), 12)
    assert hours.hour_of(ms("2024-01-01T06:59:59.999Z")) == (date(2024, 1, 1), 12)


def test_local_hour_memo_is_bounded() -> None:
    hours = LocalHours(ZoneInfo("UTC"))
    for i in range(200_001):
        hours._cache[-1 - i] = (date(2000, 1, 1), 0)
    assert hours.hour_of(ms("2024-01-01T00:00:00Z")) == (date(2024, 1, 1), 0)
    assert len(hours._cache) <= 200_001
    assert hours.hour_of(ms("2024-01-01T00:14:00Z")) == (date(2024, 1, 1), 0)


@pytest.mark.parametrize("zone", CHANGING_ZONES)
def test_local_hour_is_exact_around_every_transition(zone: str) -> None:
    tz = ZoneInfo(zone)
    shared = LocalHours(tz)
    edges = transitions(zone)
    assert edges, f"{zone} should have at least one offset change between 2000 and 2040"
    for t in edges:
        slot_start = t - t % SLOT_MS
        points = [t - 1, t, t + 1, slot_start - 1, slot_start, slot_start + SLOT_MS - 1, slot_start + SLOT_MS]
        points += [t - HOUR_MS, t + HOUR_MS - 1, t - 2 * HOUR_MS + 1]
        for p in points:
            want = expected_hour(p, tz)
            assert LocalHours(tz).hour_of(p) == want, (zone, p)
            assert shared.hour_of(p) == want, (zone, p)
        # and in the other order, so the memo of a later slot is filled first
        fresh = LocalHours(tz)
        for p in reversed(points):
            assert fresh.hour_of(p) == expected_hour(p, tz), (zone, p)


@st.composite
def instants_near_transitions(draw: st.DrawFn) -> tuple[str, int]:
    zone = draw(st.sampled_from(CHANGING_ZONES))
    t = draw(st.sampled_from(transitions(zone)))
    return zone, t + draw(st.integers(-2 * HOUR_MS, 2 * HOUR_MS))


_SHARED_HOURS: dict[str, LocalHours] = {}


def _shared(zone: str) -> LocalHours:
    if zone not in _SHARED_HOURS:
        _SHARED_HOURS[zone] = LocalHours(ZoneInfo(zone))
    return _SHARED_HOURS[zone]


@settings(max_examples=800, deadline=None)
@given(
    case=st.one_of(
        st.tuples(st.sampled_from(ALL_ZONES), st.integers(MIN_MS, MAX_MS)),
        st.tuples(st.sampled_from(INTERESTING_ZONES), st.integers(MIN_MS, MAX_MS)),
        instants_near_transitions(),
    )
)
def test_local_hour_equals_local_date_and_hour(case: tuple[str, int]) -> None:
    zone, epoch_ms = case
    tz = ZoneInfo(zone)
    local = local_datetime(epoch_ms, tz)
    want = (local.date(), local.hour)
    assert want == expected_hour(epoch_ms, tz)
    # a long-lived memo (filled by earlier examples) and a fresh one must both agree
    assert _shared(zone).hour_of(epoch_ms) == want
    assert LocalHours(tz).hour_of(epoch_ms) == want
    assert day_of(epoch_ms, tz) == want[0]
    start, end = day_start_ms(want[0], tz), day_end_ms(want[0], tz)
    assert start <= epoch_ms
    if epoch_ms >= end:
        # Only where a fall-back crosses local midnight (St. John's changed at 00:01 until 2011): the next day
        # has begun and then the wall clock returns to the previous day for an hour.
        assert zone in {"America/St_Johns", "America/Goose_Bay", "Canada/Newfoundland"}, (zone, epoch_ms)
        assert epoch_ms - end < HOUR_MS
        assert day_of(end, tz) == want[0] + timedelta(days=1)


# --- local hours ----------------------------------------------------------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("zone", "day", "hours", "long_hour", "first_ms"),
    [
        ("UTC", date(2026, 3, 15), list(range(24)), None, ms("2026-03-15T00:00:00+00:00")),
        # Spring forward 02:00 -> 03:00: no hour 2; hour 3 starts right after hour 1.
        ("Europe/Berlin", date(2023, 3, 26), [0, 1, *range(3, 24)], None, ms("2023-03-26T00:00:00+01:00")),
        # Fall back 03:00 -> 02:00: hour 2 is one span of two real hours.
        ("Europe/Berlin", date(2023, 10, 29), list(range(24)), 2, ms("2023-10-29T00:00:00+02:00")),
        ("America/New_York", date(2026, 3, 8), [0, 1, *range(3, 24)], None, ms("2026-03-08T00:00:00-05:00")),
        ("America/New_York", date(2026, 11, 1), list(range(24)), 1, ms("2026-11-01T00:00:00-04:00")),
        ("Asia/Kolkata", date(2024, 2, 29), list(range(24)), None, ms("2024-02-29T00:00:00+05:30")),
    ],
)
def test_hour_spans_of_a_day(zone, day, hours, long_hour, first_ms):
    spans = hour_spans(day, ZoneInfo(zone))
    assert [s.hour for s in spans] == hours
    assert spans[0].start_ms == first_ms
    assert spans[-1].end_ms == day_end_ms(day, ZoneInfo(zone))
    for before, after in itertools.pairwise(spans):
        assert before.end_ms == after.start_ms
    for span in spans:
        assert span.day == day
        assert span.end_ms - span.start_ms == (2 if span.hour == long_hour else 1) * HOUR_MS


@pytest.mark.parametrize("zone", INTERESTING_ZONES)
@pytest.mark.parametrize("year", [2023, 2026])
def test_hour_spans_agree_with_the_consumers_local_hours(zone, year):
    """Every 15-minute slot of every transition day of the year (and of its first day) lies in the span of the
    local hour the consumer writes it to."""
    tz = ZoneInfo(zone)
    hours = LocalHours(tz)
    day = date(year, 1, 1)
    while day.year == year:
        start, end = day_start_ms(day, tz), day_end_ms(day, tz)
        if day.timetuple().tm_yday > 1 and end - start == DAY_MS and offset_at(start, tz) == offset_at(end - 1, tz):
            day += timedelta(days=1)
            continue
        spans = {s.hour: s for s in hour_spans(day, tz)}
        for slot in range(day_start_ms(day, tz), day_end_ms(day, tz), SLOT_MS):
            hour_day, hour = hours.hour_of(slot)
            assert hour_day == day
            assert spans[hour].start_ms <= slot < spans[hour].end_ms, (zone, day, hour)
        day += timedelta(days=1)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        # Inclusive at both ends: an hour starting exactly at end counts, one ending exactly at start does not.
        ("2026-03-15T10:30:00+00:00", "2026-03-15T12:00:00+00:00", [(15, 10), (15, 11), (15, 12)]),
        ("2026-03-15T10:00:00+00:00", "2026-03-15T10:00:00+00:00", [(15, 10)]),
        ("2026-03-15T09:00:00+00:00", "2026-03-15T09:59:59.999+00:00", [(15, 9)]),
        ("2026-03-14T23:59:59.999+00:00", "2026-03-15T00:00:00+00:00", [(14, 23), (15, 0)]),
        ("2026-03-15T12:00:00+00:00", "2026-03-15T11:00:00+00:00", []),
    ],
)
def test_hours_overlapping_a_closed_interval(start, end, expected):
    days = [date(2026, 3, 14), date(2026, 3, 15)]
    spans = hours_overlapping(days, ms(start), ms(end), ZoneInfo("UTC"))
    assert [(s.day.day, s.hour) for s in spans] == expected


def test_hours_overlapping_the_repeated_hour_in_its_second_occurrence():
    # 02:30 CET is the second 02:xx of 2023-10-29 in Berlin: still hour 2, which overlaps alone.
    spans = hours_overlapping(
        [date(2023, 10, 29)], ms("2023-10-29T02:30:00+01:00"), ms("2023-10-29T02:40:00+01:00"), BERLIN
    )
    assert [s.hour for s in spans] == [2]


@pytest.mark.parametrize(
    ("zone", "until", "expected"),
    [
        # The end of a plain day: that day's 24 hours.
        ("UTC", "2026-03-15T23:59:59.999+00:00", [(date(2026, 3, 15), h) for h in range(24)]),
        # Mid-day: yesterday 13..23 and today 0..12 (an hour starting exactly at start counts).
        (
            "UTC",
            "2026-03-15T12:00:00+00:00",
            [(date(2026, 3, 14), h) for h in range(13, 24)] + [(date(2026, 3, 15), h) for h in range(13)],
        ),
        # The end of a 23-hour day: its 23 hours and the previous day's last hour.
        (
            "Europe/Berlin",
            "2023-03-26T23:59:59.999+02:00",
            [(date(2023, 3, 25), 23)] + [(date(2023, 3, 26), h) for h in (0, 1, *range(3, 24))],
        ),
        # The end of a 25-hour day: 24 hours back do not reach its hour 0.
        ("Europe/Berlin", "2023-10-29T23:59:59.999+01:00", [(date(2023, 10, 29), h) for h in range(1, 24)]),
        ("America/New_York", "2026-11-01T23:59:59.999-05:00", [(date(2026, 11, 1), h) for h in range(1, 24)]),
        # Year end.
        (
            "UTC",
            "2027-01-01T00:59:59.999+00:00",
            [(date(2026, 12, 31), h) for h in range(1, 24)] + [(date(2027, 1, 1), 0)],
        ),
    ],
)
def test_hours_starting_in_the_24_hours_up_to_an_instant(zone, until, expected):
    tz = ZoneInfo(zone)
    end = ms(until)
    days = days_between(day_of(end - DAY_MS, tz), day_of(end, tz))
    assert [(s.day, s.hour) for s in hours_starting_in(days, end - DAY_MS, end, tz)] == expected


# --- moment's whole-day diff ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "start", "end", "days"),
    [
        ("UTC", "2023-02-01T00:00:00+00:00", "2023-02-01T00:00:00+00:00", 0),
        ("UTC", "2023-02-01T00:00:00+00:00", "2023-02-01T23:59:59.999+00:00", 0),
        ("UTC", "2023-02-01T00:00:00+00:00", "2023-02-02T00:00:00+00:00", 1),
        ("UTC", "2023-02-01T12:00:00+00:00", "2023-02-03T06:00:00+00:00", 1),
        ("UTC", "2023-01-10T00:00:00+00:00", "2023-02-09T23:59:59.999+00:00", 30),
        # Reversed: truncated toward zero, so up to a day back is 0.
        ("UTC", "2023-02-05T10:00:00+00:00", "2023-02-05T09:00:00+00:00", 0),
        ("UTC", "2023-02-05T10:00:00+00:00", "2023-02-04T09:00:00+00:00", -1),
        ("UTC", "2023-02-05T10:00:00+00:00", "2023-02-03T10:00:00+00:00", -2),
        # Leap day and year end.
        ("UTC", "2024-02-28T00:00:00+00:00", "2024-03-01T00:00:00+00:00", 2),
        ("UTC", "2023-12-31T00:00:00+00:00", "2024-01-01T00:00:00+00:00", 1),
        # DST: 47 and 49 real hours between local midnights are 2 days; 23 real hours across spring forward
        # from noon to noon are a day.
        ("Europe/Berlin", "2023-03-25T00:00:00+01:00", "2023-03-27T00:00:00+02:00", 2),
        ("Europe/Berlin", "2023-10-28T00:00:00+02:00", "2023-10-30T00:00:00+01:00", 2),
        ("Europe/Berlin", "2023-03-25T12:00:00+01:00", "2023-03-26T12:00:00+02:00", 1),
        ("America/New_York", "2026-03-07T12:00:00-05:00", "2026-03-08T11:59:59.999-04:00", 0),
        ("America/New_York", "2026-10-31T12:00:00-04:00", "2026-11-01T12:00:00-05:00", 1),
        ("America/New_York", "2026-10-31T12:00:00-04:00", "2026-11-01T11:59:59.999-05:00", 0),
    ],
)
def test_moment_day_diff(zone, start, end, days):
    assert moment_day_diff(ms(start), ms(end), ZoneInfo(zone)) == days


@pytest.mark.parametrize(
    ("zone", "instant", "offset_h"),
    [
        ("UTC", "2026-03-15T00:00:00+00:00", 0),
        ("Europe/Berlin", "2023-03-26T00:59:59.999+00:00", 1),
        ("Europe/Berlin", "2023-03-26T01:00:00+00:00", 2),
        ("America/New_York", "2026-11-01T06:00:00+00:00", -5),
        ("America/New_York", "2026-11-01T05:59:59.999+00:00", -4),
        ("Asia/Kolkata", "2026-01-01T00:00:00+00:00", 5.5),
    ],
)
def test_utc_offset_ms(zone, instant, offset_h):
    assert utc_offset_ms(ms(instant), ZoneInfo(zone)) == int(offset_h * HOUR_MS)


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Etc/GMT+12", "Asia/Kolkata", "UTC"])
def test_utc_offset_of_instants_beyond_the_calendar(zone):
    # Year 0000 and 9999-12-31 in any zone: valid dates of the API, outside what datetime holds locally.
    for instant in (-62_167_219_200_000, 253_402_300_799_999):
        assert abs(utc_offset_ms(instant, ZoneInfo(zone))) <= 15 * HOUR_MS


@pytest.mark.parametrize(
    ("day", "count", "expected"),
    [
        (date(2024, 3, 1), 1, date(2024, 2, 29)),
        (date(2024, 1, 1), 8, date(2023, 12, 24)),
        (date(2024, 1, 1), -1, date(2024, 1, 2)),
        (date(1, 1, 3), 10**9, date.min),
        (date(9999, 12, 30), -(10**9), date.max),
    ],
)
def test_days_before(day, count, expected):
    assert days_before(day, count) == expected
